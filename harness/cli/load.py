"""`gapbench run`'s load options: a LoadGen scenario, or clients in a closed loop."""

from __future__ import annotations

import argparse

from harness.archive.schema import CLOSED_LOOP, Load
from harness.errors import UserError, number
from harness.measure.config import (
    BATCH,
    CONCURRENCY,
    QPS,
    SAMPLES_PER_QUERY,
    SCENARIOS,
    WORKERS,
)


def bounds_text(bounds: tuple[float, float]) -> str:
    return f"{number(bounds[0])} to {number(bounds[1])}"


def add_load(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "load",
        "how requests arrive (default: one at a time, each sent when the last is answered); "
        "a scenario runs under MLPerf's LoadGen, its minimums --min-requests and --min-duration",
    )
    group.add_argument(
        "--scenario",
        choices=SCENARIOS,
        help="LoadGen's scenario: single-stream, multi-stream (queries of "
        "--samples-per-query samples), server (Poisson arrivals at --qps), offline (every "
        "sample at once)",
    )
    group.add_argument(
        "--qps",
        type=float,
        metavar="RATE",
        help=f"server: queries a second, arriving as a Poisson process; offline: LoadGen's "
        f"expected throughput, which sizes the run ({bounds_text(QPS)})",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"threads serving LoadGen's queries at once ({bounds_text(WORKERS)}; default 1)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"instead of a scenario: N clients in a closed loop, each sending its next "
        f"request when its last is answered ({bounds_text(CONCURRENCY)})",
    )
    group.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help=f"offline and multi-stream: up to N samples a request, for a workload that "
        f"batches ({bounds_text(BATCH)}; default 1)",
    )
    group.add_argument(
        "--samples-per-query",
        type=int,
        metavar="N",
        help=f"multi-stream: samples a query ({bounds_text(SAMPLES_PER_QUERY)}; default 8)",
    )


def load_of(args: argparse.Namespace) -> Load | None:
    """The load asked for, or None for gapbench's own loop; refuses options that mean
    nothing without the scenario they belong to."""
    given = {
        name: getattr(args, name)
        for name in ("qps", "workers", "batch", "samples_per_query")
        if getattr(args, name) is not None
    }
    if args.concurrency is not None:
        if args.scenario is not None or given or args.p99_bound is not None:
            raise UserError(
                "--concurrency is a closed loop: it takes no --scenario, --qps, "
                "--workers, --batch or --samples-per-query"
            )
        return Load(CLOSED_LOOP, concurrency=args.concurrency)
    if args.scenario is None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UserError(f"{flags} needs --scenario (or --concurrency for a closed loop)")
        if args.p99_bound is not None:
            raise UserError("--p99-bound applies to --scenario server and --find-max-qps")
        return None
    if "qps" in given and args.scenario not in ("server", "offline"):
        raise UserError(f"--qps applies to --scenario server and offline, not {args.scenario}")
    if "batch" in given and args.scenario not in ("offline", "multi-stream"):
        raise UserError("--batch applies to --scenario offline and multi-stream")
    if "samples_per_query" in given and args.scenario != "multi-stream":
        raise UserError("--samples-per-query applies to --scenario multi-stream")
    if args.p99_bound is not None:
        if args.scenario != "server":
            raise UserError("--p99-bound applies to --scenario server and --find-max-qps")
        given["p99_bound_ms"] = args.p99_bound
    return Load(args.scenario, **given)


def add_slo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slo",
        metavar="OBJECTIVES",
        help="service-level objectives for goodput, the rate of requests meeting all of them: "
        "ttft, tpot, itl (every gap between tokens) and e2e, each a time with its unit, e.g. "
        "ttft=200ms,tpot=50ms,e2e=2s (0.001 ms to a day)",
    )


def slo_of(args: argparse.Namespace) -> dict[str, float] | None:
    """The objectives given, in ms by metric, checked (None: none given)."""
    if args.slo is None:
        return None
    from harness.analysis.generation import parse_slo

    return parse_slo(args.slo)
