"""What the chaos run checks once its deployments are followed to the end.

- stuck: launched deployments whose status is not final (settled or terminal) at the end.
- duplicated history rows: the same thing recorded twice, whatever its key. The unique
  `(deployment_id, event_key)` index makes a repeated key impossible, so what is counted is what
  the index cannot see: one playbook event (its uuid) stored under two keys; one run
  (`job_id`) recorded as triggered twice; two outcomes (`result`, `cancel-failed`,
  `destroy-failed`) for one run; a deployment destroyed once but with two `destroy-requested`
  rows.
- runs started twice: ansible-playbook starts per run, read from ansible-runner's own record of
  the run, `<runner_dir>/<id>/<run>/artifacts/<action>/job_events/`: every ansible-playbook
  start emits one `playbook_on_start` event under a fresh uuid, and ansible-runner keeps the
  events of every start in that directory (it never clears it). A run with more than one is a
  run started twice. Run directories are also matched with the `triggered` rows of history.
- leaked image files: `*.img` files left under `<sandbox_root>/<id>/` (where the directory
  backend keeps them; destroy.yml removes that whole directory) of deployments that ended
  `cancelled` or `destroyed`. Those of succeeded or failed deployments are counted apart: they
  are kept on purpose, and show the count can see a file.
- run processes left: live processes of any run (the local runner's own test of it).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from pipeline.local_runner import LocalRunner
from settings import Settings
from vocabulary.runs import RunRef
from vocabulary.statuses import DeploymentStatus as S

CALLBACK_EVENT = r"^(run[0-9]+:)?event:"
RUN_OUTCOME = r"^(result|cancel-failed|destroy-failed)(:[0-9]+)?$"
DUPLICATES = {
    "callback_event_stored_twice": f"""
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM deployment_history
            WHERE event_key ~ '{CALLBACK_EVENT}' AND details ? 'uuid'
            GROUP BY deployment_id, details->>'uuid' HAVING count(*) > 1) AS twice""",
    "run_triggered_twice": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM deployment_history
            WHERE event_key ~ '^triggered(:[0-9]+)?$'
            GROUP BY deployment_id, details->>'job_id' HAVING count(*) > 1) AS twice""",
    "run_outcome_twice": f"""
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM deployment_history
            WHERE event_key ~ '{RUN_OUTCOME}'
            GROUP BY deployment_id, coalesce(substring(event_key FROM ':([0-9]+)$'), '1')
            HAVING count(*) > 1) AS twice""",
    "destroy_requested_twice": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM deployment_history
            WHERE event_key ~ '^destroy-requested(:[0-9]+)?$'
            GROUP BY deployment_id HAVING count(*) > 1) AS twice""",
}


@dataclass
class Findings:
    statuses: dict[int, str] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    playbook_starts: dict[str, int] = field(default_factory=dict)  # job id -> starts
    triggered_jobs: set[str] = field(default_factory=set)
    staging_dirs_left: list[str] = field(default_factory=list)
    leaked_images: dict[int, list[str]] = field(default_factory=dict)
    kept_images: int = 0
    processes_left: dict[str, list[int]] = field(default_factory=dict)

    @property
    def stuck(self) -> list[int]:
        return sorted(i for i, status in self.statuses.items() if not S(status).is_final)

    @property
    def runs_started_twice(self) -> int:
        return sum(max(0, starts - 1) for starts in self.playbook_starts.values())

    def summary(self) -> dict[str, Any]:
        on_disk = set(self.playbook_starts)
        return {
            "final": len(self.statuses) - len(self.stuck),
            "stuck": len(self.stuck),
            "stuck_ids": self.stuck,
            "statuses": dict(Counter(self.statuses.values())),
            "history_rows_duplicated": sum(self.duplicated.values()),
            "history_duplicates_by_kind": self.duplicated,
            "runs_started_twice": self.runs_started_twice,
            "runs_on_disk": len(on_disk),
            "playbook_starts": sum(self.playbook_starts.values()),
            "runs_never_started": sorted(j for j, n in self.playbook_starts.items() if n == 0),
            "runs_on_disk_not_in_history": sorted(on_disk - self.triggered_jobs),
            "runs_in_history_not_on_disk": sorted(self.triggered_jobs - on_disk),
            "staging_dirs_left": self.staging_dirs_left,
            "leaked_image_files": sum(len(files) for files in self.leaked_images.values()),
            "leaked_image_files_by_deployment": {str(k): v for k, v in self.leaked_images.items()},
            "image_files_of_settled_deployments": self.kept_images,
            "run_processes_left": sum(len(pids) for pids in self.processes_left.values()),
        }


async def check(
    dsn: str, deployment_ids: list[int], runner_dir: Path, sandbox_root: Path
) -> Findings:
    findings = Findings()
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, status FROM deployments WHERE id = ANY($1::bigint[])", deployment_ids
        )
        findings.statuses = {row["id"]: row["status"] for row in rows}
        for kind, query in DUPLICATES.items():
            findings.duplicated[kind] = int(await connection.fetchval(query))
        findings.triggered_jobs = {
            row["job_id"]
            for row in await connection.fetch(
                "SELECT DISTINCT details->>'job_id' AS job_id FROM deployment_history"
                " WHERE event_key ~ '^triggered(:[0-9]+)?$'"
            )
        }
    finally:
        await connection.close()
    _count_playbook_starts(findings, runner_dir)
    _count_images(findings, sandbox_root)
    await _processes_left(findings, runner_dir, sandbox_root)
    return findings


def _count_playbook_starts(findings: Findings, runner_dir: Path) -> None:
    for deployment_dir in sorted(runner_dir.glob("[0-9]*")):
        for entry in sorted(deployment_dir.iterdir()):
            if not entry.name.isdigit():
                # A trigger cut off while it prepared the run leaves its staging directory.
                if entry.name.startswith("."):
                    findings.staging_dirs_left.append(str(entry))
                continue
            job = f"local-{deployment_dir.name}-{entry.name}"
            starts = 0
            for event_file in entry.glob("artifacts/*/job_events/*.json"):
                try:
                    event = json.loads(event_file.read_text())
                except (OSError, ValueError):
                    continue
                starts += event.get("event") == "playbook_on_start"
            findings.playbook_starts[job] = starts


def _count_images(findings: Findings, sandbox_root: Path) -> None:
    for deployment_id, status in findings.statuses.items():
        images = sorted(str(p) for p in (sandbox_root / str(deployment_id)).rglob("*.img"))
        if status in (S.CANCELLED, S.DESTROYED):
            if images:
                findings.leaked_images[deployment_id] = images
        else:
            findings.kept_images += len(images)


async def _processes_left(findings: Findings, runner_dir: Path, sandbox_root: Path) -> None:
    """A run's last callback may land a moment before ansible-runner exits: a short grace."""
    runner = LocalRunner(Settings(runner_dir=runner_dir, sandbox_root=sandbox_root))
    jobs = [job for job in findings.playbook_starts if re.fullmatch(r"local-\d+-\d+", job)]
    for _ in range(30):
        findings.processes_left = {
            job: pids for job in jobs if (pids := runner.run_processes(RunRef(job)))
        }
        if not findings.processes_left:
            return
        await asyncio.sleep(0.5)


async def history_of(dsn: str, deployment_id: int, last: int = 15) -> list[str]:
    """The deployment's last history rows, for the report of a stuck deployment."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT created_at, event_key, status, message FROM deployment_history"
            f" WHERE deployment_id = $1 AND event_key !~ '{CALLBACK_EVENT}'"
            " ORDER BY id DESC LIMIT $2",
            deployment_id,
            last,
        )
    finally:
        await connection.close()
    return [
        f"{r['created_at']:%H:%M:%S.%f} {r['event_key']} [{r['status']}] {r['message']}"
        for r in reversed(rows)
    ]
