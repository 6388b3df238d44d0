"""`gapbench validate`: what-if experiments on this machine, with the projections' errors."""

from __future__ import annotations

import argparse
import time

from harness.cli.options import add_archive, add_verb, err, output
from harness.errors import EXIT_FAILED
from harness.machine.devices import DEVICES


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.archive.store import Archive
    from harness.experiments.validate import Plan, check_only, validate
    from harness.machine.devices import resolve_device
    from harness.machine.fingerprint import detect
    from harness.report import projection

    only = tuple(args.only or ())
    check_only(only)  # before the hardware scan
    device = resolve_device(args.device)
    archive = Archive(args.results).ensure()
    started = time.perf_counter()

    def say(text: str) -> None:
        err().print(f"validate [{time.perf_counter() - started:5.0f} s] {text}", style="dim")

    plan = Plan.of(args.quick)
    done = validate(
        plan, archive, detect(), device=device, only=only, say=say, clock=time.perf_counter
    )
    output(args, done.to_dict(), lambda: projection.validation(done))
    return EXIT_FAILED if done.failed else 0


def register(verbs: argparse._SubParsersAction) -> None:
    validate = add_verb(
        verbs,
        "validate",
        cmd_validate,
        "Check projections against real runs here: each condition changes one component.",
    )
    validate.add_argument(
        "--quick", action="store_true", help="fewer requests per replicate (what CI runs)"
    )
    validate.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this condition (those the workloads declare: threads, backend, "
        "contention; and virtual); repeatable",
    )
    validate.add_argument(
        "--device", choices=DEVICES, default="cpu", help="where the model stages run (default cpu)"
    )
    add_archive(validate)
