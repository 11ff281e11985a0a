"""The ZIP writer of report.xlsx: entries deflated in segments (a thread deflating the rows as they come) read
back by zipfile byte for byte, with the right CRC-32, ZIP64 where sizes call for it."""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.zipdeflate import DeflatingBody, ZipWriter, crc32_combine, deflated


@given(st.binary(max_size=3000), st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_crc32_combine_is_the_crc_of_the_concatenation(a, b):
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_crc32_combine_over_a_long_second_part():
    a, b = os.urandom(100), os.urandom(5_000_001)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def _segmented(head: bytes, chunks: list[bytes], tail: bytes, level: int = 3) -> bytes:
    body = DeflatingBody(level)
    try:
        for c in chunks:
            body.write(c)
        rows, size = body.finish()
        crc = zlib.crc32(tail, crc32_combine(zlib.crc32(head), body.crc, body.size))
        out = io.BytesIO()
        zw = ZipWriter(out)
        zw.add_bytes("small.xml", b"<a/>", level)
        zw.add("xl/worksheets/sheet1.xml", crc, len(head) + body.size + len(tail),
               [deflated(head, level, final=False), (rows, size), deflated(tail, level, final=True)])
        zw.close()
        return out.getvalue()
    finally:
        body.close()


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_segments_read_back_as_one_entry_with_its_crc(level):
    rng = random.Random(7)
    head, tail = b"<worksheet><sheetData>", b"</sheetData></worksheet>"
    chunks = [("".join(f'<row r="{i}"><c><v>{rng.random()}</v></c></row>' for i in range(k * 500, k * 500 + 500))
               ).encode() for k in range(40)] + [b"", os.urandom(70_000)]
    data = _segmented(head, chunks, tail, level)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every entry's CRC checked
        assert zf.namelist() == ["small.xml", "xl/worksheets/sheet1.xml"]
        assert zf.read("small.xml") == b"<a/>"
        assert zf.read("xl/worksheets/sheet1.xml") == head + b"".join(chunks) + tail
        info = zf.getinfo("xl/worksheets/sheet1.xml")
        assert info.compress_type == zipfile.ZIP_DEFLATED and info.date_time == (1980, 1, 1, 0, 0, 0)


def test_an_empty_body_and_the_same_input_give_the_same_bytes():
    one = _segmented(b"<h/>", [], b"<t/>")
    assert one == _segmented(b"<h/>", [], b"<t/>")
    with zipfile.ZipFile(io.BytesIO(one)) as zf:
        assert zf.read("xl/worksheets/sheet1.xml") == b"<h/><t/>"


def test_sizes_past_4_gib_are_written_as_zip64():
    """A made-up entry claiming 5 GiB (the writer trusts the sizes it is given): its local and central headers
    carry the ZIP64 extra, which zipfile reads back as the entry's size."""
    out = io.BytesIO()
    zw = ZipWriter(out)
    zw.add("big", 0, 5 << 30, [deflated(b"x", 1, final=True)])
    zw.close()
    data = out.getvalue()
    assert struct.unpack_from("<H", data, 4)[0] == 45  # version needed: ZIP64
    assert struct.unpack_from("<II", data, 18) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert struct.pack("<HHQ", 1, 16, 5 << 30) in data  # the local header's ZIP64 extra
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the central directory's
        assert zf.getinfo("big").file_size == 5 << 30


class _Full(io.BytesIO):
    def write(self, data):
        raise OSError(28, "No space left on device")


def test_a_failing_write_in_the_thread_is_raised_to_the_writer():
    body = DeflatingBody(3)
    body._file = _Full()
    with pytest.raises(OSError, match="No space left"):
        for _ in range(50):
            body.write(os.urandom(100_000))
        body.finish()
    body.close()
    assert body.closed
