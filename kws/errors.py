"""The project's own error type: the CLI prints it as one clear line, never a traceback."""


class KwsError(Exception):
    """A user-facing error: bad input, missing data, a wrong file, an unreachable board."""
