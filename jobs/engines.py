"""Which engine reconciles a date (``[engine] kind``), and the cross-check by the other one
(``[engine] compare_with``).

Both engines read the same inputs and must publish the same bytes. The cross-check is for a migration from one
engine to the other, and for the test suite (which sets ``RECON_ENGINE_COMPARE_WITH``): after the chosen engine
publishes, the other reconciles the same inputs into a staging folder, and any data file that differs fails
the date (exit 4) naming the files and the first differing line; the published result stays.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Callable

from core.errors import IntegrityError
from core.settings import Settings
from core.storage import Storage
from schemas.layout import recon_dir

log = logging.getLogger(__name__)
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")
VOLATILE = ("run_id", "timings", "engine")  # summary.json keys that name the run, not the result


def engine_kind(settings: Settings) -> str:
    """The engine that reconciles: ``[engine] kind`` (or ``--engine``); ``auto`` (the default) is DuckDB on one
    machine, a local root and a local Spark master (or none), and Spark otherwise: an hdfs:// root, a cluster
    master, and every run under spark-submit (jobs/run.py)."""
    kind = settings.engine.get("kind", "auto")
    if kind != "auto":
        return kind
    master = settings.spark.get("spark.master", "local[*]")
    local_root = settings.root.startswith("file:")
    return "duckdb" if local_root and master.startswith("local") else "spark"


def reconcile(settings: Settings, storage: Storage, day: dt.date, channels: list[str], *, run_id: str,
              extra: dict, not_ready: list[str], spark_factory: Callable | None = None) -> dict:
    """Reconcile and publish D with the configured engine (then cross-check it); returns the summary."""
    kind = engine_kind(settings)
    summary = _run(kind, settings, storage, day, channels, run_id=run_id, extra=extra, not_ready=not_ready,
                   spark_factory=spark_factory)
    other = settings.engine.get("compare_with", "")
    if other == "other":
        other = "spark" if kind == "duckdb" else "duckdb"
    if other and other != kind and _can_run(other, storage):
        _cross_check(other, settings, storage, day, channels, run_id=run_id, extra=extra, not_ready=not_ready,
                     spark_factory=spark_factory)
    return summary


def _can_run(kind: str, storage: Storage) -> bool:
    """DuckDB reads a local root only: a cross-check of an hdfs:// result is skipped (logged)."""
    import pyarrow.fs as pafs

    if kind == "duckdb" and not isinstance(storage.fs, pafs.LocalFileSystem):
        log.info("cross-check by DuckDB skipped: %s is not a local root", storage.root_uri)
        return False
    return True


def _run(kind: str, settings, storage, day, channels, *, publish: bool = True, spark_factory=None, **kwargs):
    if kind == "duckdb":
        from jobs.duck.reconcile import reconcile_date

        return reconcile_date(storage, settings, day, channels, publish=publish, **kwargs)
    from jobs.reconcile import reconcile_date
    from jobs.spark import get_spark

    spark = (spark_factory or get_spark)(settings)
    return reconcile_date(spark, storage, settings, day, channels, publish=publish, **kwargs)


def _cross_check(kind: str, settings, storage: Storage, day: dt.date, channels, **kwargs) -> None:
    from core.errors import ReconError

    try:
        _, staged = _run(kind, settings, storage, day, channels, publish=False, **kwargs)
    except ReconError as exc:  # the published result stays; the date fails, saying which engine refused
        raise IntegrityError(f"the {kind} engine's cross-check of the published result failed: {exc.message}",
                             date=day.isoformat(), file=exc.file, line=exc.line,
                             hint="the two engines disagree on these inputs: keep the published result, report "
                                  "it with the inputs, and set [engine] compare_with = \"\" to go on meanwhile"
                             ) from exc
    try:
        final = recon_dir(day)
        off = [name for name in DATA_FILES if storage.read_bytes(final, name) != storage.read_bytes(staged, name)]
        if comparable(storage.read_json(final, "summary.json")) != comparable(storage.read_json(staged, "summary.json")):
            off.append("summary.json")
        if off:
            first = first_difference(storage, final, staged, off[0])
            raise IntegrityError(f"the {kind} engine's result differs from the published one in {', '.join(off)} "
                                 f"({first})", date=day.isoformat(), file=storage.uri(final, off[0]),
                                 hint="the two engines disagree: keep the published result, report the difference "
                                      "with both files, and set [engine] compare_with = \"\" to go on meanwhile")
        log.info("date %s: the %s engine gives the same result", day, kind)
    finally:
        storage.delete(staged)


def comparable(summary: dict) -> dict:
    """summary.json without what names the run rather than the result."""
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def first_difference(storage: Storage, a: str, b: str, name: str) -> str:
    if name == "summary.json":
        left, right = (json.dumps(comparable(storage.read_json(f, name)), indent=1, sort_keys=True).splitlines()
                       for f in (a, b))
    else:
        left, right = (storage.read_bytes(f, name).decode("utf-8", "replace").splitlines() for f in (a, b))
    for i, (x, y) in enumerate(zip(left, right), 1):
        if x != y:
            return f"line {i}: {x[:200]!r} vs {y[:200]!r}"
    return f"{len(left)} lines vs {len(right)} lines"
