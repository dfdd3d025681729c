"""Errors e2h raises for bad input: each names the file, line, record or field at fault."""


class DataError(ValueError):
    """Input data is malformed; the message says where (file, line, record, field)."""
