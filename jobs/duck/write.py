"""The DuckDB engine's outputs: one sorted CSV file per result, byte for byte what the Spark engine writes.

The dialect is schemas/csvio.py's, as Spark writes it: a header line, LF line ends, nothing for a missing or
empty value, a value quoted (quotes doubled) when it holds a comma, a quote, LF or CR, and a decimal as its
plain text at its scale (12.30). Lines are built by DuckDB (vectorized), sorted as Spark sorts them (ascending,
a missing value first, strings by their bytes), and streamed to the file in chunks.
"""

from __future__ import annotations

import posixpath
from typing import Sequence

from core.storage import Storage

CHUNK_ROWS = 100_000


def field(column: str) -> str:
    """SQL: column ``column`` as one CSV field."""
    v = f'CAST("{column}" AS VARCHAR)'
    return (f"CASE WHEN {v} IS NULL THEN '' WHEN regexp_matches({v}, '[\",\\r\\n]') "
            f"THEN '\"' || replace({v}, '\"', '\"\"') || '\"' ELSE {v} END")


def order_by(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}" ASC NULLS FIRST' for c in columns)


def write_csv(con, storage: Storage, folder: str, name: str, columns: Sequence[str], source: str,
              order: Sequence[str]) -> int:
    """Write the rows of SQL ``source`` (with ``columns``) sorted by ``order`` as ``folder/name``; returns the
    number of rows."""
    line = " || ',' || ".join(field(c) for c in columns)
    cursor = con.execute(f"SELECT {line} FROM ({source}) ORDER BY {order_by(order)}")
    count = 0
    with storage.open_write(posixpath.join(folder, name)) as out:
        out.write((",".join(columns) + "\n").encode("utf-8"))
        while True:
            rows = cursor.fetchmany(CHUNK_ROWS)
            if not rows:
                break
            count += len(rows)
            out.write(("\n".join(r[0] for r in rows) + "\n").encode("utf-8"))
    return count


def texts(con, source: str, columns: Sequence[str], by: str):
    """(``by``'s value, the row's ``columns`` as text with a missing value as "") of SQL ``source``, in chunks:
    what the content digest hashes (``jobs.sparkhash.content_digest``)."""
    cols = ", ".join(f"""coalesce(CAST("{c}" AS VARCHAR), '')""" for c in columns)
    cursor = con.execute(f'SELECT "{by}", {cols} FROM ({source})')
    while True:
        rows = cursor.fetchmany(CHUNK_ROWS)
        if not rows:
            return
        yield from rows
