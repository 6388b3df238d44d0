"""The one exception type for bad input: the CLI turns it into one line on stderr and exit 2."""

import math
import os
import sys
import traceback

# Control characters, and those Unicode counts as line breaks: a message quoting what a user
# typed shows each as its escape, so it stays one line and sends nothing to the terminal.
_ESCAPES = {
    c: repr(chr(c))[1:-1]
    for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
    if chr(c) != "\t"
}


class UserError(Exception):
    """Bad input from the user (a name, a path, a file): said in one line, never a traceback."""


class WorkloadFailed(UserError):
    """A workload's process crashed, hung past its time limit, ran out of memory or raised in
    setup: that workload failed (exit status 1), not the command; a suite goes on without it.

    ``partial`` holds what its process measured before it was stopped, if anything."""

    def __init__(self, reason: str, partial: object = None) -> None:
        super().__init__(reason)
        self.reason, self.partial = reason, partial
        self.recorded_as = ""  # the id of the archive's record of the failure, once written


class ArchivedThenInterrupted(KeyboardInterrupt):
    """Ctrl-C held while a set was written, raised once it was: the set is archived."""

    def __init__(self, set_id: str) -> None:
        super().__init__(set_id)
        self.set_id = set_id


# A workload failed, or not one of its requests succeeded (what finished is archived).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SLOWER = 1  # compare --fail-if-slower: a candidate slower than allowed, as a test fails
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by SIGINT


def number(value: float) -> str:
    """A number as a user would type it: whole ones in full, others short."""
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if math.isfinite(value) and value.is_integer() else f"{value:g}"


def in_range(option: str, value: float, low: float, high: float) -> None:
    """Refuse a number a user typed outside [low, high] (or not a number at all: NaN, inf),
    naming the option and the range."""
    shown = f"(from {number(low)} to {number(high)})"
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{option} must be a finite number {shown}, not {value}")
    if value < low:
        raise UserError(f"{option} must be {number(low)} or more {shown}, not {number(value)}")
    if value > high:
        raise UserError(f"{option} must be {number(high)} or less {shown}, not {number(value)}")


def one_line(text: str) -> str:
    """``text`` with every character that would end a line, or steer a terminal, escaped."""
    return text.translate(_ESCAPES)


# Set by ``gapbench --debug``; worker processes inherit it.
DEBUG_ENV = "GAPBENCH_DEBUG"


def show_cause(exc: BaseException) -> None:
    """Under ``--debug``, the traceback of the error behind ``exc`` (a plugin's, say) on
    stderr; nothing otherwise."""
    if os.environ.get(DEBUG_ENV) and exc.__cause__ is not None:
        traceback.print_exception(exc.__cause__, file=sys.stderr)


def say_error(message: object) -> None:
    """The one line on stderr that bad input, or a failed workload, gets; under ``--debug``
    the traceback of the error behind it comes first."""
    if isinstance(message, BaseException):
        show_cause(message)
    print(f"gapbench: error: {one_line(str(message))}", file=sys.stderr)
