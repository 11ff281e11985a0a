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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from connectors.landing import land, mark_for_refetch
from core.errors import IntegrityError, ReconError, combined_exit_code
from core.storage import Storage, disk_error
from normalizers.publish import normalize_channel
from recon.config import Settings

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
    d = day.isoformat()
    timings: dict[str, float] = {}
    if "download" in stages:
        # Channels download concurrently: one slow or failing server delays nobody else.
        def download(name):
            t0 = time.time()
            land(storage, settings.channels[name], day, work_dir=settings.work_dir, timezone=settings.timezone,
                 force=force_download)
            return round(time.time() - t0, 3)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names))), thread_name_prefix="download") as pool:
            futures = {name: pool.submit(download, name) for name in names}
            for name, future in futures.items():
                try:
                    timings[f"download.{name}_seconds"] = future.result()
                except Exception as exc:  # noqa: BLE001 - one channel's failure must not stop the others
                    result.failures[name] = _as_recon_error(exc, name, day, writing=storage.uri("raw", name, d))
    ready = []
    for name in names:
        if name in result.failures:
            continue
        if "normalize" in stages:
            try:
                t0 = time.time()
                normalize_channel(storage, settings.channels[name], day)
                timings[f"normalize.{name}_seconds"] = round(time.time() - t0, 3)
            except IntegrityError as exc:
                result.failures[name] = _as_recon_error(_refetch_damaged(storage, exc, name, day), name, day)
                continue
            except Exception as exc:  # noqa: BLE001
                result.failures[name] = _as_recon_error(exc, name, day, writing=storage.uri("standard", name, d))
                continue
        ready.append(name)
    if "reconcile" in stages:
        if not ready:
            log.error("date %s: no channel is ready; nothing reconciled, nothing published", day)
            return result
        try:
            from jobs.engines import reconcile

            result.summary = reconcile(
                settings, storage, day, ready, run_id=new_run_id(day), not_ready=sorted(result.failures),
                extra={"timings": timings, "failures": {k: v.describe() for k, v in result.failures.items()}},
                spark_factory=spark_factory)
        except ReconError as exc:
            log.error("%s", exc.describe())
            result.error = exc
        except OSError as exc:  # a full or read-only disk outside the publish (e.g. removing leftovers)
            error = disk_error(exc, writing=f"under {storage.uri('recon')}", date=day.isoformat())
            if error is None:
                raise
            log.error("%s", error.describe())
            result.error = error
    return result


def _refetch_damaged(storage: Storage, exc: IntegrityError, channel: str, day: dt.date) -> IntegrityError:
    """A landed statement normalize found damaged (truncated, totals off) is marked so the next run downloads
    it again instead of reusing it, and the message says so: "download the statement again" must not be
    advice a plain re-run silently ignores."""
    mark_for_refetch(storage, channel, day, exc.message)
    exc.hint = ((exc.hint + "; ") if exc.hint else "") + (
        f"the landed copy is marked damaged: the next `recon run` or `recon download` downloads it again "
        f"(now: recon download --date {day.isoformat()} --channel {channel} --force-download)")
    exc.args = (exc.describe(),)
    return exc


def _as_recon_error(exc: Exception, channel: str, day: dt.date, writing: str | None = None) -> ReconError:
    """Log a channel's failure and return it as a ReconError (unexpected errors become exit 1)."""
    if isinstance(exc, ReconError):
        log.error("%s", exc.describe())
        return exc
    disk = disk_error(exc, writing=writing or f"the {channel} files of {day}", channel=channel,
                      date=day.isoformat(), file=writing)
    if disk is not None:  # a full or read-only disk: said in words, no traceback
        log.debug("the write behind %s", disk.message, exc_info=exc)
        log.error("%s", disk.describe())
        return disk
    log.exception("channel %s date %s: unexpected failure", channel, day)
    return ReconError(f"unexpected {type(exc).__name__}: {exc}", channel=channel, date=day.isoformat(),
                      hint="this is a bug or an unforeseen condition; the log above has the traceback")


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
