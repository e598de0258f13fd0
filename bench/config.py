"""The bench's knobs: defaults are the issue's sizes; `--smoke` shrinks everything to seconds."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

SCENARIOS = (
    "orchestration",
    "launch",
    "callbacks",
    "scaling",
    "lifecycle",
    "reads",
    "open_deployments",
)
# `--smoke` leaves out the lifecycle's real playbooks (minutes even at two samples); its own
# smoke test, tests/bench/test_lifecycle_smoke.py, runs them.
SMOKE_SCENARIOS = tuple(name for name in SCENARIOS if name != "lifecycle")


@dataclass
class BenchConfig:
    # Warm-up before the scenarios: deployments and bare workflows run end to end.
    warmup: int = 20
    # 1. Orchestration throughput (and 5. footprint, sampled meanwhile).
    orchestration_n: int = 200
    orchestration_concurrency: int = 50
    # 2. Launch latency: requests per kind at each client concurrency.
    launch_concurrency: list[int] = field(default_factory=lambda: [1, 20])
    launch_requests: list[int] = field(default_factory=lambda: [100, 200])
    # 3. Read path at scale.
    read_deployments: int = 100_000
    read_disks: int = 300_000
    read_history: int = 1_000_000
    read_users: int = 10
    read_requests: int = 300
    # 4. Callback ingestion: playbook shape, the plugin's batch size, parallel playbooks.
    callback_hosts: int = 50
    callback_tasks: int = 40
    callback_batch_size: int = 100
    callback_streams: int = 4
    # 8. Lifecycle latency, real playbooks: cancels and destroys, each beside its bare run
    # (each sample is four playbook runs, 20–30 s on two cores).
    lifecycle_samples: int = 3
    # 6. Open deployments: the same destroy timed with few and with many open.
    open_small: int = 10
    open_large: int = 1_000
    open_samples: int = 30
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    # Exit non-zero when a target is missed (correctness failures always do).
    strict: bool = False
    # Keep the temporary stack directory (logs, PostgreSQL data) after the run.
    keep: bool = False
    # `make dev` gives the Temporal dev server a SQLite file; the bench keeps its state in memory
    # by default (as the tests do): with the file, the dev server's pure-Go SQLite is the
    # bottleneck of both sides (twice the server CPU per workflow) and N=200 does not fit in
    # ten minutes on two cores. Production runs Temporal on PostgreSQL, like neither.
    temporal_file: bool = False
    profile_dir: str | None = None

    @classmethod
    def smoke(cls) -> BenchConfig:
        return cls(
            warmup=1,
            orchestration_n=6,
            orchestration_concurrency=3,
            launch_concurrency=[1, 3],
            launch_requests=[3, 6],
            read_deployments=300,
            read_disks=900,
            read_history=3_000,
            read_users=3,
            read_requests=10,
            callback_hosts=4,
            callback_tasks=3,
            callback_streams=2,
            open_small=2,
            open_large=6,
            open_samples=3,
            lifecycle_samples=2,
            scenarios=list(SMOKE_SCENARIOS),
        )


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Provisio's benchmarks against bare Temporal and raw SQL on this machine.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the whole run in seconds")
    parser.add_argument("--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("-n", "--orchestration-n", type=int, help="deployments in scenario 1")
    parser.add_argument("-c", "--orchestration-concurrency", type=int)
    parser.add_argument("--launch-concurrency", type=_ints, help="e.g. 1,20")
    parser.add_argument("--launch-requests", type=_ints, help="requests per kind, e.g. 150,400")
    parser.add_argument("--read-deployments", type=int)
    parser.add_argument("--read-disks", type=int)
    parser.add_argument("--read-history", type=int)
    parser.add_argument("--read-users", type=int)
    parser.add_argument("--read-requests", type=int, help="requests per read endpoint")
    parser.add_argument(
        "--scale", type=float, help="multiply the read-path row counts (0.01 = 1k deployments)"
    )
    parser.add_argument("--callback-hosts", type=int)
    parser.add_argument("--callback-tasks", type=int)
    parser.add_argument("--callback-batch-size", type=int)
    parser.add_argument("--callback-streams", type=int, help="playbooks streamed in parallel")
    parser.add_argument("--open-small", type=int, help="deployments open for the few-open probe")
    parser.add_argument("--open-large", type=int, help="deployments open for the many-open probe")
    parser.add_argument("--open-samples", type=int, help="destroys timed at each level")
    parser.add_argument(
        "--lifecycle-samples", type=int, help="cancels and destroys timed, each beside its bare run"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the stack's temporary dir")
    parser.add_argument(
        "--temporal-file",
        action="store_true",
        help="give the Temporal dev server a SQLite file, as make dev does (slower)",
    )
    parser.add_argument(
        "--profile-dir", help="run the API and worker under py-spy, writing flame graphs here"
    )
    args = parser.parse_args(argv)

    config = BenchConfig.smoke() if args.smoke else BenchConfig()
    for f in fields(BenchConfig):
        value = getattr(args, f.name, None)
        if value is None or value is False:
            continue
        if f.name == "scenarios":
            value = [s.strip() for s in value.split(",") if s.strip()]
            unknown = set(value) - set(SCENARIOS)
            if unknown:
                parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
        setattr(config, f.name, value)
    if args.scale:
        config.read_deployments = max(10, int(config.read_deployments * args.scale))
        config.read_disks = int(config.read_disks * args.scale)
        config.read_history = max(config.read_deployments, int(config.read_history * args.scale))
    if len(config.launch_requests) != len(config.launch_concurrency):
        parser.error("--launch-requests needs one count per --launch-concurrency level")
    if config.read_history < config.read_deployments:
        parser.error("every deployment has at least its `created` history row")
    return config
