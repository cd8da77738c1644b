"""Schema of the ``supplier-activities`` topic: tasks and deliveries done by suppliers."""

from __future__ import annotations

from typing import Literal

from stream_app.schemas.base import EventBase, Identifier, UtcDateTime


class SupplierActivityEvent(EventBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A unit of work of a supplier (a photographer's shoot, a caterer's delivery).

    Key on the topic: ``organization_id/supplier_id``.

    Attributes:
        event_type: ``task_assigned``, ``task_completed`` or ``delivery_made``.
        supplier_id: the supplier (a company or a person, e.g. one photographer).
        task_id: the task or delivery.
        booking_id: the booking the work is for, when known.
        due_at: deadline (UTC offset required); a completion after it is late.
        person_id: the person who did the work, for workload per person.
    """

    event_type: Literal["task_assigned", "task_completed", "delivery_made"]
    supplier_id: Identifier
    task_id: Identifier
    booking_id: Identifier | None = None
    due_at: UtcDateTime | None = None
    person_id: Identifier | None = None
