"""Spark's ``xxhash64`` in plain Python, for the values both engines must agree on.

Spark hashes a string as XXH64 of its UTF-8 bytes, seeded with 42 for the first column and with the running
hash for each next one, and gives the result as a signed 64-bit integer. The DuckDB engine needs the same
numbers in two places: a statement file's id (``_fid``, the tie-break between two channel records of one key
with the same time) and the content digest of the open items that summary.json records and the next date
checks (``jobs.transforms.content_digest``). tests/jobs/test_sparkhash.py holds them equal to Spark's.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import xxhash

SEED = 42
_SIGN = 1 << 63
_WRAP = 1 << 64


def _signed(value: int) -> int:
    return value - _WRAP if value >= _SIGN else value


def xxhash64(*texts: str) -> int:
    """``xxhash64(t1, t2, ...)`` of non-null strings, as Spark computes it."""
    seed = SEED
    for text in texts:
        seed = xxhash.xxh64_intdigest(text.encode("utf-8"), seed)
    return _signed(seed)


def content_digest(rows: Iterable[Sequence[str]]) -> str | None:
    """``jobs.transforms.content_digest`` of rows given as text (a missing value as ""): the sum of each row's
    ``xxhash64`` as a decimal string; None without rows (Spark's sum of nothing)."""
    total, any_row = 0, False
    for row in rows:
        total += xxhash64(*row)
        any_row = True
    return str(total) if any_row else None
