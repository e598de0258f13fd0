"""Per-process RSS peaks and CPU seconds while a scenario runs; optional py-spy profiles."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import psutil

MB = 1024 * 1024


class ProcessMonitor:
    """Samples RSS every `interval_s` and adds up CPU time, per named group of processes.

    A group is a list of processes whose CPU adds up (PostgreSQL: the postmaster and its
    backends); its RSS peak is that of its largest process."""

    def __init__(self, groups: dict[str, list[psutil.Process]], interval_s: float = 0.1) -> None:
        self._groups = groups
        self._interval = interval_s
        self.peak_rss_mb: dict[str, float] = dict.fromkeys(groups, 0.0)
        self.cpu_s: dict[str, float] = dict.fromkeys(groups, 0.0)
        self._cpu_start: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0

    def _sample(self) -> None:
        for name, processes in self._groups.items():
            for process in processes:
                try:
                    rss = process.memory_info().rss / MB
                except psutil.Error:
                    continue
                self.peak_rss_mb[name] = max(self.peak_rss_mb[name], rss)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> ProcessMonitor:
        for processes in self._groups.values():
            for process in processes:
                self._cpu_start[process.pid] = self._cpu(process)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._sample()
        for name, processes in self._groups.items():
            self.cpu_s[name] = sum(
                max(0.0, self._cpu(p) - self._cpu_start.get(p.pid, 0.0)) for p in processes
            )


class Profiler:
    """`py-spy record` attached to named processes for the length of a `with` block (raw
    collapsed stacks, one file per process). A no-op without an output directory."""

    def __init__(self, out_dir: Path | None, label: str, pids: dict[str, int]) -> None:
        self._out = out_dir
        self._label = label
        self._pids = pids
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        if self._out is None:
            return self
        self._out.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).parent / "py-spy")
        for name, pid in self._pids.items():
            out = self._out / f"{self._label}-{name}.txt"
            self._procs.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
