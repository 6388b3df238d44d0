"""Verbs about this machine and what runs on it: `detect` and `workloads`."""

from __future__ import annotations

import argparse
import time

from harness.cli.options import add_archive, add_verb, err, output
from harness.errors import UserError, in_range


def cmd_detect(args: argparse.Namespace) -> int:
    from harness.archive.codec import to_dict
    from harness.machine.fingerprint import detect
    from harness.report import terminal

    started = time.perf_counter()
    fingerprint = to_dict(detect())
    took = time.perf_counter() - started
    if not args.json:
        err().print(f"detected in {took:.2f} s", style="dim")
    output(args, fingerprint, lambda: terminal.detect(fingerprint))
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from harness import plugins
    from harness.archive.codec import to_dict
    from harness.report import terminal

    entries = plugins.catalogue()
    payload = {
        e.name: {
            "ref": e.ref,
            "description": f"broken: {e.problem}" if e.problem else e.description,
            "stages": to_dict(e.stages),
            "params": [p.to_dict() for p in e.params],
        }
        for e in entries
    }
    output(args, payload, lambda: terminal.workloads(entries))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    add_verb(
        verbs, "detect", cmd_detect, "Show the hardware fingerprint and the environment checks."
    )
    add_verb(
        verbs,
        "workloads",
        cmd_workloads,
        "List the workloads found, with their stages and parameters.",
    )
    sub = add_verb(
        verbs,
        "calibrate",
        cmd_calibrate,
        "Measure this machine's peaks (GEMM, memory bandwidth, dispatch, JSON, round trips), "
        "kept in the archive and reused.",
    )
    sub.add_argument(
        "--refresh", action="store_true", help="measure again even where numbers are kept"
    )
    sub.add_argument(
        "--threads",
        type=int,
        action="append",
        metavar="N",
        help="intra-op threads to measure GEMM and STREAM at (1 to 4 times the usable cores; "
        "repeatable; default 1 and every usable core)",
    )
    sub.add_argument(
        "--quick",
        action="store_true",
        help="short measures with small arrays (seconds, rough; STREAM may stay in cache)",
    )
    sub.add_argument(
        "--from",
        dest="from_set",
        metavar="RESULT",
        help="also measure the matrix products a profiled set ran (its eight costliest shapes), "
        "each alone: the peak at the pipeline's own shapes",
    )
    add_archive(sub)


# More threads than cores measures the pools' contention, not the machine: a few times the
# cores at most.
OVERSUBSCRIBED = 4


def cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.archive.codec import to_dict
    from harness.archive.store import Archive
    from harness.machine.cores import whole
    from harness.machine.fingerprint import detect
    from harness.measure.calibrate import calibration
    from harness.report.calibration import calibration as table

    fingerprint = detect()
    most = OVERSUBSCRIBED * whole(fingerprint.cores)
    for count in args.threads or ():
        in_range("--threads", count, 1, most)
    archive = Archive(args.results).ensure()
    shapes = []
    if args.from_set:
        from harness.archive.names import load
        from harness.measure.operators import gemm_shapes

        profiled = load(args.from_set, args.results)
        if profiled.operators is None:
            raise UserError(
                f"{profiled.id} has no operators to take shapes from: run it with --profile"
            )
        shapes = gemm_shapes(profiled.operators)
    devices = ("cuda:0",) if _cuda() else ()
    quiet = args.json
    found = calibration(
        archive,
        fingerprint,
        threads=tuple(args.threads or ()),
        shapes=shapes,
        refresh=args.refresh,
        quick=args.quick,
        devices=devices,
        say=(lambda text: None) if quiet else (lambda text: err().print(text, style="dim")),
    )
    payload = {**to_dict(found.calibration), "kept_at": found.where, "measured": found.measured}
    output(args, payload, lambda: table(found.calibration, found.where, found.measured))
    return 0


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
