"""The exception tree of asterbill: one base class, translated at the boundaries.

Expected failures (bad settings, a server that does not answer, bad input) raise a subclass of
AsterbillError whose message is one line saying what failed and how to fix it; the CLI prints it
without a traceback and exits non-zero.
"""


class AsterbillError(Exception):
    """Base of every expected asterbill failure."""

    exit_code = 2


class SettingsError(AsterbillError):
    """A setting is missing, unknown or cannot be parsed."""


class ServiceUnavailable(AsterbillError):
    """A server (database, Redis, Asterisk) could not be reached or refused us."""

    exit_code = 3


class InvalidInput(AsterbillError):
    """Input data (a file, a form, a command argument) is invalid; nothing was changed."""
