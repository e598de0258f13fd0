"""Bulk rows for the read path: users, deployments, disks and history, loaded with COPY.

Rows are shaped like the workflow writes them (statuses, history keys and messages, disks as
cloned from a template) but go in with asyncpg's `copy_records_to_table`, not through the
workflow. Ids continue after what the earlier scenarios wrote; the sequences are moved past
them afterwards.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from vocabulary.statuses import DeploymentStatus as S
from vocabulary.statuses import HistoryStatus
from vocabulary.users import Role

# Bulk rows have no workflow behind them; their workflow ids say so.
BULK_WORKFLOW_PREFIX = "bulk-deployment-"
STATUSES = (S.SUCCEEDED.value,) * 8 + (S.FAILED.value, S.RUNNING.value)
HISTORY_STEPS = (
    ("created", HistoryStatus.CREATED.value, "Deployment created"),
    ("disks_allocated", S.PROVISIONING.value, "3 disk allocation(s) cloned from the template"),
    ("triggered", S.QUEUED.value, "Pipeline triggered"),
    ("running", S.RUNNING.value, "Playbook started"),
)
DISKS = (
    ("ssd", 20, "/data/pgdata", "vg_data", "lv_pgdata", "ext4"),
    ("ssd", 5, "/data/pgwal", "vg_data", "lv_pgwal", "xfs"),
    ("hdd", 50, "/data/backup", "vg_backup", "lv_backup", "ext4"),
)


@dataclass
class Loaded:
    user_ids: list[int]
    first_id: int  # first bulk deployment id
    last_id: int
    seconds: float


def _spread(total: int, buckets: int) -> Iterator[int]:
    """`total` split over `buckets` as evenly as integers allow."""
    base, extra = divmod(total, buckets)
    for i in range(buckets):
        yield base + (1 if i < extra else 0)


async def load(
    conn: asyncpg.Connection,
    *,
    reader_id: int,
    users: int,
    deployments: int,
    disks: int,
    history: int,
    template_ids: list[int],
    password_hash: str,
) -> Loaded:
    started = time.perf_counter()
    rng = random.Random(6)
    now = datetime.now(UTC)
    suffix = f"{rng.getrandbits(32):08x}"

    user_rows = [
        (f"bulk-{suffix}-{i}", password_hash, Role.OPERATOR.value, True, now)
        for i in range(users - 1)
    ]
    await conn.copy_records_to_table(
        "users",
        records=user_rows,
        columns=["username", "password_hash", "role", "is_active", "created_at"],
    )
    others = await conn.fetch(
        "SELECT id FROM users WHERE username LIKE $1 ORDER BY id", f"bulk-{suffix}-%"
    )
    user_ids = [reader_id, *(r["id"] for r in others)]

    first = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM deployments")) + 1
    ids = range(first, first + deployments)
    owner = {d: user_ids[(d - first) % len(user_ids)] for d in ids}
    status = {d: STATUSES[rng.randrange(len(STATUSES))] for d in ids}
    created = {d: now - timedelta(seconds=10 * (first + deployments - d)) for d in ids}
    config = json.dumps({"max_connections": 100, "listen_addresses": "localhost"})

    def deployment_rows() -> Iterator[tuple[Any, ...]]:
        for d in ids:
            yield (
                d,
                owner[d],
                template_ids[d % len(template_ids)],
                f"bulk-{d}",
                status[d],
                config,
                f"bench-{d}",
                f"{BULK_WORKFLOW_PREFIX}{d}",
                created[d],
                created[d] + timedelta(seconds=40),
            )

    disk_first = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM disk_allocations")) + 1

    def disk_rows() -> Iterator[tuple[Any, ...]]:
        disk_id = disk_first
        for d, count in zip(ids, _spread(disks, deployments), strict=True):
            for k in range(count):
                kind, size, mount, vg, lv, fs = DISKS[k % len(DISKS)]
                if k >= len(DISKS):
                    mount, lv = f"{mount}{k}", f"{lv}{k}"
                yield (disk_id, d, kind, size, mount, vg, lv, fs, "{}")
                disk_id += 1

    history_first = (
        int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM deployment_history")) + 1
    )

    def history_rows() -> Iterator[tuple[Any, ...]]:
        """`created` always (the history view relies on it), then the workflow's steps, task
        events, and the result last (a running deployment has one more event instead)."""
        row_id = history_first
        for d, count in zip(ids, _spread(history, deployments), strict=True):
            middle = max(0, count - 2)
            steps = HISTORY_STEPS[: 1 + min(len(HISTORY_STEPS) - 1, middle)]
            out = [(key, st, msg, '{"bench": true}') for key, st, msg in steps]
            events = count - len(out) - (1 if count > 1 else 0)
            if status[d] == S.RUNNING:
                events += 1 if count > 1 else 0
            for e in range(1, events + 1):
                host = f"host-{e % 50:03d}"
                details = (
                    f'{{"counter": {e}, "event": "runner_on_ok", "host": "{host}",'
                    f' "task": "Task {e}", "data": {{"changed": true}}}}'
                )
                out.append((f"event:{e}", S.RUNNING.value, f"ok: {host} — Task {e}", details))
            if status[d] != S.RUNNING and count > 1:
                out.append(("result", status[d], f"Deployment {status[d]}", '{"stats": {}}'))
            for k, (key, st, msg, details) in enumerate(out):
                yield (row_id, d, key, st, msg, details, created[d] + timedelta(seconds=k))
                row_id += 1

    await conn.copy_records_to_table(
        "deployments",
        records=deployment_rows(),
        columns=[
            "id",
            "user_id",
            "template_id",
            "deployment_name",
            "status",
            "configuration",
            "jenkins_job_id",
            "workflow_id",
            "created_at",
            "updated_at",
        ],
    )
    await conn.copy_records_to_table(
        "disk_allocations",
        records=disk_rows(),
        columns=[
            "id",
            "deployment_id",
            "disk_type",
            "size_gb",
            "mount_point",
            "volume_group",
            "logical_volume",
            "filesystem_type",
            "allocation_params",
        ],
    )
    await conn.copy_records_to_table(
        "deployment_history",
        records=history_rows(),
        columns=["id", "deployment_id", "event_key", "status", "message", "details", "created_at"],
    )
    for table in ("deployments", "disk_allocations", "deployment_history"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    # What autovacuum would do after a bulk load, done now: statistics and the visibility map.
    await conn.execute("VACUUM (ANALYZE) users, deployments, disk_allocations, deployment_history")
    return Loaded(user_ids, first, first + deployments - 1, time.perf_counter() - started)
