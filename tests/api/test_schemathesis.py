"""Schemathesis against the app's own OpenAPI, over real HTTP, with a valid admin token:
no 5xx, responses match their schemas, and calls without credentials are refused. Its hooks
(`schemathesis_hooks.py`) also send every number of a path, query, cursor or header as
non-ASCII digits and at and past its bounds."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from api.routes import events
from settings import PROJECT_ROOT

ST = Path(os.sys.executable).parent / "st"  # type: ignore[attr-defined]
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


@pytest.mark.skipif(not ST.exists() and not shutil.which("st"), reason="pip install schemathesis")
async def test_schemathesis_finds_no_server_errors_or_schema_mismatches(
    live_api: str,
    worker: None,
    make_user: Any,
    make_template: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The live stream is tested too (its Last-Event-ID and `after`): the server runs in this
    # process, so its streams can be made to end within a second instead of five minutes.
    monkeypatch.setattr(events, "POLL_INTERVAL_S", 0.1)
    monkeypatch.setattr(events, "MAX_STREAM_S", 0.5)
    admin = await make_user("admin")
    await make_template()
    process = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{live_api}/openapi.json",
        "--header",
        f"Authorization: {admin.headers['Authorization']}",
        "--checks",
        "all",
        # Whether a schema-valid request is accepted depends on data no static schema can state
        # (is the template active, is the name free, is the cursor one we issued).
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        os.environ.get("PROVISIO_SCHEMATHESIS_EXAMPLES", "25"),
        "--generation-deterministic",
        "--report-dir",
        str(tmp_path),
        cwd=PROJECT_ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    report = Path(os.environ.get("PROVISIO_TEST_ARTIFACTS", tmp_path)) / "schemathesis.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    assert process.returncode == 0, f"{text[-3000:]}\n(full output: {report})"
