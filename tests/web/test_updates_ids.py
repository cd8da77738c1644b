"""The live-update stream's event ids: sealed positions that reveal no offset, open only on the
organisation's own stream, and refuse anything else with a 400 naming the field (the finding:
ids were the raw offsets of the shared topic, so a tenant watched other tenants' activity)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from stream_app.web.errors import ApiError
from stream_app.web.updates_ids import MAX_ID_CHARS, MAX_OFFSET, EventIds

SECRET = "test-secret-of-at-least-32-bytes-0123456789"
TOPIC = "realtime-metrics-updates"


def test_a_sealed_position_opens_back_on_the_same_organisations_stream() -> None:
    ids = EventIds(SECRET, "org-a", TOPIC)
    for position in ({0: 53, 1: 18010, 2: 16462, 3: 17}, {0: 0, 2: MAX_OFFSET}, {}):
        assert ids.open(ids.seal(position)) == position
    # another worker of the deployment (a new object, the same secret) opens it too
    assert EventIds(SECRET, "org-a", TOPIC).open(ids.seal({0: 5, 1: 6})) == {0: 5, 1: 6}


def test_an_id_shows_no_offset_and_no_two_ids_are_alike() -> None:
    """Two seals of one position differ (random nonce); an id's length depends on the
    partition count only (4 partitions: 12 + 4 × 8 + 16 = 60 bytes, 80 base64url characters),
    so offsets moving by other tenants' messages change nothing a client can compare."""
    ids = EventIds(SECRET, "org-a", TOPIC)
    before = {0: 53, 1: 18010, 2: 16462, 3: 17}
    after = {0: 53, 1: 18045, 2: 16462, 3: 17}  # B produced 35 messages on partition 1
    sealed = [ids.seal(before) for _ in range(50)] + [ids.seal(after) for _ in range(50)]
    assert len(set(sealed)) == 100
    assert {len(s) for s in sealed} == {80}
    assert len(ids.seal({p: MAX_OFFSET for p in range(4)})) == 80
    assert len(ids.seal({p: 0 for p in range(4)})) == 80
    raw = base64.urlsafe_b64decode(sealed[0] + "==")
    for offset in before.values():
        assert offset.to_bytes(8, "big") not in raw
    # the largest topic whose ids fit the input limit
    assert len(ids.seal({p: MAX_OFFSET for p in range(380)})) <= MAX_ID_CHARS


@pytest.mark.parametrize(
    ("org", "topic", "secret"),
    [
        ("org-b", TOPIC, SECRET),  # another organisation's stream
        ("org-a", "other-topic", SECRET),  # another topic's positions
        ("org-a", TOPIC, SECRET + "x"),  # another deployment's secret
    ],
)
def test_an_id_sealed_elsewhere_is_refused_naming_the_field(
    org: str, topic: str, secret: str
) -> None:
    minted = EventIds(secret, org, topic).seal({0: 1, 1: 2})
    with pytest.raises(ApiError) as caught:
        EventIds(SECRET, "org-a", TOPIC).open(minted, "last_event_id")
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_field",
        "last_event_id",
    )


def _flip(text: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=="))
    raw[20] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forge",
    [
        lambda good: "0:53,1:18045,2:16462,3:17",  # the old raw offsets
        lambda good: "zz",
        lambda good: "",
        lambda good: _flip(good),  # one bit of the ciphertext changed
        lambda good: good[:-4],  # truncated
        lambda good: good[:20],  # shorter than a nonce and a tag
        lambda good: good + "\n",
        lambda good: good.replace(good[5], "+" if good[5] != "+" else "/", 1),
        lambda good: "０" + good[1:],
        lambda good: "A" * (MAX_ID_CHARS + 1),
    ],
)
def test_a_malformed_or_forged_id_is_refused_naming_the_field(
    forge: Callable[[str], str],
) -> None:
    ids = EventIds(SECRET, "org-a", TOPIC)
    good = ids.seal({0: 53, 1: 18045, 2: 16462, 3: 17})
    with pytest.raises(ApiError) as caught:
        ids.open(forge(good), "Last-Event-ID")
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_field",
        "Last-Event-ID",
    )
