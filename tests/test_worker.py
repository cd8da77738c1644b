"""``stream_app.worker.EngineWorker``: a worker writing to a file or a pipe shows no spinner
(whose cursor escape codes ended up in log files: a fresh user's finding); on a terminal it
does. Its shutdown deadline is tested end to end (tests/e2e/test_faults.py)."""

from __future__ import annotations

import asyncio
import io

from stream_app.worker import EngineWorker, app


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_spinner_unless_on_a_terminal() -> None:
    loop = asyncio.new_event_loop()
    try:
        to_file = EngineWorker(app, loglevel="warning", stdout=io.StringIO(), loop=loop)
        on_terminal = EngineWorker(app, loglevel="warning", stdout=_Terminal(), loop=loop)
    finally:
        loop.close()
    assert to_file.spinner is None
    # faust's spinner, drawing on the worker's own output
    spinner = on_terminal.spinner
    assert type(spinner).__name__ == "Spinner"
    assert spinner is not None and spinner.file is on_terminal.stdout
