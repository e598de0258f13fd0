"""`provisio deployments extend` and `list --expiring-within` as a person runs them: subprocesses
speaking HTTP to the real API, with the real worker, Temporal and PostgreSQL behind it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from tests.api.test_leases_api import succeeded
from tests.test_cli_deployments import Provisio, provisio, token_of
from tests.workflows.test_lease_time_skipping import leased_template

__all__ = ["provisio"]  # the fixture, used by name
DAY = 86400


async def test_extend_by_or_until_and_list_what_expires_soon(
    provisio: Provisio, api: httpx.AsyncClient, worker: None, client: Client, make_user: Any
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    token = token_of(owner)
    template_id = await leased_template(api, admin, lease_s=DAY, max_lease_s=3 * DAY)
    done = await succeeded(api, client, owner, template_id)
    expires = datetime.fromisoformat(done["expires_at"])

    by = await provisio("deployments", "extend", str(done["id"]), "--by", "12h", token=token)
    assert by.code == 0, by.err
    assert by.out.startswith(f"lease extended: pg-one (#{done['id']}) is succeeded, expires ")
    until = expires + timedelta(days=2)
    moved = await provisio(
        "deployments", "extend", str(done["id"]), "--until", until.isoformat(), "--json",
        token=token,
    )  # fmt: skip
    assert moved.code == 0, moved.err
    assert datetime.fromisoformat(moved.json()["expires_at"]) == until

    too_far = await provisio("deployments", "extend", str(done["id"]), "--by", "5d", token=token)
    assert too_far.code == 1
    assert "max_lease_s" in too_far.err
    neither = await provisio("deployments", "extend", str(done["id"]), token=token)
    assert neither.code == 2 and "one of the arguments --by --until is required" in neither.err
    garbled = await provisio("deployments", "extend", "1", "--by", "soon", token=token)
    assert garbled.code == 2 and "expected seconds or N[s|m|h|d]" in garbled.err

    soon = await provisio("deployments", "list", "--expiring-within", "1d", token=token)
    assert soon.code == 0 and soon.out.strip() == "no deployments match"
    later = await provisio("deployments", "list", "--expiring-within", "4d", token=token)
    assert later.code == 0 and "pg-one" in later.out
