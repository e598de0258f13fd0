"""The UI's pages and assets are served from the app's own origin, with a strict CSP."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from api.routes.ui import PAGES, WEB_DIR, vocabulary_module
from vocabulary import callback_events
from vocabulary.disks import DiskState
from vocabulary.operations import STARTS_AS, Operation
from vocabulary.statuses import (
    FINAL_STATUSES,
    HISTORY_STATUSES,
    SETTLED_STATUSES,
    TERMINAL_STATUSES,
    DeploymentStatus,
)


async def test_pages_are_the_shell_with_a_strict_content_security_policy(
    api: httpx.AsyncClient,
) -> None:
    root = await api.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/deployments"
    for path in [
        p.replace("{deployment_id:int}", "7").replace("{template_id:int}", "3") for p in PAGES
    ]:
        page = await api.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/ui/app.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
    # Only numeric ids are pages; the API keeps its own paths.
    assert (await api.get("/deployments/abc")).status_code == 404
    assert (await api.get("/api/deployments")).status_code == 401


async def test_assets_are_served_and_revalidated_and_nothing_else_is(
    api: httpx.AsyncClient,
) -> None:
    script = await api.get("/ui/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    again = await api.get("/ui/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert (await api.get("/ui/app.css")).headers["content-type"].startswith("text/css")
    assert (await api.get("/ui/missing.js")).status_code == 404
    assert (await api.get("/ui/../routes/ui.py")).status_code == 404
    assert (await api.get("/ui/%2e%2e/routes/ui.py")).status_code == 404


def _exports(module: str) -> dict[str, Any]:
    """The `export const NAME = Object.freeze(<json>);` lines of the generated module."""
    found = re.findall(r"^export const (\w+) = Object\.freeze\((.*)\);$", module, re.MULTILINE)
    return {name: json.loads(value) for name, value in found}


async def test_the_ui_gets_statuses_and_callback_words_from_the_vocabulary(
    api: httpx.AsyncClient,
) -> None:
    module = await api.get("/ui/vocabulary.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    words = _exports(module.text)
    assert words["STATUSES"] == [status.value for status in DeploymentStatus]
    assert set(words["FINAL_STATUSES"]) == set(FINAL_STATUSES)
    assert words["HISTORY_STATUSES"] == list(HISTORY_STATUSES)
    assert words["HISTORY_STATUS"]["CREATED"] == "created"
    assert words["STATUS"]["TIMED_OUT"] == DeploymentStatus.TIMED_OUT
    assert set(words["EVENT"].values()) == set(callback_events.EVENT_NAMES)
    assert words["RESULT_OUTCOMES"] == callback_events.RESULT_OUTCOMES
    assert words["FAILING_EVENTS"] == list(callback_events.FAILING_EVENTS)
    assert words["HOST_STATS_KEYS"] == list(callback_events.HOST_STATS_KEYS)
    assert set(words["SETTLED_STATUSES"]) == set(SETTLED_STATUSES)
    assert set(words["TERMINAL_STATUSES"]) == set(TERMINAL_STATUSES)
    assert words["OPERATIONS"] == [operation.value for operation in Operation]
    assert words["OPERATION"] == {"CANCEL": "cancel", "DESTROY": "destroy", "RETRY": "retry"}
    assert words["OPERATION_STARTS_AS"] == {op.value: STARTS_AS[op].value for op in Operation}
    assert words["DISK_STATE"] == {state.name: state.value for state in DiskState}
    again = await api.get("/ui/vocabulary.js", headers={"If-None-Match": module.headers["etag"]})
    assert again.status_code == 304


def test_no_ui_module_retypes_a_status_an_operation_or_an_event_name() -> None:
    words = [*HISTORY_STATUSES, *callback_events.EVENT_NAMES, *(s.value for s in DiskState)]
    operations = [operation.value for operation in Operation]
    for script in WEB_DIR.glob("*.js"):
        source = script.read_text()
        # The pages deal with operations; dom.js and api.js speak the DOM and SSE, whose
        # `cancel` event and `retry:` field are other words.
        for word in words + (operations if script.name.startswith("page-") else []):
            for quote in "\"'`":
                assert f"{quote}{word}{quote}" not in source, f"{script.name} retypes {word!r}"
    # Every name the UI imports from ./vocabulary.js is one the API writes.
    served = set(_exports(vocabulary_module()))
    vocabulary_import = re.compile(r"import \{([^}]*)\} from \"\./vocabulary\.js\"")
    for script in WEB_DIR.glob("*.js"):
        for names in vocabulary_import.findall(script.read_text()):
            imported = {name.split(" as ")[0].strip() for name in names.split(",") if name.strip()}
            assert imported <= served, (script.name, imported - served)
