"""User-facing errors.

Anything a user can cause (a bad file, a bad flag, an unreachable server) is raised as
`XlrecError` with a one-paragraph message saying what is wrong and what to do. The CLI
prints the message and exits non-zero without a traceback; programming errors still
raise normally so bugs stay visible.
"""


class XlrecError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""

    exit_code = 2


class DataError(XlrecError):
    """A raw data file is missing, empty or malformed, or a download failed verification."""


class ConfigError(XlrecError):
    """An unknown name or an invalid value in the configuration or on the command line."""
