"""Everything pinned to the internals of faust-streaming, mode-streaming and aiokafka.

This package is the one place of ``stream_app`` that reads or replaces a private attribute
(a ``_name``) of those libraries; ``tests/runtime/test_private_access.py`` fails when any
other module does. An upgrade of one of them has one checklist: the modules below and
:data:`PINNED`.

Nothing here patches anything when imported. :func:`install` applies the patches, once per
process, where a worker starts (``wedding-engine worker``, :func:`stream_app.cli.main`,
which every worker the demo, the tests and the benchmarks start runs); importing
:mod:`stream_app.app` or :mod:`stream_app.worker` leaves faust as it is.

What :func:`install` changes, and why (each module's docstring has the measurements):

- **fetch wait** (:mod:`stream_app.runtime.fetching`, faust-streaming 0.15
  ``AIOKafkaConsumerThread._create_worker_consumer``, aiokafka 0.14
  ``AIOKafkaConsumer._fetch_max_wait_ms``): faust lets the broker hold each fetch 1.5 s,
  which stalls busy partitions; the worker uses ``WEDDING_FETCH_MAX_WAIT_MS``; and
  ``Fetcher._prefetch_backoff``: records of a changelog partition faust does not read held
  every fetch from their broker for 100 ms; the worker uses ``WEDDING_PREFETCH_BACKOFF_MS``.
- **producer flush** (:mod:`stream_app.runtime.producer_flush`, faust-streaming 0.15
  ``ProducerBuffer.flush`` and ``ProducerBuffer._send_pending``): faust's flush gives up
  after 0.1 s per record, so offsets could be committed before their changelog records were
  sent; the flush waits until the buffer is empty.
- **producer buffer capacity** (faust-streaming 0.15 ``ProducerBuffer.max_messages``, 100):
  faust pauses the stream, logging a warning each time, whenever more table changelog
  records wait in the buffer than that; a fold batch writes hundreds of rows at once, so
  the buffer holds :data:`PRODUCER_BUFFER_MAX_MESSAGES`.

- **restores by input offset** (:mod:`stream_app.runtime.restore`, faust-streaming 0.15
  ``Store.apply_changelog_batch``): a changelog record of a fold table whose row already
  holds a later input offset is skipped, so a write from a worker that lost the partition
  (paused past its session timeout) cannot replace the new owner's newer value.
- **aiohttp's answer to a malformed request** (:mod:`stream_app.runtime.http_errors`,
  aiohttp 3.14 ``RequestHandler.handle_error``): a 4xx the HTTP parser gives is the API's
  JSON error naming the header, not a plain-text 400 repeating the request's bytes (a
  bearer token with a stray byte came back in the body and in the log).
- **HTTP connection bounds** (:mod:`stream_app.runtime.http_limits`, aiohttp 3.14
  ``RequestHandler.__init__``, ``Server.connection_made``/``connection_lost``): a request
  head within the keep-alive deadline, connection caps per client address and in all (an
  attacker round exhausted a worker's file descriptors with half-sent requests).
- **aiokafka's DEBUG records**: aiokafka logs at DEBUG per request and per produced batch;
  its logger is kept at INFO or above so those records are not built on the hot path
  (measured with py-spy: ~4 % of the worker's main thread).

Also here, used without :func:`install` (selected by configuration or called by name):

- :mod:`stream_app.runtime.consumer`: batch delivery inside faust, the ``weddingkafka``
  transport (``broker_consumer`` in :mod:`stream_app.app`; a ``faust.transports`` entry
  point), pinned to faust's ``Consumer._drain_messages`` and its offset bookkeeping;
- :mod:`stream_app.runtime.inloop`: faust's aiokafka consumer "thread" run on the worker's own
  event loop (created by the ``weddingkafka`` consumer), pinned to faust's
  ``AIOKafkaConsumerThread`` and mode's ``ServiceThread``;
- :mod:`stream_app.runtime.state`: write-behind table state (changelog acknowledged, then one
  RocksDB write batch with the changelog offset), pinned to faust's RocksDB store;
- :mod:`stream_app.runtime.bulk_send`: aiokafka record batches (``create_batch`` /
  ``send_batch``);
- :mod:`stream_app.runtime.context`: table reads outside the current event (faust's
  ``streams._current_event``);
- :mod:`stream_app.runtime.introspect`: the consumer's offset bookkeeping for
  ``GET /debug/consumer``;
- :mod:`stream_app.runtime.table_scan`: prefix scans of a table's RocksDB partitions;
- :mod:`stream_app.runtime.gc_tuning`: the worker's garbage-collector settings, applied last
  before the worker starts (:func:`stream_app.runtime.gc_tuning.tune`).

mode-streaming 0.7 is pinned because faust-streaming 0.15 is built on it (its services and
``wait_first``); :mod:`stream_app.runtime.inloop` overrides its ``ServiceThread`` start and stop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import version

from faust.transport.producer import ProducerBuffer

from stream_app.errors import WeddingError
from stream_app.runtime import fetching, http_errors, http_limits, producer_flush, restore
from stream_app.settings import Settings

log = logging.getLogger(__name__)

PINNED: dict[str, str] = {
    "faust-streaming": "0.15",
    "mode-streaming": "0.7",
    "aiokafka": "0.14",
}
"""Distribution → the release line (``major.minor``) whose internals this package was written
against; :func:`install` refuses any other (pyproject.toml pins the same lines)."""

PRODUCER_BUFFER_MAX_MESSAGES = 10_000
"""Changelog records faust's producer buffer holds before it pauses the stream (faust: 100)."""

_installed = False


class UnsupportedLibraryError(WeddingError, RuntimeError):
    """An installed faust-streaming, mode-streaming or aiokafka is not the pinned release line."""


def check_pins(pins: Mapping[str, str] = PINNED) -> None:
    """Check that every distribution of ``pins`` (:data:`PINNED`) is installed at its line.

    Raises:
        UnsupportedLibraryError: one is at another line (its name, the installed and the
            pinned version in the message): the patches may no longer fit its internals.
    """
    for dist, line in pins.items():
        installed = version(dist)
        if installed != line and not installed.startswith(line + "."):
            raise UnsupportedLibraryError(
                f"{dist} {installed} is installed; stream_app.runtime is written against {line}.x"
            )


def install(settings: Settings) -> None:
    """Apply every patch of this package to this process (see the module docstring).

    Call it once where a worker process starts, before the faust worker does. It is
    idempotent: a second call with the same settings changes nothing, and a call with other
    settings re-applies the fetch wait with the new value.

    Args:
        settings: the worker's settings (``fetch_max_wait_ms`` and ``prefetch_backoff_ms``
            are read).

    Raises:
        UnsupportedLibraryError: a pinned library is at another release line (nothing is
            patched then).
        ValueError: ``settings.fetch_max_wait_ms`` or ``prefetch_backoff_ms`` is negative.
    """
    global _installed
    check_pins()
    # first: it validates before it patches
    fetching.install(settings.fetch_max_wait_ms, settings.prefetch_backoff_ms)
    producer_flush.install()
    restore.install()
    http_errors.install()
    http_limits.install(
        settings.http_keepalive_s,
        settings.http_max_connections_per_address,
        settings.http_max_connections,
    )
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.setLevel(max(logging.INFO, aiokafka_log.getEffectiveLevel()))
    # on the class: every buffer of this process, the app's producer's included (it was
    # ``app.producer.buffer.max_messages = 10_000`` at import of stream_app.app)
    ProducerBuffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
    if not _installed:
        log.info("faust/mode/aiokafka runtime patches installed")
    _installed = True


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return _installed
