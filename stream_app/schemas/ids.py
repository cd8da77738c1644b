"""The one id rule of the product: what an organisation, report, schedule or entity id may be.

A leaf module (imports only the standard library and msgspec): every entry point checks ids
with it, HTTP paths and bodies (:mod:`stream_app.web.views`), the CLI, the Kafka schemas
(:data:`Identifier`) and the artifact store, which turns ids into folder names.

The rule: 1 to 128 characters of ``A-Z a-z 0-9 . _ : -``, and not ``.`` or ``..`` as a
whole. So an id never holds a path separator (``/``, ``\\``), a percent sign, white space or
a control character, and never names the current or parent folder; ``/`` stays free as the
separator of Kafka keys (``organization_id/report_id``).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from stream_app.errors import WeddingError

ID_MAX_LENGTH = 128
"""Longest id, characters."""

ID_PATTERN = r"^(?!\.\.?\Z)[A-Za-z0-9._:\-]{1,128}\Z"
"""The rule as a regular expression (``\\Z``, not ``$``: ``$`` would accept a final newline)."""

ID_RULE = "1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', and not '.' or '..'"
"""The rule in words, for error messages."""

_ID_RE = re.compile(ID_PATTERN)

_REGEX_REFUSAL = f"Expected `str` matching regex {ID_PATTERN!r}"
"""msgspec's refusal of an :data:`Identifier` that breaks the pattern."""


def plain_reason(message: str) -> str:
    """``message`` (msgspec's refusal of a field) with a broken id rule said in words
    (:data:`ID_RULE`), as the path and CLI checks say it, instead of the regular expression:
    ``"Expected `str` matching regex '^(?!...'"`` → ``"must be 1-128 characters of ..."``.
    Any other message is returned as it is."""
    return message.replace(_REGEX_REFUSAL, f"must be {ID_RULE}")


Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]
"""An id field of a wire schema (decoding fails naming the field when the rule is broken)."""


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a str that satisfies the id rule."""
    return isinstance(value, str) and _ID_RE.match(value) is not None


def check_id(field: str, value: object) -> str:
    """Return ``value`` when it is a valid id.

    Args:
        field: the name of the field or option, used in the error (``report_id``, ``--org``).
        value: what was given.

    Raises:
        InvalidIdError: ``"<field>: <rule>, got <value!r>"``.
    """
    if not is_valid_id(value):
        raise InvalidIdError(field, value)
    return str(value)


def quoted(value: object, limit: int = 64) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with its length
    named when longer (an id of 5,000 characters is not echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: limit - 1]}…{size}"


def quoted_list(values: list[str], most: int = 5) -> str:
    """The first ``most`` of ``values`` for an error message (each :func:`quoted`), with how
    many more were left out: ``['a', 'b'] and 3 more``."""
    shown = "[" + ", ".join(quoted(v) for v in values[:most]) + "]"
    return shown if len(values) <= most else f"{shown} and {len(values) - most} more"


class InvalidIdError(WeddingError, ValueError):
    """An id that breaks the rule; ``field`` names where it was given."""

    retriable = False

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.reason = f"{ID_RULE}, got {quoted(value)}"
        super().__init__(f"{field}: {self.reason}")
