"""``stream_app.runtime.install``: nothing is patched at import, everything after it, once.

The patches are process-wide, so the import check runs in a child process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from stream_app import runtime

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import json
import logging
logging.getLogger().setLevel(logging.DEBUG)
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer

from stream_app.worker import app  # every agent, table and view: what a worker imports


def state():
    return {
        "new_offset": Consumer._new_offset.__module__,
        "add_gap": Consumer._add_gap.__module__,
        "consumer": type(app.consumer).__module__,
        "aiokafka_debug": logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG),
        "create_worker_consumer": AIOKafkaConsumerThread._create_worker_consumer.__module__,
        "flush": ProducerBuffer.flush.__module__,
        "send_pending": ProducerBuffer._send_pending.__module__,
        "max_messages": app.producer.buffer.max_messages,
    }


from stream_app import runtime
from stream_app.app import settings

before = state()
installed_before = runtime.installed()
runtime.install(settings)
once = (ProducerBuffer.flush, ProducerBuffer._send_pending)
after = state()
runtime.install(settings)
twice = (ProducerBuffer.flush, ProducerBuffer._send_pending)
print(json.dumps({"before": before, "installed_before": installed_before, "after": after,
                  "idempotent": once == twice, "installed": runtime.installed()}))
"""


def test_import_patches_nothing_and_install_patches_everything_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=REPO
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"] == {
        "new_offset": "faust.transport.consumer",
        "add_gap": "faust.transport.consumer",
        "consumer": "stream_app.runtime.consumer",  # chosen by configuration, not patched
        "aiokafka_debug": True,
        "create_worker_consumer": "faust.transport.drivers.aiokafka",
        "flush": "faust.transport.producer",
        "send_pending": "faust.transport.producer",
        "max_messages": 100,  # faust's own
    }
    assert out["installed_before"] is False
    assert out["after"] == {
        # faust's own offset bookkeeping is left alone: the batch consumer overrides it in
        # its subclass (stream_app/runtime/consumer.py)
        "new_offset": "faust.transport.consumer",
        "add_gap": "faust.transport.consumer",
        "consumer": "stream_app.runtime.consumer",
        "aiokafka_debug": False,
        "create_worker_consumer": "stream_app.runtime.fetching",
        "flush": "stream_app.runtime.producer_flush",
        "send_pending": "stream_app.runtime.producer_flush",
        "max_messages": 10_000,
    }
    assert (out["idempotent"], out["installed"]) == (True, True)


def test_the_installed_libraries_are_the_pinned_lines() -> None:
    runtime.check_pins()  # raises otherwise


def test_another_line_is_refused_naming_the_library() -> None:
    with pytest.raises(runtime.UnsupportedLibraryError, match=r"aiokafka 0\.14\.\d+ is installed"):
        runtime.check_pins({"faust-streaming": "0.15", "aiokafka": "0.13"})


@pytest.mark.parametrize("dist", ["faust-streaming", "aiokafka"])
def test_pyproject_pins_the_lines_runtime_is_written_against(dist: str) -> None:
    """A bump in pyproject.toml without a review of stream_app/runtime/ fails here."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == dist]
    line = runtime.PINNED[dist]
    major, minor = (int(x) for x in line.split("."))
    assert req.specifier.contains(f"{line}.99")
    assert not req.specifier.contains(f"{major}.{minor + 1}.0")
    assert not req.specifier.contains(f"{major}.{minor - 1}.99")
