"""A real worker process whose disks step hangs right after it commits, so that a test can
SIGKILL it after the side effect and before Temporal hears of the completion.

Run as `python -m tests.crash_worker MARKER_FILE`; settings come from PROVISIO_* variables.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio import activity
from temporalio.client import Client

from activities.deployment_activities import DeploymentActivities
from db.session import create_engine, create_sessionmaker
from pipeline.manual_runner import ManualRunner
from settings import get_settings
from vocabulary.contracts import DisksAllocatedInput


class HangAfterCommit(DeploymentActivities):
    def __init__(self, sessionmaker: object, marker: Path) -> None:
        super().__init__(sessionmaker)  # type: ignore[arg-type]
        self._marker = marker

    @activity.defn
    async def record_disks_allocated(self, data: DisksAllocatedInput) -> None:
        await super().record_disks_allocated(data)
        self._marker.write_text(str(data.deployment_id))
        time.sleep(3600)  # blocks the whole process: it can only die now


async def main(marker: Path) -> None:
    from worker import build_worker

    settings = get_settings()
    client = await Client.connect(settings.temporal_address)
    sessionmaker = create_sessionmaker(create_engine(settings.database_url))
    with ThreadPoolExecutor(max_workers=2) as executor:
        worker = build_worker(
            client,
            settings,
            sessionmaker,
            ManualRunner(),
            executor,
            deployments=HangAfterCommit(sessionmaker, marker),
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
