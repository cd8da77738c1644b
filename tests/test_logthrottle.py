"""The repeat throttle (:mod:`stream_app.logthrottle`) on a real logger and handler: the first
failure of a kind whole with its traceback, then one line per window with the count left out,
each kind on its own, a quiet kind starting afresh, and records below WARNING untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stream_app.logthrottle import TRACEBACK_KIND, RepeatThrottle, install


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Capture(logging.Handler):
    """Keeps the formatted lines it emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logged(clock: Clock) -> Iterator[tuple[logging.Logger, Capture, Capture]]:
    """A logger with two handlers sharing one throttle (a worker's stream and spinner)."""
    logger = logging.getLogger("test.logthrottle")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    first, second = Capture(), Capture()
    logger.addHandler(first)
    logger.addHandler(second)
    install(logger, RepeatThrottle(60.0, clock))
    try:
        yield logger, first, second
    finally:
        logger.removeHandler(first)
        logger.removeHandler(second)


def fail(logger: logging.Logger, message: str = "delivery tick failed") -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        logger.exception(message)


def test_one_line_per_minute_with_the_count_after_the_first_traceback(
    clock: Clock, logged: tuple[logging.Logger, Capture, Capture]
) -> None:
    logger, out, other = logged
    for _ in range(60):  # a failure every second for a minute
        fail(logger)
        clock.now += 1.0
    assert len(out.lines) == 1
    assert out.lines[0].startswith("ERROR delivery tick failed\nTraceback (most recent call last)")
    assert "ConnectionRefusedError: [Errno 111]" in out.lines[0]
    fail(logger)  # 60 s after the first: one line, no traceback, the 59 left out counted
    assert out.lines[1] == (
        "ERROR delivery tick failed [again; 59 more like this in the last 60 s not logged;"
        " traceback as in the first]"
    )
    for _ in range(240):  # two more minutes at 2 per second
        clock.now += 0.5
        fail(logger)
    assert len(out.lines) == 4
    assert [line.split("[again; ")[1].split(" more")[0] for line in out.lines[2:]] == ["119", "119"]
    # both handlers saw the same records: the decision is taken once per record
    assert other.lines == out.lines


def test_each_kind_has_its_own_window_and_templates_group_their_arguments(
    clock: Clock, logged: tuple[logging.Logger, Capture, Capture]
) -> None:
    logger, out, _ = logged
    for node in range(5):
        logger.error("Unable connect to node with id %s: %s", node, "refused")
        fail(logger)
        logger.warning("Failed to restore the pool connection floor; retrying")
    assert out.lines[0] == "ERROR Unable connect to node with id 0: refused"
    assert out.lines[2] == "WARNING Failed to restore the pool connection floor; retrying"
    assert len(out.lines) == 3
    clock.now += 61
    logger.error("Unable connect to node with id %s: %s", 7, "refused")
    assert out.lines[3] == (
        "ERROR Unable connect to node with id 7: refused [again; 4 more like this in the last"
        " 61 s not logged; traceback as in the first]"
    )


def test_a_quiet_kind_starts_afresh_and_info_passes(
    clock: Clock, logged: tuple[logging.Logger, Capture, Capture]
) -> None:
    logger, out, _ = logged
    fail(logger)
    clock.now += 600  # ten quiet minutes: the next failure is a new episode, whole
    fail(logger)
    assert len(out.lines) == 2
    assert "Traceback" in out.lines[1] and "[again;" not in out.lines[1]
    for _ in range(10):
        logger.info("report %s completed", "r1")
    assert out.lines[2:] == ["INFO report r1 completed"] * 10


def test_a_record_with_its_own_kind_is_always_written_only_its_traceback_throttled(
    clock: Clock, logged: tuple[logging.Logger, Capture, Capture]
) -> None:
    logger, out, other = logged

    def incident(n: int, kind: str) -> None:
        try:
            raise TypeError("Recursion limit reached")
        except TypeError:
            logger.exception("incident %s", n, extra={TRACEBACK_KIND: kind})

    incident(1, "POST /orgs/{org}/reports TypeError")
    clock.now += 10
    incident(2, "POST /orgs/{org}/reports TypeError")
    incident(3, "GET /orgs/{org}/reports/{report_id} TypeError")  # another kind: whole
    clock.now += 60  # a window after the first: whole again
    incident(4, "POST /orgs/{org}/reports TypeError")
    assert [line.split("\n")[0] for line in out.lines] == [
        "ERROR incident 1",
        "ERROR incident 2 [traceback left out: as the one logged 10 s ago for"
        " POST /orgs/{org}/reports TypeError; 1 left out since]",
        "ERROR incident 3",
        "ERROR incident 4",
    ]
    assert ["Traceback" in line for line in out.lines] == [True, False, True, True]
    assert other.lines == out.lines
