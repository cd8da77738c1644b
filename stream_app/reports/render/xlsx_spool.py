"""xlsxwriter's ``constant_memory`` row spool, sealed: the one place that leans on xlsxwriter
internals (checked against xlsxwriter 3.3.1; re-check on upgrade).

In ``constant_memory`` mode xlsxwriter writes each sheet's finished rows as XML text to a
temporary file (``Worksheet.row_data_fh``, created in ``Worksheet._initialize``), and copies
them into the sheet's XML when the workbook is closed (``_write_optimized_sheet_data``,
after ``_opt_reopen``; ``_opt_close`` at the very end). Those rows are the report's
plaintext. :class:`SealedSpoolWorksheet` replaces that file, before anything is written to
it, by a :class:`SealedSpool`: an anonymous temporary file (no name on disk) holding the rows
in the segmented AES-256-GCM format of :mod:`stream_app.crypto.segmented` under a random key
that lives only in this object's memory. The packager's own per-part temporary files are
avoided by xlsxwriter's in-memory packaging (``Workbook.in_memory``, set after construction
so that ``constant_memory`` stays on): the sheet's XML is assembled in memory once, at close.

Internals used: ``Worksheet._initialize``, ``constant_memory``, ``tmpdir``, ``row_data_fh``,
``row_data_filename``, ``fh``, ``_opt_close``, ``_opt_reopen``,
``_write_optimized_sheet_data``, ``dim_rowmin``, ``_xml_start_tag``/``_xml_end_tag``/
``_xml_empty_tag``; ``Workbook.worksheet_class`` and ``in_memory``.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from xlsxwriter.worksheet import Worksheet

from stream_app.crypto.segmented import (
    FileContext,
    SegmentedEncryptor,
    decrypt_segments,
    read_header,
)

_CONTEXT = FileContext("xlsxwriter-row-spool", "", "")


class SealedSpool:
    """A write-then-read text file, sealed on disk with a key only this object holds.

    Writes are UTF-8 encoded and sealed 64 KiB at a time; ``seek(0)`` ends writing and
    starts reading; ``read(n)`` returns up to ``n`` characters.
    """

    def __init__(self, tmpdir: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 - closed in close()
        self._key = os.urandom(32)
        self._enc: SegmentedEncryptor | None = SegmentedEncryptor(
            self._file, self._key, 0, _CONTEXT
        )
        self._chunks: Iterator[bytes] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self.closed = False

    def write(self, text: str) -> int:
        """Seal ``text``; returns its length in characters.

        Raises:
            ValueError: after reading started.
        """
        if self._enc is None:
            raise ValueError("write after read on a sealed spool")
        self._enc.write(text.encode())
        return len(text)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Rewind to the start for reading (the only seek xlsxwriter makes).

        Raises:
            ValueError: any other position.
        """
        if (offset, whence) != (0, 0):
            raise ValueError("a sealed spool only rewinds to its start")
        if self._enc is not None:
            self._enc.close()
            self._enc = None
        self._file.flush()
        size = self._file.seek(0, os.SEEK_END)
        self._file.seek(0)
        header = read_header(self._file)
        self._chunks = decrypt_segments(self._file, self._key, header, _CONTEXT, size)
        self._text = ""
        return 0

    def read(self, size: int = -1) -> str:
        """Up to ``size`` characters (all that is left when negative); ``""`` at the end."""
        if self._chunks is None:
            raise ValueError("read before seek(0) on a sealed spool")
        while size < 0 or len(self._text) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._text += self._decoder.decode(b"", final=True)
                break
            self._text += self._decoder.decode(chunk)
        if size < 0:
            out, self._text = self._text, ""
        else:
            out, self._text = self._text[:size], self._text[size:]
        return out

    def close(self) -> None:
        """Delete the temporary file (idempotent)."""
        if not self.closed:
            self._file.close()
            self.closed = True


class SealedSpoolWorksheet(Worksheet):  # type: ignore[misc]
    """A worksheet whose ``constant_memory`` row spool is a :class:`SealedSpool`."""

    def _initialize(self, init_data: Any) -> None:
        super()._initialize(init_data)
        if self.constant_memory:
            # xlsxwriter opened an empty named temp file: nothing was written to it yet
            empty: Any = getattr(self, "row_data_fh")  # noqa: B009 - untyped attribute
            empty.close()
            os.unlink(str(getattr(self, "row_data_filename")))  # noqa: B009 - untyped attribute
            self.row_data_filename = None
            self.row_data_fh = SealedSpool(self.tmpdir or None)
            self.fh = self.row_data_fh

    def _opt_close(self) -> None:
        self.row_data_fh.close()

    def _opt_reopen(self) -> None:
        self.fh = self.row_data_fh  # never closed before the rows are copied

    def _write_optimized_sheet_data(self) -> None:
        if self.dim_rowmin is None:
            self._xml_empty_tag("sheetData")
            return
        self._xml_start_tag("sheetData")
        self.row_data_fh.seek(0)
        while data := self.row_data_fh.read(1 << 16):
            self.fh.write(data)
        self.row_data_fh.close()
        self._xml_end_tag("sheetData")
