"""The chaos run's counts see what they count: a history, run directories and a sandbox with one
of each fault planted in them, on real PostgreSQL (the chaos run itself shows the zeros)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.chaos_checks import check


async def _deployment(
    engine: AsyncEngine, user_id: int, template_id: int, name: str, status: str
) -> int:
    async with engine.begin() as conn:
        return (  # type: ignore[no-any-return]
            await conn.execute(
                text(
                    "INSERT INTO deployments (user_id, template_id, deployment_name, status,"
                    " workflow_id) VALUES (:u, :t, :n, :s, :w) RETURNING id"
                ),
                {"u": user_id, "t": template_id, "n": name, "s": status, "w": f"wf-{name}"},
            )
        ).scalar_one()


async def _history(
    engine: AsyncEngine, deployment_id: int, rows: list[tuple[str, dict[str, Any]]]
) -> None:
    async with engine.begin() as conn:
        for key, details in rows:
            await conn.execute(
                text(
                    "INSERT INTO deployment_history (deployment_id, event_key, status, message,"
                    " details) VALUES (:d, :k, 'running', 'planted', CAST(:j AS jsonb))"
                ),
                {"d": deployment_id, "k": key, "j": json.dumps(details)},
            )


def _run(runner_dir: Path, deployment_id: int, run: int, playbook_starts: int) -> None:
    events = runner_dir / str(deployment_id) / str(run) / "artifacts" / "deploy" / "job_events"
    events.mkdir(parents=True)
    for start in range(playbook_starts):
        for counter, name in ((1, "playbook_on_start"), (2, "playbook_on_stats")):
            (events / f"{counter}-uuid{start}{counter}.json").write_text(
                json.dumps({"event": name})
            )


async def test_each_planted_fault_is_counted_once(
    engine: AsyncEngine, clean_db: None, tmp_path: Path
) -> None:
    async with engine.begin() as conn:
        user_id = (
            await conn.execute(
                text(
                    "INSERT INTO users (username, password_hash, role)"
                    " VALUES ('chaos', 'x', 'operator') RETURNING id"
                )
            )
        ).scalar_one()
        template_id = (
            await conn.execute(
                text(
                    "INSERT INTO templates (name, service_type, configuration)"
                    " VALUES ('t', 'postgresql', '{}') RETURNING id"
                )
            )
        ).scalar_one()
    destroyed = await _deployment(engine, user_id, template_id, "destroyed", "destroyed")
    succeeded = await _deployment(engine, user_id, template_id, "succeeded", "succeeded")
    stuck = await _deployment(engine, user_id, template_id, "stuck", "destroying")
    await _history(
        engine,
        destroyed,
        [
            # One playbook event stored under the keys of two runs.
            ("event:1", {"uuid": "u-1", "counter": 1}),
            ("run2:event:1", {"uuid": "u-1", "counter": 1}),
            ("event:2", {"uuid": "u-2", "counter": 2}),
            # Run 1 recorded as triggered twice; run 2 once.
            ("triggered", {"job_id": f"local-{destroyed}-1"}),
            ("triggered:3", {"job_id": f"local-{destroyed}-1"}),
            ("triggered:2", {"job_id": f"local-{destroyed}-2"}),
            # Two outcomes of run 1, one of run 2.
            ("result", {}),
            ("cancel-failed", {}),
            ("destroy-failed:2", {}),
            # One destroy, two requests recorded.
            ("destroy-requested:2", {}),
            ("destroy-requested:3", {}),
        ],
    )
    await _history(engine, succeeded, [("triggered", {"job_id": f"local-{succeeded}-1"})])

    runner_dir, sandbox = tmp_path / "runs", tmp_path / "sandbox"
    _run(runner_dir, destroyed, 1, playbook_starts=2)
    _run(runner_dir, destroyed, 2, playbook_starts=1)
    _run(runner_dir, succeeded, 1, playbook_starts=1)
    _run(runner_dir, stuck, 1, playbook_starts=0)  # on disk, never started, not in history
    (runner_dir / str(stuck) / ".2.staging").mkdir()
    for deployment_id in (destroyed, succeeded):
        state = sandbox / str(deployment_id) / ".provisio"
        state.mkdir(parents=True)
        (state / "vg_data-lv_pgdata.img").write_bytes(b"")

    dsn = engine.url.render_as_string(hide_password=False).replace("+asyncpg", "")
    summary = (await check(dsn, [destroyed, succeeded, stuck], runner_dir, sandbox)).summary()

    assert summary["stuck_ids"] == [stuck]
    assert summary["final"] == 2
    assert summary["history_duplicates_by_kind"] == {
        "callback_event_stored_twice": 1,
        "run_triggered_twice": 1,
        "run_outcome_twice": 1,
        "destroy_requested_twice": 1,
    }
    assert summary["history_rows_duplicated"] == 4
    assert summary["runs_started_twice"] == 1
    assert summary["playbook_starts"] == 4
    assert summary["runs_never_started"] == [f"local-{stuck}-1"]
    assert summary["runs_on_disk_not_in_history"] == [f"local-{stuck}-1"]
    assert summary["runs_in_history_not_on_disk"] == []
    assert summary["staging_dirs_left"] == [str(runner_dir / str(stuck) / ".2.staging")]
    assert summary["leaked_image_files"] == 1
    assert list(summary["leaked_image_files_by_deployment"]) == [str(destroyed)]
    assert summary["image_files_of_settled_deployments"] == 1
    assert summary["run_processes_left"] == 0
