"""Orchestration of one date (and of a range): download -> normalize -> reconcile.

Channels are independent until the reconciliation: one channel's failure is
logged with what to do, the others go on, the date is reconciled with the
channels that are ready, and the exit status reports the failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from connectors.landing import land
from normalizers.publish import normalize_channel
from recon.config import Settings
from recon.errors import ReconError, combined_exit_code
from recon.storage import Storage

log = logging.getLogger(__name__)
STAGES = ("download", "normalize", "reconcile")


@dataclass
class DateResult:
    """What happened to one date."""

    day: dt.date
    failures: dict[str, ReconError] = field(default_factory=dict)
    summary: dict | None = None
    error: ReconError | None = None   # a failure of the whole date (reconcile stage)

    @property
    def exit_code(self) -> int:
        codes = [e.exit_code for e in self.failures.values()]
        if self.error is not None:
            codes.append(self.error.exit_code)
        return combined_exit_code(codes)


def new_run_id(day: dt.date) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{day.isoformat()}-{stamp}-{uuid.uuid4().hex[:8]}"


def process_date(settings: Settings, day: dt.date, *, channels: list[str] | None = None,
                 stages: tuple[str, ...] = STAGES, force_download: bool = False,
                 spark_factory: Callable | None = None) -> DateResult:
    """Run ``stages`` for ``day``; never raises ReconError (it is recorded in the result)."""
    storage = Storage(settings.root)
    names = channels or sorted(settings.channels)
    for name in names:
        settings.channel(name)  # unknown names are configuration errors, before any work
    result = DateResult(day)
    timings: dict[str, float] = {}
    ready = []
    for name in names:
        chan = settings.channels[name]
        try:
            if "download" in stages:
                t0 = time.time()
                land(storage, chan, day, force=force_download)
                timings[f"download.{name}_seconds"] = round(time.time() - t0, 3)
            if "normalize" in stages:
                t0 = time.time()
                normalize_channel(storage, chan, day)
                timings[f"normalize.{name}_seconds"] = round(time.time() - t0, 3)
            ready.append(name)
        except ReconError as exc:
            log.error("%s", exc.describe())
            result.failures[name] = exc
    if "reconcile" in stages:
        if not ready:
            log.error("date %s: no channel is ready; nothing reconciled, nothing published", day)
            return result
        try:
            from jobs.reconcile import reconcile_date
            from jobs.spark import get_spark

            spark = (spark_factory or get_spark)(settings)
            result.summary = reconcile_date(
                spark, storage, settings, day, ready, run_id=new_run_id(day),
                extra={"timings": timings, "failures": {k: v.describe() for k, v in result.failures.items()}})
        except ReconError as exc:
            log.error("%s", exc.describe())
            result.error = exc
    return result


def process_range(settings: Settings, days: list[dt.date], **kwargs) -> list[DateResult]:
    """Dates in order, each carrying from the previous one; stops at a date that published nothing."""
    results = []
    for day in days:
        res = process_date(settings, day, **kwargs)
        results.append(res)
        if res.summary is None and "reconcile" in kwargs.get("stages", STAGES):
            log.error("date %s published no result; stopping the backfill here (later dates would carry from "
                      "an older result). Fix it and re-run from %s.", day, day)
            break
    return results
