"""`python -m bench`: start the stack, warm up, run the scenarios, print the table and JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
import warnings
from typing import Any

import httpx

from bench.config import BenchConfig, parse_args
from bench.context import BenchContext, open_context
from bench.monitor import MB
from bench.scenarios import (
    callbacks,
    launch,
    lifecycle,
    open_deployments,
    orchestration,
    reads,
    scaling,
)
from bench.stack import BenchStack
from bench.stats import Row, render_table, rounded

# Reads go late: the bulk load makes the database ten times larger for everything after it.
# Open deployments last: it leaves a thousand workflows open.
# Lifecycle runs on its own stack (the local runner, real playbooks).
ORDER = (
    "orchestration",
    "launch",
    "callbacks",
    "scaling",
    "lifecycle",
    "reads",
    "open_deployments",
)
MODULES = {
    "orchestration": orchestration,
    "launch": launch,
    "callbacks": callbacks,
    "scaling": scaling,
    "lifecycle": lifecycle,
    "reads": reads,
    "open_deployments": open_deployments,
}
REQUIRED_KEYS = (
    "orchestration_wf_s",
    "baseline_wf_s",
    "orchestration_ratio",
    "launch_p99_ms",
    "baseline_start_p99_ms",
    "launch_p99_ratio",
    "read_p50_ratio",
    "read_p50_floor_ratio",
    "read_api_cpu_ms",
    "seq_scans",
    "callback_events_per_s",
    "callback_lost",
    "callback_duplicated",
    "api_rss_mb",
    "worker_rss_mb",
    "open_destroy_p99_ratio",
    "open_worker_rss_mb",
    "scaling_launch_ratio",
    "scaling_read_ratio",
    "scaling_orchestration_ratio",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run_scenarios(stack: BenchStack, config: BenchConfig) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    api = stack.process("api")
    figures["api_idle_rss_mb"] = api.memory_info().rss / MB
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120, limits=limits) as http:
        ctx = await open_context(stack, config, http)
        log(f"warm-up: {config.warmup} deployments and {config.warmup} bare workflows")
        await orchestration.warm_up(ctx, config.warmup)
        for name in ORDER:
            if name not in config.scenarios:
                continue
            log(f"scenario {name}")
            started = time.perf_counter()
            figures.update(await MODULES[name].run(ctx))  # type: ignore[attr-defined]
            figures[f"{name}_scenario_s"] = time.perf_counter() - started
            log(f"scenario {name} done in {figures[f'{name}_scenario_s']:.1f}s")
        await _worker_peak(ctx, figures)
        figures["launch_retries"] = ctx.retries
    return figures


async def _worker_peak(ctx: BenchContext, figures: dict[str, Any]) -> None:
    """Peak RSS since start (VmHWM) as a cross-check of the sampled peaks."""
    for name in ("api", "worker"):
        try:
            with open(f"/proc/{ctx.stack.children[name].pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        figures[f"{name}_rss_hwm_whole_run_mb"] = int(line.split()[1]) / 1024
        except OSError:
            pass


def _temporal_cpu_ratio(f: dict[str, Any]) -> float:
    """Temporal server CPU per deployment over its CPU per bare workflow (scenario 1)."""
    return float(f["cpu_ms_per_deployment"]["temporal"] / f["cpu_ms_per_bare_workflow"]["temporal"])


# Issue 15's goals; each is a ratio against a baseline of the same run, or a bound.
TARGETS: dict[str, tuple[str, Any]] = {
    "orchestration": (
        "≥ 0.8× bare, server CPU ≤ 1.25×",
        lambda f: f["orchestration_ratio"] >= 0.8 and _temporal_cpu_ratio(f) <= 1.25,
    ),
    "launch": ("≤ 2× bare start p99", lambda f: f["launch_p99_ratio"] <= 2),
    "reads": (
        "≤ 3× (floor+raw), CPU ≤ 2 ms, 0 seq",
        lambda f: (
            f["read_p50_floor_ratio"] <= 3 and f["read_api_cpu_ms"] <= 2 and f["seq_scans"] == 0
        ),
    ),
    "callbacks": (
        "≥ 5000/s, 0 lost/dup",
        lambda f: (
            f["callback_events_per_s"] >= 5000
            and f["callback_lost"] == 0
            and f["callback_duplicated"] == 0
        ),
    ),
    "api_rss": ("≤ 250 MB", lambda f: f["api_rss_mb"] <= 250),
    "worker_rss": ("≤ 250 MB", lambda f: f["worker_rss_mb"] <= 250),
    "open_deployments": (
        "p99 ≤ 2× with 10, RSS ≤ 250 MB",
        lambda f: f["open_destroy_p99_ratio"] <= 2 and f["open_worker_rss_mb"] <= 250,
    ),
}


def evaluate(figures: dict[str, Any]) -> dict[str, bool]:
    holds = {}
    for name, (_, check) in TARGETS.items():
        try:
            holds[name] = bool(check(figures))
        except (KeyError, TypeError):
            continue
    return holds


def table(figures: dict[str, Any], holds: dict[str, bool]) -> str:
    nan = math.nan

    def f(key: str, default: Any = nan) -> Any:
        value = figures.get(key, default)
        return default if value is None else value

    rows: list[Row] = []
    if "orchestration_wf_s" in figures:
        rows += [
            Row(
                "1 orchestration (deployments/s)",
                f("orchestration_wf_s"),
                f("baseline_wf_s"),
                "wf/s",
                TARGETS["orchestration"][0],
                holds.get("orchestration"),
            ),
            Row(
                "  POST→succeeded p50",
                1000 * f("orchestration_p50_s"),
                1000 * f("baseline_wf_p50_s"),
                "ms",
            ),
            Row(
                "  POST→succeeded p99",
                1000 * f("orchestration_p99_s"),
                1000 * f("baseline_wf_p99_s"),
                "ms",
            ),
        ]
        product, bare = f("cpu_ms_per_deployment", {}), f("cpu_ms_per_bare_workflow", {})
        rows += [
            Row(
                "  Temporal CPU per deployment",
                product.get("temporal", nan),
                bare.get("temporal", nan),
                "ms",
            ),
            Row(
                "  worker CPU per deployment",
                product.get("worker", nan),
                bare.get("baseline-worker", nan),
                "ms",
            ),
            Row("  API CPU per deployment", product.get("api", nan), nan, "ms"),
        ]
    for c in f("launch_concurrency_levels", []) or []:
        for q in (50, 95, 99):
            target = TARGETS["launch"][0] if q == 99 and c == f("launch_top_concurrency") else ""
            rows.append(
                Row(
                    f"2 launch c={c} p{q} (vs start)",
                    f(f"launch_c{c}_api_p{q}_ms"),
                    f(f"launch_c{c}_bare_start_p{q}_ms"),
                    "ms",
                    target,
                    holds.get("launch") if target else None,
                )
            )
    if "read_p50_ratio" in figures:
        for view in ("detail", "list_first", "list_deep", "history"):
            for q in (50, 99):
                rows.append(
                    Row(
                        f"3 read {view} p{q}",
                        f(f"read_{view}_p{q}_ms"),
                        f(f"read_{view}_raw_p{q}_ms"),
                        "ms",
                    )
                )
        rows.append(
            Row(
                "  worst p50 / (floor + raw)",
                f("read_p50_floor_ratio"),
                nan,
                "ratio",
                TARGETS["reads"][0],
                holds.get("reads"),
            )
        )
        rows.append(Row("  API CPU per read", f("read_api_cpu_ms"), nan, "ms"))
        rows.append(Row("  HTTP floor: GET /docs p50", f("read_http_floor_p50_ms"), nan, "ms"))
        rows.append(Row("  same, through httpx", f("read_httpx_floor_p50_ms"), nan, "ms"))
        rows.append(Row("  seq scans on big tables (plans)", f("seq_scans"), nan, "count"))
        rows.append(Row("  seq scans observed (pg_stat)", f("seq_scans_observed"), nan, "count"))
    if "callback_events_per_s" in figures:
        rows += [
            Row(
                "4 callbacks, one playbook",
                f("callback_events_per_s"),
                f("callback_baseline_events_per_s"),
                "events/s",
                TARGETS["callbacks"][0],
                holds.get("callbacks"),
            ),
            Row(
                f"  callbacks, {f('callback_streams')} playbooks at once",
                f("callback_parallel_events_per_s"),
                f("callback_parallel_baseline_events_per_s"),
                "events/s",
            ),
            Row(
                "  events lost / duplicated",
                f("callback_lost") + f("callback_duplicated"),
                f("callback_baseline_lost"),
                "events",
            ),
        ]
    if "api_rss_mb" in figures:
        rows += [
            Row(
                "5 API peak RSS (vs idle API)",
                f("api_rss_mb"),
                f("api_idle_rss_mb"),
                "MB",
                TARGETS["api_rss"][0],
                holds.get("api_rss"),
            ),
            Row(
                "5 worker peak RSS (vs bare worker)",
                f("worker_rss_mb"),
                f("baseline_worker_rss_mb"),
                "MB",
                TARGETS["worker_rss"][0],
                holds.get("worker_rss"),
            ),
        ]
    if "open_destroy_p99_ratio" in figures:
        rows += [
            Row(
                f"6 destroy answer p99, {f('open_large'):.0f} open (vs {f('open_small'):.0f})",
                f("open_destroy_many_p99_ms"),
                f("open_destroy_few_p99_ms"),
                "ms",
                TARGETS["open_deployments"][0],
                holds.get("open_deployments"),
            ),
            Row(
                "  destroy answer p50",
                f("open_destroy_many_p50_ms"),
                f("open_destroy_few_p50_ms"),
                "ms",
            ),
            Row(f"  worker RSS, {f('open_large'):.0f} open", f("open_worker_rss_mb"), nan, "MB"),
        ]
    rows += _scaling_rows(f)
    rows += _lifecycle_rows(f)
    return render_table(rows)


def _scaling_rows(f: Any) -> list[Row]:
    """Throughput with 2 processes over 1 (no target: the scaling ratio on the record)."""
    rows = []
    for key, label, unit in (
        ("launch", "7 launches, 2 API processes (vs 1)", "req/s"),
        ("read", "7 reads, 2 API processes (vs 1)", "req/s"),
        ("orchestration", "7 orchestration, 2 workers (vs 1)", "wf/s"),
    ):
        suffix = "wf_s" if key == "orchestration" else "rps"
        if f(f"scaling_{key}_{suffix}_2", None) is not None:
            rows.append(
                Row(label, f(f"scaling_{key}_{suffix}_2"), f(f"scaling_{key}_{suffix}_1"), unit)
            )
    return rows


def _lifecycle_rows(f: Any) -> list[Row]:
    """Real playbooks: cancel to no process left, destroy to `destroyed`, beside bare runs."""
    if f("lifecycle_destroy_p99_ms", None) is None:
        return []
    nan = math.nan
    return [
        Row(
            "8 cancel → no process left p99",
            f("lifecycle_cancel_no_process_p99_ms"),
            f("lifecycle_bare_kill_p99_ms"),
            "ms",
        ),
        Row("  cancel → cancelled p99", f("lifecycle_cancel_status_p99_ms"), nan, "ms"),
        Row(
            "8 destroy → destroyed p99 (vs teardown)",
            f("lifecycle_destroy_p99_ms"),
            f("lifecycle_bare_teardown_p99_ms"),
            "ms",
        ),
        Row(
            "  destroy → destroyed p50",
            f("lifecycle_destroy_p50_ms"),
            f("lifecycle_bare_teardown_p50_ms"),
            "ms",
        ),
    ]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return rounded(value, 3)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")  # platformdirs and friends, at import time
    started = time.perf_counter()
    load_before = os.getloadavg()
    stack = BenchStack(keep=config.keep, temporal_file=config.temporal_file)
    log(f"stack in {stack.root} ({os.cpu_count()} cores)")
    try:
        stack.start()
        log(f"stack up in {time.perf_counter() - started:.1f}s: API {stack.api_url}")
        figures = asyncio.run(run_scenarios(stack, config))
    except BaseException:
        for child in stack.children.values():
            log(f"--- {child.name} log tail ---\n{child.tail()}")
        raise
    finally:
        stack.stop()
    figures["cores"] = os.cpu_count()
    figures["temporal_persistence"] = "sqlite-file" if config.temporal_file else "memory"
    # Other work on the machine shows here: every ratio was measured under the same load.
    figures["loadavg_1m_start_end"] = [load_before[0], os.getloadavg()[0]]
    figures["bench_wall_s"] = time.perf_counter() - started
    figures["smoke"] = config.orchestration_n < 50
    holds = evaluate(figures)
    figures["targets"] = holds
    missing = [key for key in REQUIRED_KEYS if key not in figures]
    correctness_failed = bool(
        figures.get("callback_lost")
        or figures.get("callback_duplicated")
        or figures.get("read_rows_mismatch")
        # Lifecycle: every deployment final, no run process or image file left behind.
        or figures.get("lifecycle_not_final")
        or figures.get("lifecycle_run_processes_left")
        or figures.get("lifecycle_image_files_left")
    )
    print(table(figures, holds))
    print(
        f"\n{os.cpu_count()} cores; whole run {figures['bench_wall_s']:.0f}s; targets held: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in holds.items())
    )
    if missing and set(config.scenarios) == set(ORDER):
        log(f"missing figures: {', '.join(missing)}")
        correctness_failed = True
    print(json.dumps(_json_safe(figures), sort_keys=True, ensure_ascii=False), flush=True)
    if correctness_failed or (config.strict and not all(holds.values())):
        sys.exit(1)
