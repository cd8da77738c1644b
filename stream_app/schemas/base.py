"""Fields and checks shared by every event schema, and the decode/encode functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, TypeVar

import msgspec
import pycountry

from stream_app.errors import WeddingError
from stream_app.schemas.ids import Identifier

#: Active ISO 4217 alphabetic codes, from the pycountry package's copy of the standard.
ISO_4217_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)

UtcDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A timestamp with an explicit UTC offset (ISO 8601); naive timestamps are rejected."""

__all__ = ["Identifier"]  # re-exported: the one id rule lives in stream_app.schemas.ids

MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=10**15)]
"""A non-negative amount in the currency's minor unit (cents for EUR), at most 10^15."""

_PATH_RE = re.compile(r"at `(\$[^`]*)`")


class EventValidationError(WeddingError, ValueError):
    """An event that does not satisfy its schema.

    Attributes:
        field: JSON path of the offending field (``$.amount_minor``), or ``$`` when the message
            as a whole is unreadable (not JSON, not an object).
        reason: what is wrong, in words.
    """

    retriable = False

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EventBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every event carries.

    Attributes:
        schema_version: version of the event's schema; consumers reject versions they do not know.
        event_id: producer-assigned unique id; the idempotency key (a redelivered or replayed
            event with a known id is not counted again).
        organization_id: the tenant that owns the event.
        occurred_at: event time, when the fact happened (ISO 8601 with offset; stored as UTC).
    """

    schema_version: int
    event_id: Identifier
    organization_id: Identifier
    occurred_at: UtcDateTime

    schema_versions: ClassVar[frozenset[int]] = frozenset({1})
    """The schema versions of the event type that consumers accept (a class attribute)."""

    def __post_init__(self) -> None:
        """Check the fields every event carries (:func:`check_event_time`,
        :func:`check_schema_version`); a subclass with checks of its own calls this first."""
        check_event_time(self.occurred_at)
        check_schema_version(self.schema_version, self.schema_versions)


MAX_CLOCK_SKEW = timedelta(hours=24)
"""How far ahead of this worker's clock an ``occurred_at`` may be (producers' clocks drift;
an event from the far future would close every event-time window of its organisation)."""


def check_event_time(occurred_at: datetime) -> None:
    """Raise ``ValueError("$.occurred_at: ...")`` for a time before 1900 or in the future
    (beyond :data:`MAX_CLOCK_SKEW`)."""
    if occurred_at.year < 1900:
        raise ValueError("$.occurred_at: must not be before 1900")
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    if occurred_at > latest:
        raise ValueError(
            f"$.occurred_at: {occurred_at.isoformat()} is more than"
            f" {MAX_CLOCK_SKEW.total_seconds() / 3600:.0f} h in the future"
        )


def check_currency(code: str) -> None:
    """Raise ``ValueError("$.currency: ...")`` unless ``code`` is an ISO 4217 code."""
    if code not in ISO_4217_CODES:
        raise ValueError(f"$.currency: {code!r} is not an ISO 4217 currency code")


def check_schema_version(version: int, supported: frozenset[int]) -> None:
    """Raise ``ValueError("$.schema_version: ...")`` unless ``version`` is supported."""
    if version not in supported:
        raise ValueError(
            f"$.schema_version: version {version} is not supported (known: {sorted(supported)})"
        )


E = TypeVar("E", bound=msgspec.Struct)


def decode_event(raw: bytes, event_type: type[E]) -> E:
    """Decode and validate one JSON message as ``event_type``.

    Args:
        raw: the message value as received (UTF-8 JSON).
        event_type: the schema class of the topic.

    Returns:
        The validated, immutable event.

    Raises:
        EventValidationError: the bytes are not JSON, or a field is missing, of the wrong type,
            out of range, or fails a schema check; ``field`` names it.
    """
    try:
        return msgspec.json.decode(raw, type=event_type)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH_RE.search(text)
        if match:
            return _raise(match.group(1), _PATH_RE.sub("", text).rstrip(" -"))
        if text.startswith("$."):
            path, _, reason = text.partition(": ")
            return _raise(path, reason)
        missing = re.search(r"missing required field `([^`]+)`", text)
        if missing:
            return _raise(f"$.{missing.group(1)}", "required field is missing")
        return _raise("$", text)
    except msgspec.DecodeError as exc:
        return _raise("$", f"not valid JSON: {exc}")


def _raise(field: str, reason: str) -> E:  # type: ignore[type-var]
    raise EventValidationError(field, reason)


_encoder = msgspec.json.Encoder()


def encode_event(event: msgspec.Struct) -> bytes:
    """Serialise an event to compact UTF-8 JSON (timestamps in RFC 3339 with offset)."""
    return _encoder.encode(event)
