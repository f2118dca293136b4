"""User-facing errors: the CLI prints ``error: <message>`` on one line and exits with status 2."""


class BenchError(Exception):
    """A problem with the user's input or environment, with the fix in its message."""
