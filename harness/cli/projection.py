"""Verbs from measurements to a buyer's question: `project` and `compare`."""

from __future__ import annotations

import argparse

from rich.console import Group

from harness.cli.options import (
    add_archive,
    add_claims,
    add_prices,
    add_verb,
    budget_of,
    claims_of,
    err,
    output,
    replay_sample_of,
)
from harness.errors import EXIT_BAD_INPUT, EXIT_SLOWER, UserError, say_error


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
    from harness.analysis.price import prices
    from harness.analysis.summary import summarize
    from harness.archive.names import load, locate
    from harness.projection.lineup import allowed_slowdown, distinct, judgeable, lineup, unjudged
    from harness.projection.project import project
    from harness.projection.serialisation import OVERLAPPED, losses, serialised_share
    from harness.report import lineup as shown

    allowed = None if args.fail_if_slower is None else allowed_slowdown(args.fail_if_slower)
    made_claims = claims_of(args, required=False)
    size, budget = replay_sample_of(args), budget_of(args)
    archive, base_id = locate(args.base, args.results)
    base = archive.load(base_id)
    candidates = [load(ref, args.results) for ref in args.candidate]
    distinct([base, *candidates])  # refuse before any work
    for candidate in candidates:
        comparable(base, candidate)
    if allowed is not None:
        judgeable([base, *candidates])
    costs = prices([base, *candidates], args.price_per_hour or (), args.prices)
    summaries = [summarize(r) for r in (base, *candidates)]
    made = tuple(project(base, claim, size, budget) for claim in made_claims)
    unread: list[str] = []
    kept = tuple(archive.projections(base.id, unread))
    for problem in unread:
        err().print(f"gapbench: note: {problem}: left out", style="yellow")
    # The finder's prediction is checked against a CANDIDATE that ran the same work overlapped
    # (in turn now and then, at most: a pool thread may take two branches one after another).
    overlapped = [c for c in candidates if serialised_share(c, size, budget) <= OVERLAPPED]
    found = losses(base, size, budget) if overlapped else None
    by_candidate = {c.id: found for c in overlapped if found is not None}
    result = lineup(summaries, made, kept, by_candidate, costs)
    payload = result.to_dict()
    slower = [] if allowed is None else result.slower(allowed)
    cannot = [] if allowed is None else unjudged(result)
    if allowed is not None:
        payload["fail_if_slower"] = {
            "allowed": allowed,
            "slower": [p.candidate.result.id for p in slower],
            "not_judged": cannot,
        }
    output(args, payload, lambda: shown.lineup(result, verbose=args.verbose))
    if cannot:  # a gate that cannot judge must not pass
        say_error(f"--fail-if-slower cannot judge: {'; '.join(cannot)}")
        return EXIT_BAD_INPUT
    for p in slower:
        say_error(
            f"{p.candidate.result.id} is {1 / p.end_to_end.ratio:.3f}x slower end to end at "
            f"p50 than {base.id} (significant; {args.fail_if_slower.strip()} allowed)"
        )
    return EXIT_SLOWER if slower else 0


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
        "Compare sets of the same work against the first: machines, speedups with significance, "
        "throughput, cost, and claims projected from BASE checked.",
    )
    compare.add_argument(
        "base", metavar="BASE", help="the set every speedup is taken against, and claims from"
    )
    compare.add_argument(
        "candidate",
        metavar="CANDIDATE",
        nargs="+",
        help="sets of the same work run another way or on another machine (ids, unique "
        "prefixes, 'latest' or folders)",
    )
    compare.add_argument(
        "--fail-if-slower",
        metavar="PCT",
        help="for a CI gate: exit 1 when a candidate is slower end to end than BASE by more "
        "than PCT at p50 (e.g. 5%%; 0%% to 1000%%) and the slowdown is significant (its 95%% "
        "interval over replicates lies below 1); needs 3 replicates a set, and valid sets "
        "(exit 2 when it cannot judge)",
    )
    compare.add_argument(
        "--verbose", action="store_true", help="list every execution setting that differs"
    )
    add_prices(compare)
    add_claims(compare)
    add_archive(compare)
