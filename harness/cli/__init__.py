"""The `gapbench` command line: a thin table of verbs over the library."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from harness import __version__
from harness.archive.tables import arrow_on_the_system_allocator
from harness.cli import archive, experiments, machine, projection, report, run, share
from harness.cli.options import Parser
from harness.errors import DEBUG_ENV, EXIT_BAD_INPUT, EXIT_INTERRUPTED, UserError, say_error

# Each module registers its verbs, in the order `gapbench --help` lists them.
VERB_MODULES = (machine, run, archive, share, projection, report, experiments)


def build_parser() -> Parser:
    parser = Parser(
        prog="gapbench",
        description="Measure AI pipelines end to end and see where each request's time goes.",
    )
    parser.add_argument("--version", action="version", version=f"gapbench {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback behind an error (a plugin hook's, or gapbench's own)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The verb and its options; an unknown option is named before a missing verb."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(given)
    # An option given before the verb is the command's own, not the verb's.
    before = args.verb is None or (extra and given.index(extra[0]) < given.index(args.verb))
    where = "gapbench" if before else f"gapbench {args.verb}"
    if extra:
        raise UserError(f"unrecognized arguments: {' '.join(extra)} (see {where} --help)")
    if args.verb is None:
        raise UserError("give a verb (see gapbench --help)")
    return args


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (timeout, docker stop, Slurm, Kubernetes) is taken as Ctrl-C is: what finished
    is archived (a worker process measuring is told by the code waiting for it)."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; bad input is one line on stderr and exit status 2."""
    arrow_on_the_system_allocator()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    debug_before = os.environ.get(DEBUG_ENV)
    try:
        args = parse(argv)
        if args.debug:
            os.environ[DEBUG_ENV] = "1"  # for the worker processes too
        return args.handler(args)
    except UserError as exc:
        say_error(exc)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped to `head`: what was wanted was read
        return 0
    except OSError as exc:  # a disk, a store or a connection failed under a verb
        say_error(exc)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("gapbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # as it was: main() may be called again in this process
        if debug_before is None:
            os.environ.pop(DEBUG_ENV, None)


if __name__ == "__main__":
    sys.exit(main())
