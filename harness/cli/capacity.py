"""`gapbench run --sweep` and `--find-max-qps`: server runs at several rates, one set each."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from harness.archive.schema import Load, RunLength
from harness.cli.load import bounds_text
from harness.cli.options import err, output
from harness.errors import EXIT_INTERRUPTED, UserError, in_range
from harness.measure.config import P99_BOUND_MS, QPS, RATES, STEPS, RunConfig

if TYPE_CHECKING:
    from harness.archive.store import Archive
    from harness.machine.fingerprint import Fingerprint


def parse_rates(text: str) -> tuple[float, ...]:
    """``--sweep 2,4,8`` as rates, each in range, at most 64 of them."""
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--sweep {text!r}: rates a second, comma-separated, e.g. 2,4,8") from None
    in_range("--sweep's count of rates", len(rates), *RATES)
    for rate in rates:
        in_range("--sweep", rate, *QPS)
    return rates


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
        help=f"the p99 latency a search must keep, and LoadGen judges a server run by, ms "
        f"({bounds_text(P99_BOUND_MS)}; LoadGen's default: 100)",
    )
    group.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help=f"--find-max-qps's bisection steps ({bounds_text(STEPS)}; default 5: within 1/32 of "
        "the closed loop's rate)",
    )


def capacity_asked(args: argparse.Namespace) -> bool:
    """Whether the run is a sweep or a search; refuses a half-given one."""
    if args.steps is not None and not args.find_max_qps:
        raise UserError("--steps applies to --find-max-qps")
    if args.sweep is None and not args.find_max_qps:
        return False
    if args.sweep is not None and args.find_max_qps:
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
    if args.sweep is not None:
        parse_rates(args.sweep)  # checked now, not after the hardware scan
    else:
        in_range("--p99-bound", args.p99_bound, *P99_BOUND_MS)
        in_range("--steps", 5 if args.steps is None else args.steps, *STEPS)
    if args.slo is not None:
        raise UserError("--slo applies to one set: give it to `gapbench show` of a step's set")
    if args.sweep is not None and args.p99_bound is not None:
        raise UserError("--p99-bound applies to --find-max-qps, not --sweep")
    return True


def capacity_load(args: argparse.Namespace) -> Load:
    """The server load each step varies the rate of (its rate is the step's own)."""
    workers = 1 if args.workers is None else args.workers
    return Load("server", qps=QPS[1], workers=workers)  # each step's rate is its own


def capacity_length(args: argparse.Namespace, length: RunLength) -> RunLength:
    """A search's steps judge p99: unless --min-requests says otherwise, each measures the
    662 queries a p99 needs."""
    from harness.analysis.stats import PERCENTILE_FLOORS

    if not args.find_max_qps or args.min_requests is not None:
        return length
    return replace(length, min_requests=max(length.min_requests, PERCENTILE_FLOORS[99]))


def run_capacity(
    args: argparse.Namespace, config: RunConfig, archive: Archive, fingerprint: Fingerprint
) -> int:
    """`run --sweep` or `run --find-max-qps`: its steps as they finish, then the table."""
    from harness.archive.codec import to_dict
    from harness.experiments.capacity import find_max_qps, sweep
    from harness.report.capacity import capacity_table

    def say(text: str) -> None:
        err().print(text, style="dim")

    if args.sweep is not None:
        for rate in parse_rates(args.sweep):  # every step checked before the first runs
            replace(config, load=replace(capacity_load(args), qps=rate))
        found = sweep(config, parse_rates(args.sweep), archive, fingerprint, say)
    else:
        steps = 5 if args.steps is None else args.steps
        found = find_max_qps(config, args.p99_bound, archive, fingerprint, steps, say)
    output(args, to_dict(found), lambda: capacity_table(found))
    if found.interrupted:
        return EXIT_INTERRUPTED
    return 0
