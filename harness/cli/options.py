"""What every verb shares: the parser that fails in one line, `--json`, the archive and claim
options, and how output is printed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from rich.console import Console

from harness.errors import UserError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is one line on stderr (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


WIDE = 1000  # --wide: columns enough for every table whole (the terminal wraps the lines)


def console(wide: bool = False) -> Console:
    """The console output is drawn on: the terminal's width, or the ``COLUMNS`` a pipe is
    given; a pipe without one gets 132 (its default 80 would fold every table)."""
    if wide:
        return Console(width=WIDE)
    found = Console()  # reads COLUMNS itself
    return found if found.is_terminal or "COLUMNS" in os.environ else Console(width=132)


def err() -> Console:
    return Console(stderr=True)


def output(args: argparse.Namespace, payload: Any, renderable: Callable[[], Any]) -> None:
    """``payload`` as JSON on stdout with ``--json``, else what ``renderable`` draws."""
    if args.json:
        json.dump(payload, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        console(getattr(args, "wide", False)).print(renderable())


def add_verb(
    verbs: argparse._SubParsersAction, name: str, handler: Handler, text: str
) -> argparse.ArgumentParser:
    """A verb with its one-line help, ``--json``, and the function that runs it."""
    sub = verbs.add_parser(name, help=text, description=text)
    sub.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    sub.add_argument(
        "--wide",
        action="store_true",
        help="every column of every table, however narrow the terminal (default: the least "
        "essential columns are left out where they do not fit, and said so)",
    )
    sub.set_defaults(handler=handler)
    return sub


def add_archive(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--results",
        metavar="PATH",
        default=None,
        help="archive: a path or fsspec URL (default: $GAPBENCH_RESULTS, else ./results)",
    )


def add_prices(sub: argparse.ArgumentParser) -> None:
    """What each machine costs an hour, for requests a dollar."""
    sub.add_argument(
        "--price-per-hour",
        action="append",
        metavar="SET=USD",
        help="a set's machine price in dollars an hour (SET: its id or a unique prefix; above "
        "0, at most 1,000,000): adds requests a dollar and dollars a million requests; "
        "repeatable",
    )
    sub.add_argument(
        "--prices",
        metavar="FILE",
        help="prices by host in a TOML file, [hosts] NAME = USD an hour, for the sets "
        "--price-per-hour does not price (by the host an id names; it must price one of them, "
        "and a name that stands for different machines is refused)",
    )


def add_claims(sub: argparse.ArgumentParser) -> None:
    add_claim_sources(sub)
    sub.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="with --speedup: the speedup comes from N intra-op threads (1 to 4096), which the "
        "replay asks of the cores",
    )
    add_replay(sub)


def add_claim_sources(sub: argparse.ArgumentParser) -> None:
    """``--claim FILE`` and ``--speedup KEY=X``: what a verb's answer speaks of."""
    sub.add_argument(
        "--claim",
        action="append",
        metavar="FILE",
        help="a claim file (TOML: name, source, date, [speedup] KEY = factor, or two machines' "
        "[spec.reference] and [spec.candidate], or [calibration] reference = FILE, candidate = "
        "FILE; threads = N or a [threads] table per key); repeatable",
    )
    sub.add_argument(
        "--speedup",
        action="append",
        metavar="KEY=X",
        help="a speedup given inline, e.g. host-cpu.compute=1.5, layer:inference/compute=2, "
        "memory-bound=2 or stage:generate=3 (together they make one claim); repeatable",
    )


def add_replay(sub: argparse.ArgumentParser) -> None:
    """How far a verb's replays may go: their sample and their wall-time budget."""
    sub.add_argument(
        "--replay-sample",
        type=int,
        metavar="N",
        default=None,
        help="replay at most N of the requests whose stages ran side by side, a seeded sample "
        "standing for the rest, its error measured and shown (default 4,000; 100 to 10^7, or "
        "0 for every one)",
    )
    sub.add_argument(
        "--budget",
        type=float,
        metavar="S",
        default=None,
        help="seconds the replays may take (default 600; 1 to 86400): past it, or once their "
        "pace says so, they stop and say how far they got",
    )


def budget_of(args: argparse.Namespace) -> Any:
    """The ``--budget`` of a verb's replays, checked (the library's default when not given)."""
    from harness.projection.budget import BUDGET_S, Budget

    return Budget(BUDGET_S if args.budget is None else args.budget)


def replay_sample_of(args: argparse.Namespace) -> int:
    """The ``--replay-sample`` size, checked (the library's default when not given)."""
    from harness.projection.replay_sample import REPLAY_SAMPLE, checked

    return REPLAY_SAMPLE if args.replay_sample is None else checked(args.replay_sample)


def claims_of(args: argparse.Namespace, required: bool, threads: bool = True) -> list[Any]:
    """The claims ``--claim`` and ``--speedup`` name; one is required when ``required``.
    ``threads``: whether ``--threads`` is the speedup's (not a run's own threads)."""
    from harness.projection import claims

    found = [claims.load(path) for path in args.claim or ()]
    given = args.threads if threads else None
    if args.speedup:
        found.append(claims.from_arguments(args.speedup, given))
    elif given is not None:
        raise UserError("--threads goes with --speedup (a claim file says threads = N)")
    if required and not found:
        raise UserError("give a claim: --claim FILE (TOML) or --speedup KEY=FACTOR")
    return found
