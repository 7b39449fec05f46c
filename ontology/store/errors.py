"""The two errors a genealogy query raises, each with a message a user can act on.

Apart so that the API (ontology/api.py) maps them to HTTP answers (404, 400) without knowing which part of the store
raised them.
"""

from __future__ import annotations


class UnknownIdError(LookupError):
    """The ID (or ID on that line) is not in the graph; the message says what was not found."""


class QueryInputError(ValueError):
    """A query argument is malformed; the message says why (maps to HTTP 400)."""
