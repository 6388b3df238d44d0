"""`gapbench run`'s load options: a LoadGen scenario, or clients in a closed loop."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from harness.archive.schema import CLOSED_LOOP, Load
from harness.cli.options import err, output
from harness.errors import UserError, number
from harness.measure.config import (
    BATCH,
    CONCURRENCY,
    P99_BOUND_MS,
    QPS,
    SAMPLES_PER_QUERY,
    SCENARIOS,
    STEPS,
    WORKERS,
    RunConfig,
)

if TYPE_CHECKING:
    from harness.archive.store import Archive
    from harness.machine.fingerprint import Fingerprint


def _range(bounds: tuple[float, float]) -> str:
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
        f"expected throughput, which sizes the run ({_range(QPS)})",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"threads serving LoadGen's queries at once ({_range(WORKERS)}; default 1)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"instead of a scenario: N clients in a closed loop, each sending its next "
        f"request when its last is answered ({_range(CONCURRENCY)})",
    )
    group.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help=f"offline and multi-stream: up to N samples a request, for a workload that "
        f"batches ({_range(BATCH)}; default 1)",
    )
    group.add_argument(
        "--samples-per-query",
        type=int,
        metavar="N",
        help=f"multi-stream: samples a query ({_range(SAMPLES_PER_QUERY)}; default 8)",
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
        if args.scenario is not None or given:
            raise UserError(
                "--concurrency is a closed loop: it takes no --scenario, --qps, "
                "--workers, --batch or --samples-per-query"
            )
        return Load(CLOSED_LOOP, concurrency=args.concurrency)
    if args.scenario is None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UserError(f"{flags} needs --scenario (or --concurrency for a closed loop)")
        return None
    if "qps" in given and args.scenario not in ("server", "offline"):
        raise UserError(f"--qps applies to --scenario server and offline, not {args.scenario}")
    if "batch" in given and args.scenario not in ("offline", "multi-stream"):
        raise UserError("--batch applies to --scenario offline and multi-stream")
    if "samples_per_query" in given and args.scenario != "multi-stream":
        raise UserError("--samples-per-query applies to --scenario multi-stream")
    return Load(args.scenario, **given)


def add_capacity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "capacity",
        "server runs at several rates, one set each, for one workload (--workers as above)",
    )
    group.add_argument(
        "--sweep",
        metavar="QPS,QPS,...",
        help="a server run at each rate: the latency-throughput table (1 to 64 rates)",
    )
    group.add_argument(
        "--find-max-qps",
        action="store_true",
        help="the highest rate whose p99 from the scheduled arrival stays within --p99-bound, "
        "by bisecting server runs between none and what a closed loop of the workers sustains",
    )
    group.add_argument(
        "--p99-bound",
        type=float,
        metavar="MS",
        help=f"--find-max-qps's bound on p99 latency, ms ({_range(P99_BOUND_MS)})",
    )
    group.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help=f"--find-max-qps's bisection steps ({_range(STEPS)}; default 5: within 1/32 of "
        "the closed loop's rate)",
    )


def capacity_asked(args: argparse.Namespace) -> bool:
    """Whether the run is a sweep or a search; refuses a half-given one."""
    if args.p99_bound is not None and not args.find_max_qps:
        raise UserError("--p99-bound applies to --find-max-qps")
    if args.steps is not None and not args.find_max_qps:
        raise UserError("--steps applies to --find-max-qps")
    if not (args.sweep or args.find_max_qps):
        return False
    if args.sweep and args.find_max_qps:
        raise UserError("--sweep and --find-max-qps are two runs: give one")
    if args.find_max_qps and args.p99_bound is None:
        raise UserError("--find-max-qps needs --p99-bound MS, the latency it must keep")
    if len(args.workloads) != 1:
        raise UserError("--sweep and --find-max-qps run one workload: name it")
    if args.concurrency is not None or args.qps is not None:
        raise UserError("--sweep and --find-max-qps choose the rates: no --qps or --concurrency")
    if args.scenario not in (None, "server"):
        raise UserError("--sweep and --find-max-qps run the server scenario")
    if args.batch is not None or args.samples_per_query is not None:
        raise UserError("--sweep and --find-max-qps take no --batch or --samples-per-query")
    if args.repeat != 1:
        raise UserError("--sweep and --find-max-qps run one replicate a rate: no --repeat")
    return True


def capacity_load(args: argparse.Namespace) -> Load:
    """The server load each step varies the rate of (its rate is the step's own)."""
    return Load("server", qps=1.0, workers=args.workers or 1)


def run_capacity(
    args: argparse.Namespace, config: RunConfig, archive: Archive, fingerprint: Fingerprint
) -> int:
    """`run --sweep` or `run --find-max-qps`: its steps as they finish, then the table."""
    from harness.archive.codec import to_dict
    from harness.experiments.capacity import find_max_qps, parse_rates, sweep
    from harness.report.load import capacity_table

    def say(text: str) -> None:
        err().print(text, style="dim")

    if args.sweep:
        found = sweep(config, parse_rates(args.sweep), archive, fingerprint, say)
    else:
        steps = 5 if args.steps is None else args.steps
        found = find_max_qps(config, args.p99_bound, archive, fingerprint, steps, say)
    output(args, to_dict(found), lambda: capacity_table(found))
    return 0


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
