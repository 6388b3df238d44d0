"""Verbs about this machine and what runs on it: `detect` and `workloads`."""

from __future__ import annotations

import argparse
import time

from harness.cli.options import add_verb, err, output


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
