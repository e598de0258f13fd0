"""The bench's worker processes: `python -m bench.worker [--baseline]`.

The product worker is `worker.build_worker` with the bench runner in place of the settings'
runner (everything else as `worker.run_worker`: one engine, a 16-thread activity pool). The
baseline worker runs the bare workflow with the same worker settings. Each is its own process,
so the bench can measure its RSS and CPU. `--ready-file` is touched once polling has started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from temporalio.client import Client

from bench.baseline import build_baseline_worker
from bench.runner import BenchRunner
from db.session import create_engine, create_sessionmaker
from settings import get_settings
from worker import build_worker

log = logging.getLogger("bench.worker")


async def run(baseline: bool, ready_file: Path | None) -> None:
    settings = get_settings()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = create_engine(settings.database_url)
    runner = BenchRunner()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            worker: AbstractAsyncContextManager[object]
            if baseline:
                worker = build_baseline_worker(client, executor)
            else:
                worker = build_worker(
                    client, settings, create_sessionmaker(engine), runner, executor
                )
            async with worker:  # polls until the block ends, then shuts down gracefully
                if ready_file is not None:
                    ready_file.touch()
                log.info("bench %s worker polling", "baseline" if baseline else "product")
                await stop.wait()
    finally:
        runner.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    # As `provisio worker` (cli.py) logs.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(args.baseline, args.ready_file))


if __name__ == "__main__":
    main()
