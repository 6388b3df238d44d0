"""Verbs from measurements to a buyer's question: `project` and `compare`."""

from __future__ import annotations

import argparse

from rich.console import Group

from harness.cli.options import (
    add_archive,
    add_claims,
    add_verb,
    budget_of,
    claims_of,
    err,
    output,
    replay_sample_of,
)
from harness.errors import EXIT_BAD_INPUT, UserError, say_error


def cmd_project(args: argparse.Namespace) -> int:
    from harness.analysis.summary import summarize
    from harness.archive.names import locate
    from harness.projection.project import project
    from harness.projection.transfer import resolve
    from harness.report import projection, transfer

    made_claims = claims_of(args, required=True)
    size, budget = replay_sample_of(args), budget_of(args)
    archive, set_id = locate(args.result, args.results)
    result = archive.load(set_id)
    made, transfers = [], []
    for claim in made_claims:
        if not claim.by_class:
            made.append(project(result, claim, size, budget))
            continue
        # A claim by class: the one-ratio reading beside the class-aware one.
        found = resolve(result, claim)
        pair = (
            project(result, found.naive, size, budget),
            project(result, found.aware, size, budget),
        )
        made += pair
        transfers.append((found, *pair))
    kept: list[str] = []
    unkept = ""
    if not args.no_keep:
        try:
            kept = [archive.add_projection(result.id, p.kept()) for p in made]
        except UserError as exc:  # the projection is made: print it, and say so
            unkept = str(exc)
    summary = summarize(result)
    payload: object = [p.to_dict() for p in made]
    if transfers:
        payload = {
            "projections": payload,
            "by_class": [transfer.to_dict(*t) for t in transfers],
        }

    def shown() -> object:
        drawn = projection.projections(summary, made, kept)
        return Group(drawn, *(transfer.transfer(*t) for t in transfers))

    output(args, payload, shown)
    if unkept:
        say_error(unkept)
        return EXIT_BAD_INPUT
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.comparability import comparable
    from harness.analysis.summary import summarize
    from harness.archive.names import load, locate
    from harness.projection.compare import compare
    from harness.projection.project import project
    from harness.projection.serialisation import OVERLAPPED, losses, serialised_share
    from harness.report import projection

    made_claims = claims_of(args, required=False)
    size, budget = replay_sample_of(args), budget_of(args)
    archive, base_id = locate(args.base, args.results)
    base, candidate = archive.load(base_id), load(args.candidate, args.results)
    comparable(base, candidate)  # refuse before any work
    made = tuple(project(base, claim, size, budget) for claim in made_claims)
    unread: list[str] = []
    kept = tuple(archive.projections(base.id, unread))
    for problem in unread:
        err().print(f"gapbench: note: {problem}: left out", style="yellow")
    # The finder's prediction is checked against a CANDIDATE that ran the same work overlapped
    # (in turn now and then, at most: a pool thread may take two branches one after another).
    overlapped = serialised_share(candidate, size, budget) <= OVERLAPPED
    found = losses(base, size, budget) if overlapped else None
    result = compare(summarize(base), summarize(candidate), made, kept, found)
    output(args, result.to_dict(), lambda: projection.comparison(result))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    project = add_verb(
        verbs,
        "project",
        cmd_project,
        "Project claims on a result set: naive Amdahl beside a replay of its dependency graph.",
    )
    project.add_argument(
        "result", metavar="RESULT", help="an id, a unique prefix, 'latest', or a set's folder"
    )
    add_claims(project)
    project.add_argument(
        "--no-keep", action="store_true", help="do not keep the projections beside the set"
    )
    add_archive(project)

    compare = add_verb(
        verbs,
        "compare",
        cmd_compare,
        "Compare two sets of the same work: measured speedups, and claims projected from BASE.",
    )
    compare.add_argument("base", metavar="BASE", help="the set a claim would be judged from")
    compare.add_argument("candidate", metavar="CANDIDATE", help="the set run the other way")
    add_claims(compare)
    add_archive(compare)
