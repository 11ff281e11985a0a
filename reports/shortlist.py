"""The first rows of a stream by a sort key, chosen while the stream passes, with bounded memory.

report.html lists at most a fixed number of rows (the most urgent); the rows
arrive one at a time from a CSV that may hold hundreds of thousands. A
``Shortlist`` keeps at most ``2 * limit`` of them: when its buffer is full it
keeps the ``limit`` smallest (``heapq.nsmallest``), and from then on refuses
at once a row that sorts after the last one kept. Ties go to the row offered
first, so at the end ``rows`` is exactly the first ``limit`` rows of a stable
sort of the whole stream by ``key``, and ``total`` how many rows passed.
"""

from __future__ import annotations

import heapq
from typing import Callable


class Shortlist:
    """The ``limit`` first rows by ``key`` of everything offered, and how many were offered."""

    def __init__(self, limit: int, key: Callable[[dict], object]):
        if limit < 1:
            raise ValueError("a shortlist keeps at least one row")
        self.limit = limit
        self.key = key
        self.total = 0
        # (key, arrival number, row): the arrival number breaks ties (stability) and keeps rows uncompared.
        self._kept: list[tuple] = []
        self._last_kept: tuple | None = None  # (key, arrival) of the last kept row once the buffer was trimmed

    def offer(self, row: dict) -> None:
        self.total += 1
        entry = (self.key(row), self.total)
        if self._last_kept is not None and entry > self._last_kept:
            return  # after ``limit`` rows that all come before it: it can never be shown
        self._kept.append((*entry, row))
        if len(self._kept) >= 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        self._kept = heapq.nsmallest(self.limit, self._kept, key=lambda e: e[:2])
        if len(self._kept) == self.limit:
            self._last_kept = self._kept[-1][:2]

    @property
    def rows(self) -> list[dict]:
        """The kept rows, first by ``key`` first."""
        self._trim()
        return [e[2] for e in self._kept]

    @property
    def not_shown(self) -> int:
        """Rows offered but not kept."""
        return self.total - len(self.rows)
