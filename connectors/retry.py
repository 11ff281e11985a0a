"""Retry policy: every 5–10 minutes by default, only for retriable errors, until a deadline.

``deadline = "12:00"`` means 12:00 on D+1 in the business time zone (bills
appear in the morning of the next day); ``max_wait`` (seconds from the first
attempt) and ``max_attempts`` bound it further. A run after the deadline
(a backfill) still makes one attempt. At the deadline the last retriable
error becomes an ``UnavailableError`` (exit 3) that says what was last seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Callable, TypeVar
from zoneinfo import ZoneInfo

import tenacity

from connectors.base import Attempt
from core.errors import ConfigError, FatalError, ReconError, RetriableError, UnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _seconds(options: dict, key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"[download] {key} must be a number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    attempt_timeout: float = 900.0
    retry_interval: float = 300.0
    retry_jitter: float = 300.0
    deadline: dt.datetime | None = None     # aware; None: no wall-clock deadline
    max_wait: float | None = None
    max_attempts: int | None = None

    @classmethod
    def from_options(cls, options: dict, day: dt.date, timezone: str) -> "RetryPolicy":
        deadline_text = str(options.get("deadline", "12:00"))
        local = None
        if deadline_text:
            try:
                hh, mm = (int(x) for x in deadline_text.split(":"))
                local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(hh, mm), tzinfo=ZoneInfo(timezone))
            except ValueError:
                raise ConfigError(f"[download] deadline must be HH:MM (on D+1, business time), got "
                                  f"{deadline_text!r}") from None
        elif "max_wait" not in options and "max_attempts" not in options:
            raise ConfigError('[download] deadline = "" (none) needs max_wait or max_attempts to bound the retries')
        max_attempts = options.get("max_attempts")
        if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
            raise ConfigError(f"[download] max_attempts must be a positive integer, got {max_attempts!r}")
        return cls(
            connect_timeout=_seconds(options, "connect_timeout", 15),
            read_timeout=_seconds(options, "read_timeout", 60),
            attempt_timeout=_seconds(options, "attempt_timeout", 900),
            retry_interval=_seconds(options, "retry_interval", 300),
            retry_jitter=_seconds(options, "retry_jitter", 300),
            deadline=local,
            max_wait=_seconds(options, "max_wait", 0) if "max_wait" in options else None,
            max_attempts=max_attempts,
        )

    def stop_at(self, started: float, now_wall: dt.datetime | None = None) -> float:
        """The monotonic time after which no new attempt starts."""
        limits = []
        if self.deadline is not None:
            now_wall = now_wall or dt.datetime.now(dt.timezone.utc)
            limits.append(started + (self.deadline - now_wall).total_seconds())
        if self.max_wait is not None:
            limits.append(started + self.max_wait)
        return min(limits) if limits else float("inf")

    def limits(self) -> str:
        """What bounds the retries, for a person: "deadline 2026-11-21 12:00 CST, max_wait 60 s"."""
        parts = []
        if self.deadline is not None:
            parts.append(f"deadline {self.deadline.strftime('%Y-%m-%d %H:%M %Z')}")
        if self.max_wait is not None:
            parts.append(f"max_wait {self.max_wait:g} s")
        if self.max_attempts is not None:
            parts.append(f"max_attempts {self.max_attempts}")
        return ", ".join(parts) or "no limit"


def _classify(exc: BaseException) -> BaseException:
    """A safety net for library errors a connector did not wrap."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FatalError(f"TLS certificate not trusted: {getattr(exc, 'verify_message', None) or exc}")
    if isinstance(exc, (TimeoutError, ConnectionError, EOFError)):
        return RetriableError(f"{type(exc).__name__}: {exc}")
    try:  # requests' errors do not derive from the built-in ConnectionError
        import requests
    except ImportError:  # pragma: no cover - requests is a dependency
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return FatalError(f"TLS failure: {exc}")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError)):
        return RetriableError(f"{type(exc).__name__}: {exc}")
    return exc


UNAVAILABLE_HINT = ("the channel has not published it or its server keeps failing; the other channels were "
                    "reconciled; re-run this date when it is available")


def fetch_with_retries(fn: Callable[[Attempt], T], policy: RetryPolicy, *, channel: str, date: str, file: str,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep,
                       unavailable_hint: str | None = None) -> tuple[T, int]:
    """Call ``fn(attempt)`` until it succeeds, a fatal error occurs, or the deadline; returns (result, attempts).

    ``unavailable_hint`` is what to do when it is still missing at the end (the connector type knows best).
    """
    started = clock()
    stop_at = policy.stop_at(started)
    count = 0

    def one():
        nonlocal count
        count += 1
        attempt = Attempt(count, connect_timeout=policy.connect_timeout, read_timeout=policy.read_timeout,
                          wall_clock=policy.attempt_timeout, clock=clock)
        try:
            return fn(attempt)
        except ReconError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, then re-raised
            classified = _classify(exc)
            if classified is exc:
                raise
            raise classified from exc

    def stop(state: tenacity.RetryCallState) -> bool:
        if policy.max_attempts is not None and state.attempt_number >= policy.max_attempts:
            return True
        return clock() + (state.upcoming_sleep or 0) > stop_at

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        text = exc.message if hasattr(exc, "message") else str(exc)
        log.warning("channel %s date %s file %s: attempt %d failed (%s); next attempt in %.0f s", channel, date,
                    file, state.attempt_number, text, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        stop=stop,
        wait=tenacity.wait_fixed(policy.retry_interval) + tenacity.wait_random(0, policy.retry_jitter),
        retry=tenacity.retry_if_exception_type(RetriableError),
        reraise=True, sleep=sleep, before_sleep=before_sleep)
    try:
        return retrying(one), count
    except RetriableError as exc:
        raise UnavailableError(
            f"statement still unavailable after {count} attempt(s) ({policy.limits()}); last seen: {exc.message}",
            channel=channel, date=date, file=file, hint=unavailable_hint or UNAVAILABLE_HINT) from exc
    except (FatalError, ReconError) as exc:  # fatal, integrity (e.g. max_bytes), configuration: named, not retried
        exc.channel, exc.date, exc.file = exc.channel or channel, exc.date or date, exc.file or file
        exc.args = (exc.describe(),)
        raise
