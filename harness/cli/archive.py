"""Verbs over the archive: `results`, `verify`, `rm`, `show` and `trace`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from harness.cli.load import add_slo, slo_of
from harness.cli.options import (
    add_archive,
    add_claim_sources,
    add_replay,
    add_verb,
    budget_of,
    claims_of,
    err,
    output,
    replay_sample_of,
)
from harness.errors import EXIT_BAD_INPUT, UserError, say_error

if TYPE_CHECKING:  # the store pulls in pandas and pyarrow: loaded when a verb runs
    from harness.archive.store import Archive


def cmd_results(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from harness.analysis.listing import chosen, rows, workload_of
    from harness.archive.codec import to_dict
    from harness.report import listing

    archive = _existing(args.results)
    listings = archive.listings()
    picked = chosen(listings, args.workload, args.host)
    # Each set is read and judged (its verdict is never stored): a bar where that takes a while.
    quiet = args.json or len(picked) <= 3 or not err().is_terminal
    with Progress(console=err(), transient=True, disable=quiet) as bar:
        task = bar.add_task("reading sets", total=len(picked))
        found = rows(archive, picked, lambda: bar.advance(task))
    payload = [
        {
            "id": r.listing.id,
            "created_utc": r.listing.manifest.created_utc if r.listing.manifest else None,
            "host": r.host,
            "workload": workload_of(r.listing) or None,
            "backend": m.execution.backend if (m := r.listing.manifest) else None,
            "threads": m.execution.threads if m else None,
            "cpu": m.fingerprint.host.host_processor_model_name if m else None,
            "requests": r.listing.requests,
            "complete": bool(m and m.complete),
            "p50_ms": r.p50_ms,
            "valid": r.valid,
            "problems": list(r.problems),
            "manifest": to_dict(r.listing.manifest),
            "problem": r.listing.problem or r.problem,
            "failed": to_dict(r.listing.failed),
        }
        for r in found
    ]
    filtered = " matching" if args.workload is not None or args.host is not None else ""
    output(args, payload, lambda: listing.results(found, archive.location, filtered))
    if listings and all(e.manifest is None and e.failed is None for e in listings):
        say_error(f"no set in {archive.location} can be read")
        return EXIT_BAD_INPUT
    return 0


def _existing(results: str | None) -> Archive:
    """The archive ``--results`` names, which must exist (a verb over sets, not one writing)."""
    from harness.archive.store import Archive

    return Archive(results).required()


UNCHECKED = "read whole, but without checksums to compare (written before gapbench kept them)"


def cmd_verify(args: argparse.Namespace) -> int:
    archive = _existing(args.results)
    chosen = [archive.resolve(ref) for ref in args.result] if args.result else archive.ids()
    found = {set_id: archive.verify(set_id) for set_id in chosen}
    # An intact record of a failed workload is nothing wrong, but is no set either: say so.
    failed = {i: f.reason for i in chosen if not found[i] and (f := archive.failure(i))}
    ok = [i for i in chosen if not found[i] and i not in failed]
    unchecked = {i for i in ok if not archive.manifest(i).checksums}
    payload = [
        {
            "id": i,
            "ok": not problem,
            "problem": problem,
            "failed": failed.get(i, ""),
            "checksums": None if problem or i in failed else i not in unchecked,
        }
        for i, problem in found.items()
    ]

    def line(set_id: str, problem: str) -> str:
        if problem:
            return f"BAD  {set_id}: {problem}"
        if set_id in failed:
            return f"ok   {set_id}: a record of a failed workload: {failed[set_id]}"
        if set_id in unchecked:
            return f"ok   {set_id}: {UNCHECKED}"
        return f"ok   {set_id}"

    listed = "\n".join(line(i, p) for i, p in found.items())
    output(args, payload, lambda: listed or f"no result sets in {archive.location}")
    bad = sum(1 for problem in found.values() if problem)
    if bad:
        say_error(f"{bad} of {len(found)} result sets are damaged")
        return EXIT_BAD_INPUT
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    archive = _existing(args.results)
    if "latest" in args.result:
        raise UserError("rm takes ids or unique prefixes, not 'latest': name what goes")
    chosen = list(dict.fromkeys(archive.resolve(ref) for ref in args.result))  # all, or none
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("rm asks before removing: give --yes to remove without asking")
        listed = "\n".join(f"  {set_id}" for set_id in chosen)
        print(f"remove {len(chosen)} result set(s) from {archive.location}?\n{listed}")
        if input("[y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 0
    for set_id in chosen:
        archive.remove(set_id)
    output(args, chosen, lambda: "\n".join(f"removed {set_id}" for set_id in chosen))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness.analysis.comparability import same_work
    from harness.analysis.summary import summarize
    from harness.archive.codec import to_dict
    from harness.archive.names import load
    from harness.projection.answer import answer
    from harness.projection.serialisation import losses
    from harness.report import terminal

    slo = slo_of(args)
    results = [load(ref, args.results) for ref in args.result]
    summaries = [summarize(r, slo) for r in results]
    if len(summaries) == 1:
        size, budget = replay_sample_of(args), budget_of(args)
        said = answer(results[0], claims_of(args, required=False, threads=False))
        found = losses(results[0], size, budget)
        summary = summaries[0]
        payload = {**summary.to_dict(), "answer": to_dict(said), "serialisation": found.to_dict()}
        output(args, payload, lambda: terminal.summary(summary, said, found))
    else:
        alike = same_work(*results)
        output(
            args,
            [s.to_dict() for s in summaries],
            lambda: terminal.side_by_side(summaries, alike),
        )
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from harness.archive.names import locate, sheltered

    if args.format == "chrome" and args.endpoint is not None:
        raise UserError("--endpoint sends OpenTelemetry spans: it goes with --format otel")
    if args.format == "chrome" and not args.output:
        raise UserError("a Chrome/Perfetto trace needs -o FILE")
    archive, set_id = locate(args.result, args.results)
    # --force or not: an archive, or a set's folder, is not scratch.
    inside = sheltered(args.output, archive, set_id, args.results) if args.output else None
    if inside:
        raise UserError(f"{args.output} is inside {inside}: write elsewhere")
    result = archive.load(set_id)
    if args.format == "chrome":
        from harness.report.trace import write_chrome

        count = write_chrome(result, args.output, overwrite=args.force)
        where = args.output
    else:
        from harness.report.otel import write_otel

        count = write_otel(result, args.output, args.endpoint, overwrite=args.force)
        where = args.output or args.endpoint or "the OTLP endpoint from the environment"
    payload = {"id": result.id, "format": args.format, "events": count, "written_to": where}
    output(args, payload, lambda: f"{count} {args.format} events of {result.id} written to {where}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    results = add_verb(
        verbs, "results", cmd_results, "List the archived result sets, newest first."
    )
    results.add_argument("--workload", metavar="NAME", help="only the sets of this workload")
    results.add_argument(
        "--host", metavar="NAME", help="only the sets made on this host (as their ids name it)"
    )
    add_archive(results)

    trace = add_verb(
        verbs,
        "trace",
        cmd_trace,
        "Write a set's intervals as a Perfetto/Chrome trace or as OpenTelemetry spans.",
    )
    # Where it goes is required, one way or the other: argparse cannot say "at least one of".
    trace.usage = (
        "gapbench trace RESULT (-o FILE | --format otel [-o FILE] [--endpoint [URL]]) "
        "[--results PATH] [--json]"
    )
    trace.add_argument(
        "result", metavar="RESULT", help="an id, a unique prefix, 'latest', or a set's folder"
    )
    trace.add_argument(
        "-o", "--output", metavar="FILE", help="the file to write (required for chrome)"
    )
    trace.add_argument(
        "--endpoint",
        metavar="URL",
        nargs="?",
        const="",
        help="otel only: send over OTLP/HTTP to URL (as well as to -o FILE, if given; no URL: "
        "the one OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT names)",
    )
    trace.add_argument("--force", action="store_true", help="replace -o FILE if it exists")
    trace.add_argument(
        "--format",
        choices=("chrome", "otel"),
        default="chrome",
        help="chrome: open in ui.perfetto.dev; otel: spans with the GenAI conventions",
    )
    add_archive(trace)

    verify = add_verb(
        verbs,
        "verify",
        cmd_verify,
        "Check result sets: manifests, every file's checksum, every table read whole.",
    )
    verify.add_argument(
        "result", nargs="*", metavar="RESULT", help="ids or unique prefixes (default: every set)"
    )
    add_archive(verify)

    rm = add_verb(verbs, "rm", cmd_rm, "Remove result sets from the archive (asks unless --yes).")
    rm.add_argument("result", nargs="+", metavar="RESULT", help="an id or a unique prefix of one")
    rm.add_argument("--yes", action="store_true", help="remove without asking")
    add_archive(rm)

    show = add_verb(
        verbs,
        "show",
        cmd_show,
        "Show the breakdown of an archived result set, or of several side by side.",
    )
    show.add_argument(
        "result",
        metavar="RESULT",
        nargs="+",
        help="an id, a unique prefix, 'latest', or a set's folder",
    )
    add_slo(show)
    add_replay(show)
    add_claim_sources(show)
    add_archive(show)
