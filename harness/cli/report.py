"""The `report` verb: result sets as one self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import (
    add_archive,
    add_claim_sources,
    add_prices,
    add_replay,
    add_verb,
    budget_of,
    claims_of,
    err,
    output,
    replay_sample_of,
)
from harness.errors import UserError


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.price import prices
    from harness.archive.names import locate, sheltered
    from harness.report import html
    from harness.report.page import build
    from harness.report.trace import refuse_overwrite

    claims = claims_of(args, required=False, threads=False)
    size, budget = replay_sample_of(args), budget_of(args)
    found = [locate(ref, args.results) for ref in args.result]
    for archive, set_id in found:
        # --force or not: an archive, or a set's folder, is not scratch.
        inside = sheltered(args.output, archive, set_id, args.results)
        if inside:
            raise UserError(f"{args.output} is inside {inside}: write elsewhere")
    refuse_overwrite(args.output, args.force)  # before minutes of replays, not after
    folder = Path(args.output).parent
    if not folder.is_dir():
        raise UserError(f"cannot write {args.output}: there is no folder {folder}")
    results = [archive.load(set_id) for archive, set_id in found]
    costs = prices(results, args.price_per_hour or (), args.prices)
    unread: list[str] = []
    base_archive, base_id = found[0]
    kept = base_archive.projections(base_id, unread)
    for problem in unread:
        err().print(f"gapbench: note: {problem}: left out", style="yellow")
    page = build(results, claims, kept, size, budget, [f"left out: {p}" for p in unread], costs)
    written = html.write(page, args.output, overwrite=args.force)
    payload = {
        "written_to": args.output,
        "bytes": written,
        "sets": [{"id": v.id, "valid": v.summary.verdict.valid, "work": v.work} for v in page.sets],
        "compared": [p.index for p in page.pairings if p.comparison is not None],
        "projections": len(page.projected),
    }
    count = len(page.sets)
    said = (
        f"report of {count} result set{'s' if count != 1 else ''} written to {args.output} "
        f"({written / 2**20:.1f} MiB, opens with no network)"
    )
    output(args, payload, lambda: said)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    report = add_verb(
        verbs,
        "report",
        cmd_report,
        "Write result sets as one self-contained HTML page: machines, verdicts, splits, "
        "latency, throughput, load, projections against what was delivered.",
    )
    report.add_argument(
        "result",
        metavar="RESULT",
        nargs="+",
        help="an id, a unique prefix, 'latest', or a set's folder; the first is the base the "
        "others, and the claims, are judged from",
    )
    report.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="the HTML file to write"
    )
    report.add_argument("--force", action="store_true", help="replace -o FILE if it exists")
    add_prices(report)
    add_claim_sources(report)
    add_replay(report)
    add_archive(report)
