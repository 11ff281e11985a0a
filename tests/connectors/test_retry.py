"""Retry policy: which errors are retried, the 5–10 minute rhythm, deadlines, and the exit-3 message."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest

from connectors.retry import RetryPolicy, fetch_with_retries
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError, UnavailableError

DAY = dt.date(2026, 11, 20)
WHERE = dict(channel="alipay", date="2026-11-20", file="bill.zip")


class FakeClock:
    """Time that passes only when the code under test sleeps (so no test waits for real minutes)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_default_rhythm_is_every_5_to_10_minutes_until_noon_of_the_next_day():
    policy = RetryPolicy.from_options({}, DAY, "Asia/Shanghai")
    assert (policy.retry_interval, policy.retry_jitter) == (300, 300)
    assert policy.deadline.isoformat() == "2026-11-21T12:00:00+08:00"
    clock = FakeClock()
    calls = []

    def not_yet(attempt):
        calls.append(attempt.number)
        raise NotPublishedYet("No Bill Exist")

    now = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    policy_at_9 = RetryPolicy(**{**policy.__dict__})
    stop_at = policy_at_9.stop_at(clock(), now_wall=now)
    assert stop_at - clock() == 3 * 3600  # three hours from 09:00 to 12:00
    with pytest.raises(UnavailableError):
        fetch_with_retries(not_yet, RetryPolicy(retry_interval=300, retry_jitter=300, max_wait=3 * 3600),
                           clock=clock, sleep=clock.sleep, **WHERE)
    assert all(300 <= s <= 600 for s in clock.sleeps)
    assert 18 <= len(calls) <= 37 and clock.now - 1000.0 <= 3 * 3600


def test_only_retriable_errors_are_retried():
    clock = FakeClock()
    calls = []

    def fatal(attempt):
        calls.append(attempt.number)
        raise FatalError("530 Login incorrect")

    with pytest.raises(FatalError) as info:
        fetch_with_retries(fatal, RetryPolicy(max_wait=3600), clock=clock, sleep=clock.sleep, **WHERE)
    assert calls == [1] and clock.sleeps == []
    assert info.value.channel == "alipay" and info.value.file == "bill.zip"


def test_success_after_transient_failures_reports_the_attempts():
    clock = FakeClock()
    outcomes = [RetriableError("connection reset"), NotPublishedYet("No Bill Exist"), "ok"]

    def flaky(attempt):
        result = outcomes[attempt.number - 1]
        if isinstance(result, Exception):
            raise result
        return result

    assert fetch_with_retries(flaky, RetryPolicy(max_wait=3600), clock=clock, sleep=clock.sleep, **WHERE) == ("ok", 3)


def test_at_the_deadline_the_message_names_channel_file_and_what_was_last_seen():
    clock = FakeClock()

    def hung(attempt):
        raise RetriableError("timed out after 60 s without data")

    with pytest.raises(UnavailableError) as info:
        fetch_with_retries(hung, RetryPolicy(retry_interval=300, retry_jitter=0, max_wait=1000), clock=clock,
                           sleep=clock.sleep, **WHERE)
    err = info.value
    assert err.exit_code == 3
    text = err.describe()
    assert "channel alipay" in text and "bill.zip" in text and "timed out after 60 s" in text
    assert "attempt" in err.message


def test_a_run_after_the_deadline_still_makes_one_attempt():
    clock = FakeClock()
    calls = []

    def missing(attempt):
        calls.append(1)
        raise NotPublishedYet("404")

    policy = RetryPolicy.from_options({}, dt.date(2020, 1, 1), "Asia/Shanghai")  # deadline long past
    with pytest.raises(UnavailableError):
        fetch_with_retries(missing, policy, clock=clock, sleep=clock.sleep, **WHERE)
    assert calls == [1]


def test_unwrapped_library_errors_are_classified():
    clock = FakeClock()
    with pytest.raises(FatalError, match="certificate"):
        fetch_with_retries(lambda a: (_ for _ in ()).throw(ssl.SSLCertVerificationError("bad cert")),
                           RetryPolicy(max_wait=10), clock=clock, sleep=clock.sleep, **WHERE)
    seen = []

    def reset(attempt):
        seen.append(1)
        raise ConnectionResetError("peer reset")

    with pytest.raises(UnavailableError):
        fetch_with_retries(reset, RetryPolicy(retry_interval=5, retry_jitter=0, max_wait=12), clock=clock,
                           sleep=clock.sleep, **WHERE)
    assert len(seen) == 3


def test_the_attempt_wall_clock_limit_ends_a_trickling_transfer():
    clock = FakeClock()

    def trickle(attempt):
        for _ in range(100):
            clock.now += 10  # ten seconds per chunk
            attempt.check()
        return "done"

    with pytest.raises(UnavailableError, match="wall-clock limit of 60 s"):
        fetch_with_retries(trickle, RetryPolicy(attempt_timeout=60, max_attempts=2, retry_interval=1,
                                                retry_jitter=0), clock=clock, sleep=clock.sleep, **WHERE)


@pytest.mark.parametrize("options", [{"deadline": "noon"}, {"deadline": ""}, {"retry_interval": -1},
                                     {"max_attempts": 0}])
def test_bad_retry_options_are_configuration_errors(options):
    with pytest.raises(ConfigError):
        RetryPolicy.from_options(options, DAY, "Asia/Shanghai")
