"""A ZIP file whose large entries are deflated by a thread while their bytes are still being made.

report.xlsx is mostly its sheets' rows, and deflating them took a third of the reports' time, on one core,
after the last row was made. ``DeflatingBody`` takes a sheet's rows as they are appended and deflates them in
a thread (zlib lets go of the GIL), on the core the row-making Python leaves idle. The entry is then the head,
the rows and the tail, each a raw deflate segment of its own: the first two end with a sync flush (a byte
boundary, no block marked final), so the three read as one deflate stream (RFC 1951 keeps no state across
blocks but the window, which a new segment simply does not use); the CRC-32 of the whole is combined from the
parts' (``crc32_combine``, zlib's method). ``ZipWriter`` writes such entries (ZIP64 where sizes call for it) to
any binary stream, sizes known before each entry, so nothing is seeked or written twice.
"""

from __future__ import annotations

import queue
import struct
import tempfile
import threading
import zlib
from typing import BinaryIO, Iterable

DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1  # every entry dated 1980-01-01 00:00: the same rows, the same bytes
DEFLATE = 8  # the entries' compression method
_LIMIT = 0xFFFFFFFF
_QUEUE_CHUNKS = 8  # chunks (about 450 kB each for report.xlsx) waiting for the thread: memory stays flat
_COPY = 1 << 20


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, m) for m in matrix]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine, in Python)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four
    while True:  # apply len2 zero bytes to crc1
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def deflated(data: bytes, level: int, final: bool) -> bytes:
    """``data`` as a raw deflate segment: ended with a sync flush, or as the stream's last (``final``)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


class DeflatingBody:
    """Bytes written here are deflated by a thread into a temporary file, as one raw segment (see the module
    docstring); ``finish`` waits for it. ``crc`` and ``size`` are of the bytes as written."""

    def __init__(self, level: int):
        self._file = tempfile.TemporaryFile(prefix="xlsx-sheet-")
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.crc = self.size = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="xlsx-deflate",
                                                                 daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.crc = zlib.crc32(data, self.crc)
                    self.size += len(data)
                    self._file.write(self._compressor.compress(data))
                except BaseException as exc:  # a full disk: said by the next write or by finish
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            raise ValueError("the body is finished: it takes no more bytes")
        self._queue.put(data)

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def finish(self) -> tuple[BinaryIO, int]:
        """Wait for the thread, end the segment; returns (the deflated bytes, from their start, and their size)."""
        self._stop()
        if self._error is not None:
            raise self._error
        self._file.write(self._compressor.flush(zlib.Z_SYNC_FLUSH))
        size = self._file.tell()
        self._file.seek(0)
        return self._file, size

    def close(self) -> None:
        """Stop the thread and drop the temporary file."""
        self._stop()
        self._file.close()


class ZipWriter:
    """A ZIP file written front to back: ``add`` entries already deflated, then ``close`` writes the central
    directory. Names are ASCII (or UTF-8, flagged); entries are dated 1980-01-01."""

    def __init__(self, out: BinaryIO):
        self._out, self._pos, self._entries = out, 0, []

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    def add_bytes(self, name: str, data: bytes, level: int) -> None:
        """A small entry, deflated here."""
        self.add(name, zlib.crc32(data), len(data), [deflated(data, level, final=True)])

    def add(self, name: str, crc: int, size: int, segments: Iterable[bytes | tuple[BinaryIO, int]]) -> None:
        """An entry of ``size`` bytes with CRC-32 ``crc``, deflated: ``segments`` are bytes, or (a stream, how many
        bytes of it), one deflate stream together."""
        segments = list(segments)
        compressed = sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else 0x800
        zip64 = size >= _LIMIT or compressed >= _LIMIT
        extra = struct.pack("<HHQQ", 1, 16, size, compressed) if zip64 else b""
        version = 45 if zip64 else 20
        offset = self._pos
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, version, flags, DEFLATE, 0,
                                DOS_DATE_1980_01_01, crc, _LIMIT if zip64 else compressed,
                                _LIMIT if zip64 else size, len(encoded), len(extra)) + encoded + extra)
        for s in segments:
            if isinstance(s, bytes):
                self._write(s)
                continue
            stream, left = s
            while left:
                chunk = stream.read(min(_COPY, left))
                if not chunk:
                    raise ValueError(f"zip entry {name}: its deflated bytes ended early")
                self._write(chunk)
                left -= len(chunk)
        self._entries.append((encoded, flags, crc, size, compressed, offset))

    def close(self) -> None:
        start = self._pos
        for encoded, flags, crc, size, compressed, offset in self._entries:
            big = [v for v in (size, compressed, offset) if v >= _LIMIT]
            extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
            version = 45 if big else 20
            self._write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | version, version, flags,
                                    DEFLATE, 0, DOS_DATE_1980_01_01, crc, min(compressed, _LIMIT),
                                    min(size, _LIMIT), len(encoded), len(extra), 0, 0, 0, 0o600 << 16,
                                    min(offset, _LIMIT)) + encoded + extra)
        count, length = len(self._entries), self._pos - start
        if count >= 0xFFFF or start >= _LIMIT or length >= _LIMIT:
            end64 = self._pos
            self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, length, start))
            self._write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                                min(length, _LIMIT), min(start, _LIMIT), 0))
