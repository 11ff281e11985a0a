"""Download progress: a bar on a terminal, nothing per chunk under cron (landing logs plain lines)."""

from __future__ import annotations

import sys
import threading
import time

_lock = threading.Lock()


class Progress:
    """Tracks one file's transfer; draws a one-line bar when stderr is a terminal."""

    def __init__(self, label: str, stream=None, interactive: bool | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.total: int | None = None
        self.done = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def set_total(self, total: int | None) -> None:
        self.total = total

    def reset(self) -> None:
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.interactive and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._started, 1e-6) / 1e6
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {frac:6.1%} {self.done / 1e6:8.1f} MB {rate:6.1f} MB/s"
        else:
            text = f"\r{self.label} {self.done / 1e6:8.1f} MB {rate:6.1f} MB/s"
        with _lock:
            self.stream.write(text)
            self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self._draw(time.monotonic())
            with _lock:
                self.stream.write("\n")
                self.stream.flush()
