"""The one exception type for bad input: the CLI turns it into one line on stderr and exit 2."""


class UserError(Exception):
    """Bad input from the user (a name, a path, a file): said in one line, never a traceback."""


EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by SIGINT


def in_range(option: str, value: float, low: float, high: float) -> None:
    """Refuse a number a user typed outside [low, high], naming the option and the range."""
    if value < low:
        raise UserError(f"{option} must be {low:g} or more (up to {high:g}), not {value:g}")
    if value > high:
        raise UserError(f"{option} must be {high:g} or less (from {low:g}), not {value:g}")
