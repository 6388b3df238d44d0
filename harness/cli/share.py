"""Verbs that share result sets between archives: `export` and `import`."""

from __future__ import annotations

import argparse

from harness.cli.options import add_archive, add_verb, output
from harness.errors import UserError


def cmd_export(args: argparse.Namespace) -> int:
    from harness.archive.exchange import export_sets
    from harness.archive.names import sheltered
    from harness.archive.store import Archive

    archive = Archive(args.results).required()
    ids = list(dict.fromkeys(archive.resolve(ref) for ref in args.result))
    for set_id in ids:  # --force or not: an archive, or a set's folder, is not scratch
        if inside := sheltered(args.output, archive, set_id, args.results):
            raise UserError(f"{args.output} is inside {inside}: write elsewhere")
    done = export_sets(archive, ids, args.output, anonymize=args.anonymize, force=args.force)
    payload = {
        "file": done.path,
        "bytes": done.size_bytes,
        "anonymized": done.anonymized,
        "sets": [{"id": old, "exported_as": new} for old, new in done.ids],
    }

    def render() -> str:
        how = "anonymized, " if done.anonymized else ""
        lines = [f"{len(done.ids)} result set(s) written to {done.path} ({how}{done.size_bytes} B)"]
        lines += [f"  {old} as {new}" if old != new else f"  {old}" for old, new in done.ids]
        return "\n".join(lines)

    output(args, payload, render)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from harness.archive.exchange import import_sets
    from harness.archive.store import Archive

    archive = Archive(args.results)
    done = import_sets(archive, args.file)
    payload = {
        "file": args.file,
        "archive": archive.location,
        "imported": list(done.imported),
        "identical": list(done.identical),
        "projections_added": done.projections,
    }

    def render() -> str:
        lines = [f"imported {set_id}" for set_id in done.imported]
        lines += [f"already in the archive, identical: {set_id}" for set_id in done.identical]
        if done.projections:
            lines.append(f"{done.projections} projection(s) added beside sets already there")
        return "\n".join([*lines, f"into {archive.location}"])

    output(args, payload, render)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    export = add_verb(
        verbs,
        "export",
        cmd_export,
        "Write result sets, with their projections, into one file to share (checksummed).",
    )
    export.add_argument(
        "result",
        metavar="RESULT",
        nargs="+",
        help="the sets to write: ids, unique prefixes of ids, or 'latest'",
    )
    export.add_argument(
        "--anonymize",
        action="store_true",
        help="leave out host and user names, paths, network addresses and personal environment "
        "values (a host becomes host- and a keyed hash of its name, alike in every export from "
        "this archive); hardware and software facts stay",
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="the file to write (a zip)"
    )
    export.add_argument("--force", action="store_true", help="replace -o FILE if it exists")
    add_archive(export)

    imported = add_verb(
        verbs,
        "import",
        cmd_import,
        "Read the result sets of an exported file into the archive, every file checked first.",
    )
    imported.add_argument("file", metavar="FILE", help="a file `gapbench export` wrote")
    add_archive(imported)
