"""One error hierarchy; each error carries the process exit status of DESIGN.md.

Exit statuses: 0 done, 1 anything else, 2 bad configuration or arguments,
3 a statement still unavailable at the deadline, 4 integrity failure.
Entry points catch ``ReconError`` once and exit with ``exit_code``.
"""

from __future__ import annotations


class ReconError(Exception):
    """Base of every error the pipeline reports to a person."""

    exit_code = 1

    def __init__(self, message: str, *, channel: str | None = None, date: str | None = None,
                 file: str | None = None, line: int | None = None, hint: str | None = None):
        self.message = message
        self.channel = channel
        self.date = date
        self.file = file
        self.line = line
        self.hint = hint
        super().__init__(self.describe())

    def named(self, *, channel: str | None = None, date: str | None = None, file: str | None = None,
              line: int | None = None) -> "ReconError":
        """This error with where it happened filled in (what it already names is kept)."""
        self.channel, self.date = self.channel or channel, self.date or date
        self.file, self.line = self.file or file, self.line or line
        self.args = (self.describe(),)
        return self

    def describe(self) -> str:
        """One line naming channel, date, file and line, then what to do next."""
        where = []
        if self.channel:
            where.append(f"channel {self.channel}")
        if self.date:
            where.append(f"date {self.date}")
        if self.file:
            where.append(f"file {self.file}" + (f" line {self.line}" if self.line else ""))
        text = (f"[{', '.join(where)}] " if where else "") + self.message
        if self.hint:
            text += f" -- {self.hint}"
        return text


class ConfigError(ReconError):
    """Bad configuration or command-line arguments."""

    exit_code = 2


class UnavailableError(ReconError):
    """A statement still unavailable at its deadline (or the local export missing): exit 3."""

    exit_code = 3


class IntegrityError(ReconError):
    """Control totals, checksums or another integrity check failed; nothing is published."""

    exit_code = 4


class RetriableError(ReconError):
    """A transient failure (timeout, reset, 5xx, short transfer): worth another attempt."""

    exit_code = 3


class NotPublishedYet(RetriableError):
    """The channel has not published the statement yet ("No Bill Exist", 404, no file): try again later."""


class FatalError(ReconError):
    """A failure no retry can fix (authentication, 4xx, bad host key, bad certificate)."""

    exit_code = 1


# When several channels fail in one run, the exit status reports the most
# actionable one: configuration first, then integrity, then unavailability.
_EXIT_PRIORITY = (2, 4, 3, 1)


def combined_exit_code(codes) -> int:
    """The exit status for a run in which these per-channel statuses occurred (0 if none)."""
    codes = {c for c in codes if c}
    for code in _EXIT_PRIORITY:
        if code in codes:
            return code
    return max(codes) if codes else 0
