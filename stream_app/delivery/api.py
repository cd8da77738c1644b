"""Signed, expiring download links for report files, and the ``api`` delivery method.

A link is ``<base_url>/downloads/<token>`` where the token is a JWT (HS256, PyJWT) signed
with the link key (``WEDDING_LINK_SECRET``, never the bearer-token key) with the organisation
(``org``), the artifact's path relative to the artifact store (``path``), the report id
(``rid``), the schedule id (``sid``, absent for a report without a schedule), a link id
(``jti``), an audience of ``wedding-download``, the issue time (``iat``, UTC seconds since
the epoch with microseconds, so a revocation made in the same second is ordered) and an
``exp`` (UTC seconds since the epoch). :func:`verify_link` rejects a token whose signature,
audience or claims do not check out, or whose ``exp`` is not after ``now``. Revocation (per
report, per schedule) is checked at download against PostgreSQL
(:mod:`stream_app.delivery.links`). The HTTP layer serves ``GET /downloads/{token}``.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import jwt

from stream_app.delivery.base import DeliveryJob, DeliveryMethod, IssuedLink, SendReceipt
from stream_app.delivery.targets import link_ttl_seconds
from stream_app.errors import WeddingError
from stream_app.schemas.ids import is_valid_id
from stream_app.schemas.tokens import is_token_id

AUDIENCE = "wedding-download"
MIN_SECRET_BYTES = 32  # HS256 wants a key of at least the hash size (RFC 7518 §3.2)


class LinkError(WeddingError, ValueError):
    """A download link is invalid: tampered, expired, or for a path outside the store.

    Attributes:
        reason: what is wrong.
    """

    retriable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a valid link grants.

    Attributes:
        organization_id: the tenant that owns the file.
        path: the artifact's path relative to the store root (``<org>/<report>/<file>``).
        expires_at: when the link stops working (UTC).
        report_id: the report the file belongs to (revocable per report).
        schedule_id: the schedule that delivered it (revocable per schedule), or None.
        link_id: the link's id (``jti``), named in the audit log.
        issued_at: when it was signed (UTC, microseconds).
    """

    organization_id: str
    path: str
    expires_at: datetime
    report_id: str
    schedule_id: str | None
    link_id: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class SignedLink:
    """A download link and its expiry (UTC).

    Attributes:
        url: the link.
        expires_at: when it stops working (UTC, whole seconds).
        link_id: its ``jti``.
        issued_at: when it was signed (UTC).
    """

    url: str
    expires_at: datetime
    link_id: str = ""
    issued_at: datetime | None = None

    def issued(self, fmt: str) -> IssuedLink:
        """This link as a delivery's record of it, for the file of format ``fmt``."""
        return IssuedLink(
            url=self.url,
            format=fmt,
            link_id=self.link_id,
            issued_at=self.issued_at or self.expires_at,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class LinkSigner:
    """Signs and verifies download links.

    Attributes:
        secret: HS256 key, at least 32 bytes (not shown in ``repr``).
        base_url: public URL of the HTTP API (``https://reports.example.org``).
        default_ttl_s: link lifetime when none is given, seconds.
    """

    secret: str = field(repr=False)
    base_url: str
    default_ttl_s: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"secret: must be at least {MIN_SECRET_BYTES} bytes")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url: {self.base_url!r} is not an http(s) URL")

    def sign(
        self,
        organization_id: str,
        path: str,
        *,
        now: datetime,
        report_id: str,
        schedule_id: str | None = None,
        ttl_s: int | None = None,
    ) -> SignedLink:
        """A link to the artifact at ``path`` (relative to the store) valid until now + ttl.

        Args:
            organization_id: the file's tenant.
            path: relative artifact path (as in :class:`ArtifactLink.path`).
            now: the signing time, UTC-aware.
            report_id: the report the file belongs to.
            schedule_id: the schedule delivering it, if any.
            ttl_s: lifetime in seconds (default ``default_ttl_s``).

        Raises:
            LinkError: ``path`` is absolute, escapes the store or is not the tenant's.
        """
        _check_path(organization_id, path)
        expires = (now + timedelta(seconds=ttl_s or self.default_ttl_s)).astimezone(UTC)
        expires = expires.replace(microsecond=0)
        link_id = uuid.uuid4().hex
        claims: dict[str, object] = {
            "org": organization_id,
            "path": path,
            "rid": report_id,
            "jti": link_id,
            "aud": AUDIENCE,
            "iat": round(now.timestamp(), 6),
            "exp": int(expires.timestamp()),
        }
        if schedule_id is not None:
            claims["sid"] = schedule_id
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return SignedLink(
            f"{self.base_url.rstrip('/')}/downloads/{token}",
            expires,
            link_id=link_id,
            issued_at=now.astimezone(UTC),
        )

    def verify(self, link: str, *, now: datetime) -> LinkClaims:
        """Check a link (or its bare token) at ``now``; see :func:`verify_link`."""
        return verify_link(link, self.secret, now=now)


def _check_path(organization_id: str, path: str) -> None:
    normal = posixpath.normpath(path)
    if (
        path.startswith("/")
        or normal != path
        or normal.startswith("..")
        or not normal.startswith(f"{organization_id}/")
    ):
        raise LinkError(f"path {path!r} is not a file of organisation {organization_id!r}")


def verify_link(link: str, secret: str, *, now: datetime) -> LinkClaims:
    """Verify a download link (full URL or bare token) at ``now`` (UTC-aware).

    Returns:
        The claims: organisation, relative artifact path, expiry.

    Raises:
        LinkError: bad signature or format (tampered), wrong audience, missing claims, an
            id claim (``org``, ``rid``, ``sid``) breaking the id rule, issued more than
            :data:`ISSUE_SKEW` after ``now``, expired (``exp <= now``), or its path is not
            ``<org>/<rid>/<file name>``.
    """
    token = link.rsplit("/", 1)[-1]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            # exp is checked below against the injected `now`, not the machine clock
            options={
                "verify_exp": False,
                "verify_iat": False,
                "require": ["exp", "iat", "aud", "org", "path", "rid", "jti"],
            },
        )
    except jwt.InvalidTokenError as exc:
        raise LinkError(f"invalid link: {exc}") from exc
    org, path, exp, iat = claims["org"], claims["path"], claims["exp"], claims["iat"]
    rid, jti, sid = claims["rid"], claims["jti"], claims.get("sid")
    if (
        not all(isinstance(v, str) for v in (org, path, rid, jti))
        or not isinstance(exp, int)
        or not isinstance(iat, int | float)
        or not (sid is None or isinstance(sid, str))
    ):
        raise LinkError("invalid link: malformed claims")
    if not is_token_id(jti):  # it names the link in the audit log and in revocations
        raise LinkError("invalid link: jti is not 1-128 printable ASCII characters")
    # ids by the id rule, and the file one of the report the link names: revocation and the
    # audit go by ``rid`` (an attacker round signed links with the development secret whose
    # rid was "../orgb/r1" beside another report's path, or 5,000 characters: a 500)
    if not (is_valid_id(org) and is_valid_id(rid) and (sid is None or is_valid_id(sid))):
        raise LinkError("invalid link: an id claim breaks the id rule")
    try:
        expires_at = datetime.fromtimestamp(exp, UTC)
        issued_at = datetime.fromtimestamp(iat, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise LinkError("invalid link: exp out of range") from exc
    if issued_at > now + ISSUE_SKEW:  # never covered by a revocation (revoked_at >= iat)
        raise LinkError("invalid link: issued in the future")
    if expires_at <= now:
        raise LinkError(f"link expired at {expires_at.isoformat()}")
    _check_path(org, path)
    parts = path.split("/")
    if len(parts) != 3 or parts[1] != rid or not _FILE_NAME.fullmatch(parts[2]):
        raise LinkError(f"invalid link: path {path!r} is not a file of report {rid!r}")
    return LinkClaims(org, path, expires_at, rid, sid, jti, issued_at)


ISSUE_SKEW = timedelta(seconds=60)
"""How far a link's ``iat`` may be ahead of the verifying worker's clock (the signing
worker's clock may run ahead a little; a link from further in the future is refused)."""

_FILE_NAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._:\-]{1,140}")
"""A stored file's name (``<report type>.<ext>``, the report type an id): the id rule's
characters, no separator, control character or NUL."""


class LinkTargetGoneError(WeddingError):
    """A valid link whose file is no longer in the store (an erasure or the retention rule
    removed it): not a bad credential."""

    retriable = False


def resolve_download(artifact_root: Path, claims: LinkClaims) -> Path:
    """The local file a verified link points to.

    Raises:
        LinkError: the path leaves the store (e.g. through a symlink).
        LinkTargetGoneError: the file is missing.
    """
    root = artifact_root.resolve()
    target = (root / claims.path).resolve()
    if not target.is_relative_to(root):
        raise LinkError(f"{claims.path!r} is not in the artifact store")
    if not target.is_file():
        raise LinkTargetGoneError(
            f"the file of this link ({claims.path!r}) was removed (a GDPR erasure or the"
            " retention rule); request the report again"
        )
    return target


class ApiMethod(DeliveryMethod):
    """Delivery by signed download links, recorded in the delivery log for the API to list.

    Attributes:
        signer: signs the links.
    """

    name: ClassVar[str] = "api"

    def __init__(self, signer: LinkSigner) -> None:
        self.signer = signer

    def describe_target(self, job: DeliveryJob) -> str:
        """``api`` plus the link base URL."""
        return f"api {self.signer.base_url}"

    async def send(self, job: DeliveryJob) -> SendReceipt:
        """Sign one link per file, valid for the target's ``link_ttl_seconds``."""
        ttl = link_ttl_seconds(job.target)
        now = datetime.now(UTC)
        links = [
            self.signer.sign(
                job.organization_id,
                f.link.path,
                now=now,
                ttl_s=ttl,
                report_id=job.report_id,
                schedule_id=job.schedule_id,
            )
            for f in job.files
        ]
        listing = [
            {"format": f.link.format, "url": s.url, "expires_at": s.expires_at.isoformat()}
            for f, s in zip(job.files, links, strict=True)
        ]
        return SendReceipt(
            location=json.dumps(listing),
            detail=f"{len(links)} link(s) valid until {links[0].expires_at.isoformat()}"
            if links
            else "no files",
            links=tuple(s.url for s in links),
            issued=tuple(s.issued(f.link.format) for f, s in zip(job.files, links, strict=True)),
        )
