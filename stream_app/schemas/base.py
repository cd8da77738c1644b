"""Fields and checks shared by every event schema, and the decode/encode functions."""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, TypeVar

import msgspec
import msgspec.inspect
import pycountry

from stream_app.errors import WeddingError, cut
from stream_app.money import NOT_MONEY
from stream_app.schemas.ids import Identifier, plain_reason

MAX_EVENT_BYTES = 900_000
"""Largest event the fold agents take (its value's bytes): a larger message is dead-lettered
(``$: N bytes; an event is at most 900,000``), and ``wedding-engine send`` refuses it. Under
the 1,000,000 bytes a record the worker's producer sends (faust's
``producer_max_request_size``), with room for the headers of its late-event or dead-letter
copy."""

#: Active ISO 4217 alphabetic codes, from the pycountry package's copy of the standard.
ISO_4217_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)
_MONEY_CODES = ISO_4217_CODES - NOT_MONEY

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


class EventBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Fields every event carries.

    Events are not tracked by the cyclic garbage collector (``gc=False``: their fields are
    strings, numbers, dates and JSON containers of them, which cannot form a cycle), so the
    tens of thousands of a fold batch add nothing to the collector's passes.

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
    """Raise ``ValueError("$.currency: ...")`` unless ``code`` is an ISO 4217 code of money
    (not one of :data:`stream_app.money.NOT_MONEY`, such as ``XXX``, "no currency")."""
    if code not in _MONEY_CODES:
        if code in ISO_4217_CODES:
            raise ValueError(
                f"$.currency: {code!r} is an ISO 4217 code without a minor unit (a metal, a unit"
                " of account, testing or 'no currency'), not money"
            )
        raise ValueError(f"$.currency: {code!r} is not an ISO 4217 currency code")


MAX_LABEL_CHARS = 100
"""The longest free-text label of an event (a payment's ``method``, an interaction's
``channel``), characters."""

_NOT_IN_LABELS = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories a label may not hold: control, format (zero-width and bidirectional
controls), surrogate, private-use and unassigned characters, line and paragraph separators."""


def check_label(name: str, value: str | None) -> None:
    """Raise ``ValueError("$.<name>: ...")`` unless ``value`` (None passes) is a label of 1 to
    :data:`MAX_LABEL_CHARS` characters, not blank, without spaces around it, holding none of
    :data:`_NOT_IN_LABELS`. A trial user sent ``channel`` with a NUL byte and ``method`` with a
    right-to-left override; both were kept and reached the GDPR exports and HTTP answers,
    where names refuse them (an attacker round: ``""`` and ``" "`` too, nameless groups)."""
    if value is None:
        return
    if not value.strip() or value != value.strip():
        raise ValueError(
            f"$.{name}: {value!r} is blank or has spaces around it; leave the field out when"
            " there is no label"
        )
    if value.isascii() and value.isprintable() and len(value) <= MAX_LABEL_CHARS:
        return  # the common case: printable ASCII
    if len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"$.{name}: at most {MAX_LABEL_CHARS} characters, got {len(value):,}")
    for position, char in enumerate(value, 1):
        if unicodedata.category(char) in _NOT_IN_LABELS:
            raise ValueError(
                f"$.{name}: character U+{ord(char):04X} at character {position} is a control,"
                " format or unassigned character (a label is plain text)"
            )


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
        text = plain_reason(str(exc))
        match = _PATH_RE.search(text)
        path, reason = (
            (match.group(1), _PATH_RE.sub("", text).rstrip(" -")) if match else ("$", text)
        )
        if match is None and text.startswith("$."):
            path, _, reason = text.partition(": ")
        missing = re.search(r"missing required field `([^`]+)`", reason)
        if missing:
            return _raise(f"{path}.{missing.group(1)}", "required field is missing")
        unknown = re.search(r"unknown field `([^`]+)`", reason)
        if unknown:
            name = unknown.group(1)
            return _raise(f"{path}.{name}", "unknown field" + _did_you_mean(event_type, path, name))
        if "[...]" in path:
            path = _name_keys(raw, path, reason)
        if reason.startswith("Invalid enum value"):
            reason += _allowed(event_type, path)
        if reason == "Invalid RFC3339 encoded date":
            reason = _impossible_date(raw, path) or reason
        if path.endswith("_minor") and reason.startswith("Expected `int`, got"):
            # a trial user's "840.00" and 840.5: say what the number is
            reason += ": an integer number of minor units (cents), e.g. 84000 for 840.00"
        return _raise(path, _FORMATS.get(reason, reason))
    except msgspec.DecodeError as exc:
        return _raise("$", f"not valid JSON: {exc}")
    except UnicodeDecodeError as exc:  # msgspec raises it for bad UTF-8 inside a string
        return _raise("$", utf8_reason(raw, exc))


def _impossible_date(raw: bytes, path: str) -> str | None:
    """``"2026-02-30 is not a date of the calendar"`` when the top-level field at ``path``
    has the form ``YYYY-MM-DD`` but names no date (msgspec says "not a calendar date in the
    form YYYY-MM-DD" for both; a trial user's 2026-02-30 was in that form), else None."""
    if not path.startswith("$.") or "." in path[2:] or "[" in path:
        return None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    value = doc.get(path[2:]) if isinstance(doc, dict) else None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
        return f"{value} is not a date of the calendar"
    return None


def utf8_reason(raw: bytes, exc: UnicodeDecodeError) -> str:
    """``"not valid UTF-8: <reason> at byte <n>"`` for a message msgspec refused with ``exc``,
    ``n`` counted from the start of ``raw`` (msgspec's ``exc.start`` counts from the start of
    the JSON string holding the byte)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as whole:
        return f"not valid UTF-8: {whole.reason} at byte {whole.start}"
    return f"not valid UTF-8: {exc.reason}"


_FORMATS = {
    "Invalid RFC3339 encoded date": "not a calendar date in the form YYYY-MM-DD (ISO 8601)",
    "Invalid RFC3339 encoded datetime": (
        "not a timestamp: expected RFC 3339 with an offset, e.g. 2026-06-01T09:30:00Z"
    ),
    "Expected `datetime` with a timezone component": (
        "a timestamp without an offset: expected RFC 3339 with an offset, e.g."
        " 2026-06-01T09:30:00Z (UTC) or 2026-06-01T10:30:00+01:00"
    ),
}
"""msgspec's date and timestamp refusals, with the format the field expects."""

_JSON_TYPES = {
    str: "str",
    bool: "bool",
    int: "int",
    float: "float",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _name_keys(raw: bytes, path: str, reason: str) -> str:
    """``path`` with msgspec's ``[...]`` (a key of a mapping it does not name) replaced by the
    first key whose value has the JSON type the refusal says it got (``Expected `array`, got
    `str```); ``path`` unchanged when that cannot be found."""
    got = re.search(r"got `([a-z]+)`", reason)
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return path
    steps = re.findall(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]", path.removeprefix("$"))

    def walk(node: object, at: int, shown: str) -> str | None:
        if at == len(steps):
            return shown if got is None or _JSON_TYPES.get(type(node)) == got.group(1) else None
        name, index = steps[at]
        if index == "...":
            if not isinstance(node, dict):
                return None
            for key, value in node.items():
                found = walk(value, at + 1, f"{shown}.{cut(str(key), 64)}")
                if found is not None:
                    return found
            return None
        if index:
            if isinstance(node, list) and int(index) < len(node):
                return walk(node[int(index)], at + 1, f"{shown}[{index}]")
            return None
        return (
            walk(node[name], at + 1, f"{shown}.{name}")
            if isinstance(node, dict) and name in node
            else None
        )

    return walk(doc, 0, "$") or path


SUGGEST_MAX_CHARS = 64
"""The longest unknown field name a refusal suggests a known field for."""


def _top_fields(event_type: type, path: str) -> dict[str, msgspec.inspect.Field]:
    """The fields of ``event_type`` by name when ``path`` is the event itself (``$``) or one
    of its own fields (``$.name``); empty for a nested path."""
    if path != "$" and (not path.startswith("$.") or "." in path[2:] or "[" in path):
        return {}
    return _fields_of(event_type)


def _unwrap(node: msgspec.inspect.Type, want: type) -> msgspec.inspect.Type | None:
    """``node`` as a ``want`` (``StructType`` or ``ListType``): its metadata's type, or the
    member of a union that is one; None when it is none."""
    while isinstance(node, msgspec.inspect.Metadata):
        node = node.type
    if isinstance(node, msgspec.inspect.UnionType):
        return next((t for t in node.types if _unwrap(t, want) is not None), None)
    return node if isinstance(node, want) else None


@functools.lru_cache(maxsize=256)
def known_fields(root: type, path: str) -> tuple[str, ...]:
    """The JSON field names of the object at ``path`` (``$``, ``$.a``, ``$.a[0].b``) of the
    struct type ``root``, in declaration order; empty when ``path`` leads to no struct."""
    node: msgspec.inspect.Type | None = msgspec.inspect.type_info(root)
    for name, _index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.removeprefix("$")):
        if name:
            struct = None if node is None else _unwrap(node, msgspec.inspect.StructType)
            fields = {} if struct is None else {f.encode_name: f for f in struct.fields}  # type: ignore[attr-defined]
            node = fields[name].type if name in fields else None
        else:
            listed = None if node is None else _unwrap(node, msgspec.inspect.ListType)
            node = None if listed is None else listed.item_type  # type: ignore[attr-defined]
    struct = None if node is None else _unwrap(node, msgspec.inspect.StructType)
    return () if struct is None else tuple(f.encode_name for f in struct.fields)  # type: ignore[attr-defined]


@functools.cache
def _fields_of(event_type: type) -> dict[str, msgspec.inspect.Field]:
    """The fields of a struct type by their JSON name (computed once per type: a flood of
    refused events on a fold agent's path costs no more than the first)."""
    info = msgspec.inspect.type_info(event_type)
    if not isinstance(info, msgspec.inspect.StructType):
        return {}
    return {f.encode_name: f for f in info.fields}


def _did_you_mean(event_type: type, path: str, name: str) -> str:
    """`` (did you mean `x`?)`` naming the event's field closest to an unknown ``name``
    (difflib's ratio of at least 0.6), else ``""``; nothing for a name longer than
    :data:`SUGGEST_MAX_CHARS` (no field is that long, and difflib's cost grows with the name:
    47 ms for an 800,000-character one, on the fold agents' path)."""
    if len(name) > SUGGEST_MAX_CHARS:
        return ""
    close = difflib.get_close_matches(name, list(known_fields(event_type, path)), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _allowed(event_type: type, path: str) -> str:
    """``" (allowed: a, b)"``: the values of the literal field at ``path``, else ``""``."""
    field = _top_fields(event_type, "$").get(path[2:]) if path.startswith("$.") else None
    kind = None if field is None else field.type
    if isinstance(kind, msgspec.inspect.UnionType):
        kind = next((t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)), None)
    if isinstance(kind, msgspec.inspect.LiteralType):
        return " (allowed: " + ", ".join(str(v) for v in kind.values) + ")"
    return ""


def _raise(field: str, reason: str) -> E:  # type: ignore[type-var]
    raise EventValidationError(field, reason)


_encoder = msgspec.json.Encoder()


def encode_event(event: msgspec.Struct) -> bytes:
    """Serialise an event to compact UTF-8 JSON (timestamps in RFC 3339 with offset)."""
    return _encoder.encode(event)
