"""The verbs that go from measurements to a buyer's question: project, compare, validate."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from harness import __version__
from harness.errors import UserError


def _claims(args: argparse.Namespace, required: bool) -> list[Any]:
    from harness.projection import claims

    found = [claims.load(path) for path in args.claim or ()]
    if args.speedup:
        found.append(claims.from_arguments(args.speedup, args.threads))
    elif args.threads is not None:
        raise UserError("--threads goes with --speedup (a claim file says threads = N)")
    if required and not found:
        raise UserError("give a claim: --claim FILE (TOML) or --speedup KEY=FACTOR")
    return found


def cmd_project(args: argparse.Namespace) -> int:
    from harness.report import projection as render_projection
    from harness.cli import _out
    from harness.projection.project import project
    from harness.archive.store import Archive
    from harness.analysis.summary import summarize

    made_claims = _claims(args, required=True)
    archive = Archive(args.results)
    result = archive.load(args.result)
    made = [project(result, claim) for claim in made_claims]
    kept = []
    if not args.no_keep:
        stamp = {"made_utc": datetime.now(timezone.utc).isoformat(), "gapbench": __version__}
        kept = [archive.add_projection(result.id, {**p.to_dict(), **stamp}) for p in made]
    summary = summarize(result)
    payload = [p.to_dict() for p in made]
    _out(args, payload, lambda: render_projection.projections(summary, made, kept))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report import projection as render_projection
    from harness.cli import _out
    from harness.projection.compare import comparable, compare
    from harness.projection.project import project
    from harness.archive.store import Archive
    from harness.analysis.summary import summarize

    made_claims = _claims(args, required=False)
    archive = Archive(args.results)
    base, candidate = archive.load(args.base), archive.load(args.candidate)
    comparable(base, candidate)  # refuse before any work
    made = tuple(project(base, claim) for claim in made_claims)
    kept = tuple(archive.projections(base.id))
    result = compare(summarize(base), summarize(candidate), made, kept)
    _out(args, result.to_dict(), lambda: render_projection.comparison(result))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from harness.machine import fingerprint as hardware

    from harness.report import projection as render_projection
    from harness.cli import _out
    from harness.machine.devices import resolve_device
    from harness.archive.store import Archive
    from harness.experiments.validate import Plan, conditions, validate, virtual_check

    names = {c.name for c in conditions(1)} | {"virtual"}
    unknown = [n for n in args.only or () if n not in names]
    if unknown:
        raise UserError(f"unknown condition {unknown[0]!r} (one of {', '.join(sorted(names))})")
    device = resolve_device(args.device)
    archive = Archive(args.results)
    err = Console(stderr=True)
    started = time.perf_counter()

    def say(text: str) -> None:
        err.print(f"validate [{time.perf_counter() - started:5.0f} s] {text}", style="dim")

    fingerprint = hardware.detect().to_dict()
    plan = Plan.of(args.quick)
    only = tuple(args.only or ())
    outcomes = validate(plan, archive, fingerprint, device=device, only=only, say=say)
    virtual = None
    if not only or "virtual" in only:
        say("virtual: the other stages stretched, against the projection of the same speedup")
        virtual = virtual_check(plan, archive, fingerprint, device)
    seconds = time.perf_counter() - started
    payload = {
        "seconds": seconds,
        "conditions": [o.to_dict() for o in outcomes],
        "virtual": virtual.to_dict() if virtual else None,
    }
    _out(args, payload, lambda: render_projection.validation(outcomes, virtual, seconds))
    return 0


def add_verbs(
    verb: Callable[..., argparse.ArgumentParser],
    archive_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register project and compare on the main parser."""

    def claim_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--claim",
            action="append",
            metavar="FILE",
            help="a claim file (TOML: name, source, date, [speedup] KEY = factor); repeatable",
        )
        sub.add_argument(
            "--speedup",
            action="append",
            metavar="KEY=X",
            help="a speedup given inline, e.g. host-cpu.compute=1.5 or layer:inference/compute=2"
            " (together they make one claim); repeatable",
        )
        sub.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help="with --speedup: the speedup comes from N intra-op threads, which the replay "
            "asks of the cores",
        )

    project = verb(
        "project",
        cmd_project,
        "Project claims on a result set: naive Amdahl beside a replay of its dependency graph.",
    )
    project.add_argument("result", metavar="RESULT", help="an id, a unique prefix, or 'latest'")
    claim_options(project)
    project.add_argument(
        "--no-keep", action="store_true", help="do not keep the projections beside the set"
    )
    archive_option(project)

    compare = verb(
        "compare",
        cmd_compare,
        "Compare two sets of the same work: measured speedups, and claims projected from BASE.",
    )
    compare.add_argument("base", metavar="BASE", help="the set a claim would be judged from")
    compare.add_argument("candidate", metavar="CANDIDATE", help="the set run the other way")
    claim_options(compare)
    archive_option(compare)

    validate = verb(
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
        help="run only this condition (threads, backend, contention, virtual); repeatable",
    )
    validate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    archive_option(validate)
