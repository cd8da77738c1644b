"""Schema of the ``client-interactions`` topic: inquiries, responses, bookings, ratings."""

from __future__ import annotations

from typing import Literal

from stream_app.schemas.base import EventBase, Identifier, check_label


class ClientInteractionEvent(EventBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A contact between a couple (the client) and the business.

    Key on the topic: ``organization_id/client_id``.

    Attributes:
        event_type: ``inquiry`` (first contact), ``response`` (the business answered),
            ``booked`` (the client signed / booked: the conversion of an inquiry, or a direct
            booking when no inquiry came before it), ``rating`` (a satisfaction score),
            ``nps`` (likelihood to recommend, 0–10), ``client_erased`` (GDPR Art. 17: the
            client's rows are deleted from the live table, with tombstones to its changelog;
            produced by ``POST /orgs/{org}/gdpr/erase``, see :mod:`stream_app.gdpr.erase`).
        client_id: the client.
        inquiry_id: the inquiry a response answers or a ``booked`` event converts (optional,
            informative: conversion is decided by event times, see
            :mod:`stream_app.tables.interactions`); None otherwise.
        channel: ``email``, ``phone``, ``web``, ...; free text.
        score: 1–5 for ``rating``, 0–10 for ``nps``; None for other types.
        supplier_id: the supplier or venue concerned (e.g. the one booked), when there is one.
    """

    event_type: Literal["inquiry", "response", "booked", "rating", "nps", "client_erased"]
    client_id: Identifier
    inquiry_id: Identifier | None = None
    channel: str | None = None
    score: int | None = None
    supplier_id: Identifier | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_label("channel", self.channel)
        if self.event_type == "rating" and (self.score is None or not 1 <= self.score <= 5):
            raise ValueError("$.score: a rating needs a score from 1 to 5")
        if self.event_type == "nps" and (self.score is None or not 0 <= self.score <= 10):
            raise ValueError("$.score: an nps answer needs a score from 0 to 10")
        if (
            self.event_type in ("inquiry", "response", "booked", "client_erased")
            and self.score is not None
        ):
            raise ValueError(f"$.score: not allowed on {self.event_type}")
        if self.event_type == "client_erased":
            # an erasure names the client and nothing else (no free text to keep in the log)
            for name in ("inquiry_id", "channel", "supplier_id"):
                if getattr(self, name) is not None:
                    raise ValueError(f"$.{name}: not allowed on client_erased")
