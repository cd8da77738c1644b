"""Where a report goes and how hard to try: the delivery targets and the retry policy.

A target is a validated, immutable value: :class:`EmailTarget`, :class:`WebhookTarget`,
:class:`SftpTarget` or :class:`ApiTarget` (together :data:`DeliveryTarget`), with the
:class:`RetryPolicy` of its delivery. Construction validates every field and raises
:class:`TargetValidationError` naming the field (``delivery.url``, ``retry.max_attempts``).
A schedule (:mod:`stream_app.schedules.model`) and an ad-hoc report request
(:mod:`stream_app.delivery.adhoc`) hold the same targets.

:func:`target_parts` / :func:`target_from_parts` split a target into its method, options
and secrets (the storage form: secrets are kept apart and sealed, see
:mod:`stream_app.delivery.sealing`); :func:`target_to_dict` / :func:`target_from_dict` give
the flat JSON form of the API (``{"method": "webhook", "url": ..., "secret": ...}``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from email.policy import default as _email_policy
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import asyncssh
import msgspec
import yarl

from stream_app.crypto.sealed import is_sealed
from stream_app.delivery.redact import clip, mask_url
from stream_app.errors import cut
from stream_app.schemas.base import EventValidationError

_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"\[\]]+\.[^@\s<>,;\"\[\]]+$")

MAX_RECIPIENTS: Final = 50
"""The most recipients of one email delivery (ad-hoc or scheduled)."""
MAX_URL_CHARS: Final = 2048
MAX_SECRET_CHARS: Final = 1024
MIN_TIMEOUT_S: Final = 0.1
"""The shortest per-attempt timeout of a webhook, seconds (``1e-300`` was accepted: every
delivery of the schedule then timed out at once)."""
MAX_SUBJECT_CHARS: Final = 200
MAX_ADDRESS_CHARS: Final = 254
"""An email address's longest form (RFC 5321 path limit)."""
MAX_FIELD_CHARS: Final = 1024
"""The longest other text field of a target (host, username, path, password)."""
_LINE_BREAKS = frozenset("\u2028\u2029\u0085")


def check_text(name: str, value: str, limit: int = MAX_FIELD_CHARS) -> None:
    """Refuse a target's text field over ``limit`` characters or holding a control character
    (NUL, CR, LF, any C0/C1 code) or a Unicode line break (U+2028, U+2029, U+0085).

    Raises:
        TargetValidationError: naming ``name``.
    """
    if len(value) > limit:
        raise TargetValidationError(name, f"must be at most {limit} characters")
    if any(unicodedata.category(c) == "Cc" or c in _LINE_BREAKS for c in value):
        raise TargetValidationError(name, "must not hold control characters or line breaks")


_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
"""An RFC 2047 encoded word (``=?utf-8?b?…?=``): mail software, Python's ``email`` package
included, decodes it into other text."""


def _refuse_encoded_word(name: str, value: str, header: str = "Subject") -> None:
    """Refuse an RFC 2047 encoded word in a header's text. An attacker round's subject
    ``=?utf-8?b?<base64 of CRLF + headers>?=`` passed the line-break check, was decoded when
    the message was built and wrote its own headers and body (a second ``From``, ``Bcc``)
    from the platform's sender address (CPython's CVE-2024-6923, 3.11.7 here).

    The text is also read back as the e-mail package reads the ``header`` it goes into: one
    that reads as other text (an encoded word with a space inside, ``=?utf-8?q?x y=0D=0A…?=``,
    which the pattern misses and Python still decodes) is refused here too, rather than
    accepted and then refused at every send (a second attacker round's finding).

    Raises:
        TargetValidationError: naming ``name``.
    """
    if _ENCODED_WORD.search(value) or str(_email_policy.header_factory(header, value)) != value:
        raise TargetValidationError(
            name,
            "holds an RFC 2047 encoded word (=?charset?b|q?...?=), which mail software decodes"
            " into other text; give the text itself (it is encoded for you)",
        )


class TargetValidationError(EventValidationError):
    """A delivery target, retry policy or schedule field is invalid.

    Attributes:
        field: the field's name (dotted for nested ones: ``delivery.url``, ``retry.max_attempts``).
        reason: what is wrong, in words.
    """


DEFAULT_LINK_TTL_SECONDS = 7 * 24 * 3600
"""Default lifetime of a delivery's download links, seconds (7 days)."""
MIN_LINK_TTL_SECONDS, MAX_LINK_TTL_SECONDS = 60, 30 * 24 * 3600


def _check_link_ttl(value: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_LINK_TTL_SECONDS <= value <= MAX_LINK_TTL_SECONDS
    ):
        raise TargetValidationError(
            "delivery.link_ttl_seconds",
            f"must be between {MIN_LINK_TTL_SECONDS} and {MAX_LINK_TTL_SECONDS} seconds",
        )


def _check_secret(name: str, value: str, min_length: int = 16) -> None:
    if len(value) < min_length:
        raise TargetValidationError(name, f"must be at least {min_length} characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailTarget:
    """Deliver by email.

    Attributes:
        recipients: one or more addresses (``user@example.org``), no repeats.
        subject: the subject line; ``None`` gives ``"<report type> <from> – <to>"``.
        link_ttl_seconds: lifetime of the download links sent for files too large to attach,
            seconds (60 s – 30 days).
    """

    recipients: tuple[str, ...]
    subject: str | None = None
    link_ttl_seconds: int = DEFAULT_LINK_TTL_SECONDS
    method: Literal["email"] = "email"

    def __post_init__(self) -> None:
        _check_link_ttl(self.link_ttl_seconds)
        if not self.recipients:
            raise TargetValidationError("delivery.recipients", "at least one is required")
        if len(self.recipients) > MAX_RECIPIENTS:
            raise TargetValidationError(
                "delivery.recipients", f"at most {MAX_RECIPIENTS} recipients per delivery"
            )
        for address in self.recipients:
            check_text("delivery.recipients", address, MAX_ADDRESS_CHARS)
            if not _EMAIL_RE.match(address):
                raise TargetValidationError(
                    "delivery.recipients", f"{address!r} is not an email address"
                )
            if "" in address.rpartition("@")[2].split("."):
                raise TargetValidationError(
                    "delivery.recipients",
                    f"{address!r}: the domain has an empty label (a dot at its end or two in a"
                    " row); mail servers refuse it",
                )
            _refuse_encoded_word("delivery.recipients", address, "To")
        if len({a.lower() for a in self.recipients}) != len(self.recipients):
            raise TargetValidationError("delivery.recipients", "an address is listed twice")
        if self.subject is not None:
            check_text("delivery.subject", self.subject, MAX_SUBJECT_CHARS)
            _refuse_encoded_word("delivery.subject", self.subject)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookTarget:
    """Deliver by an HTTP POST of the result JSON, signed with HMAC-SHA256.

    Attributes:
        url: ``http`` or ``https`` URL with a host.
        secret: the shared HMAC key (at least 16 characters; not shown in ``repr``).
        timeout_s: per-attempt timeout, seconds (:data:`MIN_TIMEOUT_S` ≤ t ≤ 300).
        link_ttl_seconds: lifetime of the download links in the posted result, seconds
            (60 s – 30 days).
    """

    url: str
    secret: str = field(repr=False)
    timeout_s: float = 10.0
    link_ttl_seconds: int = DEFAULT_LINK_TTL_SECONDS
    method: Literal["webhook"] = "webhook"

    def __post_init__(self) -> None:
        _check_link_ttl(self.link_ttl_seconds)
        check_text("delivery.url", self.url, MAX_URL_CHARS)
        shown = mask_url(self.url)  # never the credentials or query in a message
        try:
            parsed = urlsplit(self.url)
            port = parsed.port  # raises ValueError on a bad port
        except (ValueError, TypeError) as exc:
            raise TargetValidationError("delivery.url", f"{shown!r} is not a URL") from exc
        if port == 0:
            raise TargetValidationError("delivery.url", f"{shown!r}: port 0 is not a TCP port")
        _check_sendable(self.url, shown)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or any(c.isspace() or ord(c) < 32 for c in self.url)
        ):
            raise TargetValidationError(
                "delivery.url", f"{shown!r} must be an http(s) URL with a host"
            )
        if _numeric_but_not_ipv4(parsed.hostname):
            raise TargetValidationError(
                "delivery.url",
                f"{shown!r}: the host is neither a name nor a dotted-decimal IPv4 address",
            )
        if parsed.username == "***" or parsed.query == "***":
            # the API shows a URL so; read back and saved again, it would break the delivery
            raise TargetValidationError(
                "delivery.url",
                f"{shown!r} is a URL as the API shows it (credentials and query masked): give"
                " the whole URL again",
            )
        if not is_sealed(self.secret):  # a sealed secret was checked before it was sealed
            check_text("delivery.secret", self.secret, MAX_SECRET_CHARS)
        _check_secret("delivery.secret", self.secret)
        if not MIN_TIMEOUT_S <= self.timeout_s <= 300:
            raise TargetValidationError(
                "delivery.timeout_s",
                f"must be between {MIN_TIMEOUT_S} and 300 seconds, got {self.timeout_s!r}",
            )


def _check_sendable(url: str, shown: str) -> None:
    """Refuse a URL that yarl (what aiohttp sends with) cannot read, though ``urlsplit``
    can: ``http://evil.com\\@127.0.0.1/`` (``urlsplit`` reads host ``127.0.0.1``, yarl
    refuses the backslash) was accepted and failed only when sent; so were hosts the IDNA
    codec refuses (``a..b``, a label over 63 characters, ``xn--``)."""
    try:
        parsed = yarl.URL(url)
        parsed.host  # noqa: B018 - decodes the IDNA name: 'xn--' fails here, not at the send
        (parsed.raw_host or "").encode("idna")  # what the resolver is given: 'a..b' fails
    except (ValueError, TypeError, UnicodeError) as exc:
        why = clip(str(exc), 160)
        raise TargetValidationError(
            "delivery.url",
            f"{shown!r} is not a URL an HTTP client can send to"
            + ("" if _userinfo(url) in why else f" ({why})"),
        ) from None


def _userinfo(url: str) -> str:
    """The ``user:password@`` part of ``url``'s authority ("\x00" when it has none: no
    message holds it), so that no message shows it."""
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[0] or "\x00"


MAX_HOST_CHARS = 253
"""The longest DNS name (RFC 1035 §2.3.4, in its text form)."""


def _numeric_but_not_ipv4(host: str) -> bool:
    """Whether ``host`` looks like a number (its last label all digits or ``0x…``: no DNS
    name ends so) without being a canonical dotted-decimal IPv4 address: ``134744072``,
    ``127.1``, ``0x7f.1``. HTTP clients refuse those at send time; they are refused here."""
    if ":" in host:  # an IPv6 literal
        return False
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if not (last.isdigit() or last.startswith("0x")):
        return False
    try:
        return str(ipaddress.IPv4Address(host.rstrip("."))) != host.rstrip(".")
    except ValueError:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class SftpTarget:
    """Deliver by SFTP upload (temporary name, then rename).

    Attributes:
        host / port: the server.
        username: the login.
        path: the remote folder the files go into (created if missing).
        host_key: the server's public host key, OpenSSH format (``ssh-ed25519 AAAA...``);
            the connection is refused if the server presents another key.
        password / private_key: credentials (at least one; private key in OpenSSH or PEM
            format, unencrypted). Not shown in ``repr``.
    """

    host: str
    username: str
    path: str
    host_key: str
    port: int = 22
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    method: Literal["sftp"] = "sftp"

    def __post_init__(self) -> None:
        for name in ("host", "username", "path"):  # host_key: parsed below
            check_text(f"delivery.{name}", getattr(self, name))
        if self.password is not None and not is_sealed(self.password):
            check_text("delivery.password", self.password)
        if (
            not self.host
            or len(self.host) > MAX_HOST_CHARS
            or any(c.isspace() for c in self.host)
            or _numeric_but_not_ipv4(self.host)
        ):
            raise TargetValidationError(
                "delivery.host", f"{clip(self.host, 80)!r} is not a host name nor an IP address"
            )
        try:  # yarl's rule of a URL's host: no '/', '@', ':' (but IPv6), '?', '#', '%', '\\'
            yarl.URL.build(scheme="sftp", host=self.host)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise TargetValidationError(
                "delivery.host",
                f"{clip(self.host, 80)!r} is not a host name nor an IP address"
                f" ({clip(str(exc).partition(', if the value')[0], 160)})",
            ) from None
        if not 1 <= self.port <= 65535:
            raise TargetValidationError("delivery.port", f"{self.port} is not a TCP port")
        if not self.username:
            raise TargetValidationError("delivery.username", "is required")
        if not self.path or "\x00" in self.path:
            raise TargetValidationError("delivery.path", "is required")
        try:
            asyncssh.import_public_key(self.host_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise TargetValidationError(
                "delivery.host_key", f"not an OpenSSH public key: {exc}"
            ) from exc
        if self.password is None and self.private_key is None:
            raise TargetValidationError(
                "delivery.password", "a password or a private_key is required"
            )
        if self.private_key is not None and not is_sealed(self.private_key):  # sealed: checked
            try:  # when it was stored (stream_app.delivery.sealing)
                asyncssh.import_private_key(self.private_key)
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise TargetValidationError(
                    "delivery.private_key", f"not an unencrypted private key: {exc}"
                ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiTarget:
    """Deliver by publishing signed download links (fetched over the HTTP API).

    Attributes:
        link_ttl_seconds: how long a link stays valid, seconds (60 s – 30 days).
    """

    link_ttl_seconds: int = DEFAULT_LINK_TTL_SECONDS
    method: Literal["api"] = "api"

    def __post_init__(self) -> None:
        _check_link_ttl(self.link_ttl_seconds)


DeliveryTarget = EmailTarget | WebhookTarget | SftpTarget | ApiTarget


def link_ttl_seconds(target: DeliveryTarget) -> int:
    """How long the download links of a delivery to ``target`` stay valid, seconds.

    SFTP hands out no links; it answers the default (7 days) for completeness.
    """
    return getattr(target, "link_ttl_seconds", DEFAULT_LINK_TTL_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a delivery is retried.

    The wait before attempt ``n + 1`` is ``min(base_backoff_s * 2**(n-1), max_backoff_s)``
    seconds (exponential backoff). Only errors marked retriable are retried.

    Attributes:
        max_attempts: attempts in all, 1–10 (1 = no retry).
        base_backoff_s: first wait, seconds (> 0, ≤ 3600; a schedule or report request
            asks for at least :data:`MIN_BASE_BACKOFF_S`, see :func:`accept_retry`).
        max_backoff_s: cap of one wait, seconds (≥ base_backoff_s, ≤ 86400).
    """

    max_attempts: int = 3
    base_backoff_s: float = 30.0
    max_backoff_s: float = 900.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 10:
            raise TargetValidationError("retry.max_attempts", "must be between 1 and 10")
        if not 0 < self.base_backoff_s <= 3600:
            raise TargetValidationError("retry.base_backoff_s", "must be in (0, 3600] seconds")
        if not self.base_backoff_s <= self.max_backoff_s <= 86400:
            raise TargetValidationError(
                "retry.max_backoff_s", "must be between base_backoff_s and 86400 seconds"
            )


MIN_BASE_BACKOFF_S: Final = 1.0
"""The shortest first wait between attempts a schedule or report request may ask for,
seconds: a receiver that fails is not hammered (the policy itself allows shorter waits, for
tests of retries)."""


def accept_retry(policy: RetryPolicy) -> RetryPolicy:
    """``policy`` if a schedule or report request may ask for it (its first wait at least
    :data:`MIN_BASE_BACKOFF_S`).

    Raises:
        TargetValidationError: naming ``retry.base_backoff_s``.
    """
    if policy.base_backoff_s < MIN_BASE_BACKOFF_S:
        raise TargetValidationError(
            "retry.base_backoff_s",
            f"must be at least {MIN_BASE_BACKOFF_S:g} second (got {policy.base_backoff_s:g}):"
            " a failing receiver is not retried faster",
        )
    return policy


TARGET_TYPES: dict[str, type[DeliveryTarget]] = {
    "email": EmailTarget,
    "webhook": WebhookTarget,
    "sftp": SftpTarget,
    "api": ApiTarget,
}
"""The target class of each ``method``."""


SECRET_FIELDS: dict[type[DeliveryTarget], tuple[str, ...]] = {
    WebhookTarget: ("secret",),
    SftpTarget: ("password", "private_key"),
}
"""The secret fields of each target type (the others have none): stored apart and sealed."""


def target_parts(target: DeliveryTarget) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(method, options, secrets)`` of ``target``: the storage form, secrets apart (JSON
    values: tuples become lists)."""
    secret_names = SECRET_FIELDS.get(type(target), ())
    options: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for f in dataclasses.fields(target):
        value = getattr(target, f.name)
        value = list(value) if isinstance(value, tuple) else value
        if f.name in secret_names:
            secrets[f.name] = value
        elif f.name != "method":
            options[f.name] = value
    return target.method, options, secrets


def target_from_parts(
    method: str, options: dict[str, Any], secrets: dict[str, Any]
) -> DeliveryTarget:
    """The target stored as ``(method, options, secrets)`` (validation runs again; options
    missing from rows written before they existed take their defaults).

    Raises:
        ValueError: the method is unknown or a field is missing or has the wrong type.
        TargetValidationError: a field is invalid.
    """
    if method not in TARGET_TYPES:
        raise ValueError(f"delivery_method: {method!r} is unknown")
    fields = {**options, **{k: v for k, v in secrets.items() if v is not None}}
    try:
        return msgspec.convert(fields, TARGET_TYPES[method], strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"delivery: {exc}") from None


def target_to_dict(target: DeliveryTarget) -> dict[str, Any]:
    """The flat JSON form of ``target``, secrets included (sealed ones stay sealed)."""
    method, options, secrets = target_parts(target)
    return {"method": method, **options, **{k: v for k, v in secrets.items() if v is not None}}


def target_from_dict(value: dict[str, Any]) -> DeliveryTarget:
    """The target of a flat JSON object ``{"method": ..., ...}`` (see :func:`target_to_dict`).

    Raises:
        TargetValidationError: the method is unknown (``delivery.method``) or a field is
            invalid (named by the target's check).
        msgspec.ValidationError: a field is missing or has the wrong type (msgspec's message
            names it).
    """
    method = value.get("method")
    if not isinstance(method, str) or method not in TARGET_TYPES:
        raise TargetValidationError(
            "delivery.method", f"{cut(repr(method), 80)} is not one of {sorted(TARGET_TYPES)}"
        )
    check_known_fields(value, method)
    return msgspec.convert(value, TARGET_TYPES[method])  # strict: "5" is no number


def check_known_fields(value: dict[str, Any], method: str, field: str = "delivery") -> None:
    """Refuse a key of a ``method`` target's flat JSON form ``value`` that is not one of its
    fields (``"extra": 1`` is an error, not ignored).

    Raises:
        TargetValidationError: naming ``<field>.<key>``.
    """
    known = {f.name for f in dataclasses.fields(TARGET_TYPES[method])}
    for key in value:
        if key not in known:
            raise TargetValidationError(
                f"{field}.{cut(str(key), 80)}",
                f"unknown field of a {method} delivery (known: {sorted(known)})",
            )
