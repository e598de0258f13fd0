"""`python -m bench.chaos` (`make chaos N=30 K=5`): deployments on the real embedded stack while
the worker is SIGKILLed K times and PostgreSQL and Temporal each restart once.

The stack is `bench.chaos_stack` (the local runner, real ansible-playbook runs of the sample
templates with the directory backend). N deployments are launched through the API, at most
`--concurrency` followed at once; about 30 % are cancelled at a random moment after their launch
(destroyed instead when they settled first) and 30 % destroyed once they settle
(`bench.chaos_load`). Meanwhile the faults strike one after another, each after a random pause
(`bench.chaos_faults`). Launches are released with the faults — before the first fault a share
of N, one more share after each — so every fault finds deployments in flight and the run does
not finish before its faults do. Once the faults are over, the deployments have
`--settle-timeout` seconds to reach a final status; then `bench.chaos_checks` counts.

Prints progress on stderr and one JSON line on stdout: deployments launched, final, stuck,
history rows duplicated, runs started twice, image files leaked by cancelled or destroyed
deployments, run processes left, and the recovery of each fault. Exits 1 when any of those is
not 0 or a fault was not recovered from; the stack's directory (logs, run directories, data)
is then kept and named.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from bench.chaos_checks import CALLBACK_EVENT, check, history_of
from bench.chaos_faults import FaultInjector, FaultRecord, plan_faults
from bench.chaos_load import Api, Load, StatusBoard, Tracked, plan_deployments
from bench.chaos_stack import OPERATOR, ChaosStack

TEMPLATES = ["web-app", "postgres-small"]


@dataclass
class ChaosConfig:
    deployments: int = 30
    worker_kills: int = 5
    concurrency: int = 5
    seed: int = 0  # 0: a fresh one, printed with the figures
    gap_min_s: float = 3.0  # the random pause before each fault
    gap_max_s: float = 20.0
    down_s: float = 3.0  # how long PostgreSQL and Temporal stay down
    cancel_window_s: float = 20.0  # a cancel comes this long after its launch at most
    settle_timeout_s: float = 600.0
    keep: bool = False


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-n", "--deployments", type=int, default=ChaosConfig.deployments)
    parser.add_argument("-k", "--worker-kills", type=int, default=ChaosConfig.worker_kills)
    parser.add_argument("-c", "--concurrency", type=int, default=ChaosConfig.concurrency)
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    parser.add_argument("--gap-min-s", type=float, default=ChaosConfig.gap_min_s)
    parser.add_argument("--gap-max-s", type=float, default=ChaosConfig.gap_max_s)
    parser.add_argument("--down-s", type=float, default=ChaosConfig.down_s)
    parser.add_argument("--cancel-window-s", type=float, default=ChaosConfig.cancel_window_s)
    parser.add_argument("--settle-timeout-s", type=float, default=ChaosConfig.settle_timeout_s)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    args = parser.parse_args(argv)
    if args.deployments < 1 or args.worker_kills < 0 or args.concurrency < 1:
        parser.error("at least one deployment, no negative kills, a concurrency of 1 or more")
    if not 0 <= args.gap_min_s <= args.gap_max_s:
        parser.error("--gap-min-s must be between 0 and --gap-max-s")
    return ChaosConfig(**vars(args))


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def launch_budget(n: int, faults: int, recovered: int) -> int:
    """How many deployments may be launched once `recovered` faults are over: a share of n
    before the first fault and one more after each."""
    if recovered >= faults:
        return n
    return math.ceil(n * (recovered + 1) / (faults + 1))


async def drive(stack: ChaosStack, config: ChaosConfig, rng: random.Random) -> dict[str, Any]:
    started = time.monotonic()
    tracked = plan_deployments(config.deployments, rng, TEMPLATES, config.cancel_window_s)
    plan = plan_faults(config.worker_kills, rng)
    board = StatusBoard(stack.asyncpg_dsn)
    faults_over_at: list[float] = []

    def expired() -> bool:
        return bool(faults_over_at) and time.monotonic() > faults_over_at[0] + (
            config.settle_timeout_s
        )

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        token = await http.post(
            "/api/auth/token", data={"username": OPERATOR, "password": stack.operator_password}
        )
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        api = Api(http, headers, give_up_s=config.settle_timeout_s)
        load = Load(
            api,
            board,
            tracked,
            stack.template_ids,
            config.concurrency,
            run_tag=f"chaos-{rng.getrandbits(32):08x}",
            expired=expired,
        )

        def recovered(count: int) -> None:
            record = injector.records[-1]
            figures = record.as_json()
            log(
                f"fault {count}/{len(plan)} {record.kind} ({record.in_flight} in flight): answers"
                f" after {figures['answer_s']}s, moves again after {figures['recovery_s']}s"
                f" {record.note}".rstrip()
            )
            load.allow(launch_budget(config.deployments, len(plan), count))

        injector = FaultInjector(
            stack,
            plan,
            rng,
            gap_s=(config.gap_min_s, config.gap_max_s),
            down_s=config.down_s,
            started=started,
            in_flight=load.in_flight,
            struck=recovered,
        )
        load.allow(launch_budget(config.deployments, len(plan), 0))
        load_task = asyncio.create_task(load.run())
        try:
            await injector.run()
        finally:
            faults_over_at.append(time.monotonic())
            load.allow(config.deployments)
        log("faults over; waiting for every deployment to end its role")
        await load_task
        await board.close()

    ids = [d.id for d in tracked if d.id is not None]
    findings = await check(stack.asyncpg_dsn, ids, stack.runner_dir, stack.sandbox_root)
    figures: dict[str, Any] = {
        "deployments_launched": len(ids),
        **findings.summary(),
        "recoveries": [record.as_json() for record in injector.records],
        **_recovery_figures(injector.records),
        "worker_kills": plan.count("worker_kill"),
        "postgres_restarts": plan.count("postgres_restart"),
        "temporal_restarts": plan.count("temporal_restart"),
        "roles": dict(Counter(d.role.value for d in tracked)),
        "answers": _answers(tracked),
        "requests_resent": dict(api.resent),
        "status_board_reconnects": board.reconnects,
        "follow_errors": {d.name: d.error for d in tracked if d.error},
        "failed_reasons": await _failed_reasons(stack.asyncpg_dsn, findings.statuses),
        "drive_s": round(time.monotonic() - started, 1),
    }
    for deployment_id in findings.stuck:
        history = "\n  ".join(await history_of(stack.asyncpg_dsn, deployment_id))
        log(f"STUCK deployment {deployment_id}, last workflow steps:\n  {history}")
    return figures


def _recovery_figures(records: list[FaultRecord]) -> dict[str, Any]:
    unrecovered = [
        r.kind for r in records if r.answer_s is None or (r.recovery_s is None and r.in_flight)
    ]
    answered = [r.answer_s for r in records if r.answer_s is not None]
    moved = [r.recovery_s for r in records if r.recovery_s is not None]
    return {
        "faults_not_recovered": unrecovered,
        "answer_s_max": round(max(answered), 2) if answered else None,
        "recovery_s_max": round(max(moved), 2) if moved else None,
    }


def _answers(tracked: list[Tracked]) -> dict[str, dict[str, int]]:
    """Per operation, how many times each HTTP status ended it (after any resending)."""
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for d in tracked:
        for operation, status in d.answers.items():
            answers[operation][str(status)] += 1
    return {operation: dict(counts) for operation, counts in sorted(answers.items())}


async def _failed_reasons(dsn: str, statuses: dict[int, str]) -> dict[str, str]:
    failed = [i for i, status in statuses.items() if status in ("failed", "timed_out")]
    if not failed:
        return {}
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT DISTINCT ON (deployment_id) deployment_id, message FROM deployment_history"
            f" WHERE deployment_id = ANY($1::bigint[]) AND event_key !~ '{CALLBACK_EVENT}'"
            " ORDER BY deployment_id, id DESC",
            failed,
        )
    finally:
        await connection.close()
    return {str(row["deployment_id"]): row["message"] for row in rows}


def held(figures: dict[str, Any]) -> bool:
    return (
        figures["stuck"] == 0
        and figures["history_rows_duplicated"] == 0
        and figures["runs_started_twice"] == 0
        and figures["leaked_image_files"] == 0
        and figures["run_processes_left"] == 0
        and not figures["faults_not_recovered"]
        and not figures["follow_errors"]
        and figures["deployments_launched"] == figures["deployments_planned"]
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    warnings.simplefilter("ignore")  # platformdirs and friends, at import time
    seed = config.seed or random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    stack = ChaosStack(keep=True)
    log(f"stack in {stack.root} ({os.cpu_count()} cores), seed {seed}")
    ok = False
    try:
        stack.start()
        log(f"stack up in {time.monotonic() - started:.1f}s: API {stack.api_url}")
        figures = asyncio.run(drive(stack, config, rng))
        figures.update(
            deployments_planned=config.deployments,
            seed=seed,
            concurrency=config.concurrency,
            cores=os.cpu_count(),
            loadavg_1m_start_end=[round(load_before, 2), round(os.getloadavg()[0], 2)],
            wall_s=round(time.monotonic() - started, 1),
        )
        figures["held"] = ok = held(figures)
        print(json.dumps(figures, sort_keys=True), flush=True)
    except BaseException:
        for child in stack.children.values():
            log(f"--- {child.name} log tail ---\n{child.tail()}")
        raise
    finally:
        stack.keep = config.keep or not ok
        stack.stop()
        if stack.keep:
            log(f"kept {stack.root} (logs/, runs/, sandbox/)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
