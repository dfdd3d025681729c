"""Errors e2h raises for bad input or a command it must refuse: each names the file, line, record or field at
fault, and what to do. The `e2h` command prints any `UserError` as one ``error:`` line (exit status 2), not a
traceback: it is the user's to fix, not a bug."""


class UserError(Exception):
    """A mistake in the input, the configuration or the command; the message says where and what to do."""


class DataError(UserError, ValueError):
    """Input data is malformed; the message says where (file, line, record, field)."""
