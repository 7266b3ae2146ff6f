"""The project's own error types: the CLI prints them as one clear line, never a traceback."""


class KwsError(Exception):
    """A user-facing error: bad input, missing data, a wrong file, an unreachable board."""

    exit_code = 1


class Interrupted(KwsError):
    """Ctrl-C, after the work so far was kept (a checkpoint); the CLI exits with 130."""

    exit_code = 130
