"""The one exception type for bad input: the CLI turns it into one line on stderr and exit 2."""


class UserError(Exception):
    """Bad input from the user (a name, a path, a file): said in one line, never a traceback."""


EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by SIGINT
