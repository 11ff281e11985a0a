"""The reconciliation job for one date: extract -> classify -> publish {root}/recon/{D}/.

Under spark-submit, use ``jobs/run.py reconcile --conf … --date …``.

Size: a little over the limit: extract, classify and publish of one date read best together; the
summary and its inputs list (``build_summary``) are the part to move out with the engine work on jobs/.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import re
import time

from core.dates import window_start
from core.errors import IntegrityError, UnavailableError
from core.settings import Settings
from core.storage import Storage, disk_error
from jobs.local_orders import OUT_OF_DAY
from reports.build import write_reports
from schemas import standard
from schemas.csvio import SPARK_CSV_WRITE_OPTIONS
from schemas.layout import is_published, is_reconciled, local_dir, recon_dir, standard_dir
from schemas.outputs import CORRECTION_ACTIONS, REJECT_COLUMNS, ROW_REJECTED, open_item_spark_schema

log = logging.getLogger(__name__)
DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")

DISCREPANCY_ORDER = ("channel", "category", "order_no", "refund_no", "source_file", "source_line", "local_time",
                     "channel_time", "local_amount", "channel_amount")
CORRECTION_ORDER = ("channel", "order_no", "refund_no", "action")
OPEN_ITEM_ORDER = ("channel", "side", "txn_type", "order_no", "refund_no", "source_file", "source_line",
                   "first_seen")


def previous_result(storage: Storage, day: dt.date) -> dt.date | None:
    """The latest reconciled date before ``day`` (whose open items ``day`` carries)."""
    earlier = sorted((n for n in storage.list("recon") if DATE_DIR.match(n) and n < day.isoformat()), reverse=True)
    for name in earlier:
        candidate = dt.date.fromisoformat(name)
        if is_reconciled(storage, candidate):
            return candidate
    return None


def write_single_csv(storage: Storage, df, order, folder: str, name: str) -> None:
    """Write ``df`` sorted as one CSV file ``folder/name`` (Spark writes, we rename its one part file)."""
    from jobs.read_errors import told

    parts_dir = posixpath.join(folder, f"_parts_{name}")
    with told(storage, file=storage.uri(parts_dir)):  # the inputs behind ``df`` are read now
        (df.repartition(1).sortWithinPartitions(*order)
           .write.mode("errorifexists").options(**SPARK_CSV_WRITE_OPTIONS).csv(storage.uri(parts_dir)))
    parts = [n for n in storage.list(parts_dir) if n.startswith("part-") and n.endswith(".csv")]
    if len(parts) != 1:
        raise IntegrityError(f"expected one part file for {name}, Spark wrote {len(parts)}", file=parts_dir)
    storage.move(posixpath.join(parts_dir, parts[0]), posixpath.join(folder, name))
    storage.delete(parts_dir)


def _money(value) -> str:
    from schemas.money import format_money
    from decimal import Decimal
    return format_money(value if value is not None else Decimal("0.00"))


def local_margin(settings: Settings) -> int:
    """Minutes around D an export's record may lie and still be D's: the largest cut-off window configured."""
    return max((c.cutoff_minutes for c in settings.channels.values()), default=30)


def _read_local(spark, storage: Storage, settings: Settings, day: dt.date, channels: list[str]):
    """Local orders of D (export files or a JDBC read); returns (frame, folder for errors, export files).

    An export's records are checked in the plan to lie within D and the cut-off margin around it
    (``jobs.local_orders``); the JDBC read takes exactly D.
    """
    from jobs.local_orders import local_export_files, read_local_orders

    cutoff = local_margin(settings)
    local = read_local_orders(spark, storage, settings.local_orders, day, cutoff, timezone=settings.timezone)
    if settings.local_orders.get("format", "csv") == "jdbc":
        return local, local_dir(day), []
    folder, files = local_export_files(storage, day)
    return local, folder, files


def reconcile_date(spark, storage: Storage, settings: Settings, day: dt.date, channels: list[str],
                   *, run_id: str, extra: dict | None = None, not_ready: list[str] | None = None,
                   publish: bool = True):
    """Reconcile D for ``channels`` (those with published standard records) and publish the result.

    ``publish=False`` (the cross-check of jobs/engines.py) leaves the result in a staging folder instead and
    returns (summary, that folder).

    Returns the summary written to summary.json.
    """
    from pyspark.sql import functions as F

    from jobs import transforms as tx

    started = time.time()
    d = day.isoformat()
    if publish:
        storage.recover("recon")  # leftovers of a killed run (we hold the run lock)
    available, missing = ready_channels(storage, day, channels, not_ready)

    # -- extract ---------------------------------------------------------------------------------------------
    std = read_standard(spark, storage, [(ch, day) for ch in available])
    local, local_folder, local_files = _read_local(spark, storage, settings, day, available)
    lookback = _lookback(storage, settings, day, available)
    std_folders = [standard_dir(ch, day) for ch in available] + [standard_dir(ch, d) for ch, d in lookback]
    _size_shuffle(spark, settings, storage, std_folders, [posixpath.join(local_folder, n) for n in local_files])
    in_scope = F.col("channel").isin(available)
    prev = previous_result(storage, day)
    if prev is not None and prev != day - dt.timedelta(days=1):
        log.warning("date %s: carrying open items from %s, the latest reconciled date (%s is missing)", d, prev,
                    day - dt.timedelta(days=1))
    item_schema = open_item_spark_schema()
    opening_check = None
    if prev is not None:  # today's opening is yesterday's published closing, checked before anything else
        opening = _read_open_items(spark, storage, prev, item_schema, day)
        opening_check = check_opening(storage, prev, opening, day)
    else:
        from jobs.inputs import empty_frame

        opening = empty_frame(spark, item_schema)

    # -- transform -------------------------------------------------------------------------------------------
    params = classify_params(settings, day, available)
    records = (tx.local_records(local, d, in_scope)
               .unionByName(tx.channel_records(std, d))
               .unionByName(tx.open_item_records(opening.filter(in_scope))))
    if lookback:  # what the orders of earlier dates were paid and refunded
        records = records.unionByName(tx.history_records(read_standard(spark, storage, lookback)))
    # One pass over everything: persist only what totals need for every record, plus the whole record for
    # the few that are listed, carried or broken (a full-width persist of every row costs more than the job).
    outcomes = tx.classify(records, params)
    slim = tx.slim_outcomes(outcomes).persist()
    kept = tx.listed_rows(slim).persist()  # one scan of ``slim`` for the few listed rows
    # ... with the details of their channel records (read by each of the three files below)
    rows = tx.with_details(kept, std).persist()
    try:
        from jobs.read_errors import told

        try:  # a bad input file, or a check of ours in the plan (F.raise_error): file, line, cause, what to do
            with told(storage, date=d):
                totals = [r.asDict() for r in tx.category_totals(slim).collect()]
            _phase("classified every record", started)
        except IntegrityError as error:
            if local_files and OUT_OF_DAY in error.message:  # the export holds another day's records: how many
                from jobs.local_orders import out_of_day_error

                raise out_of_day_error(spark, storage, settings.local_orders, day, local_margin(settings)) from None
            raise
        _check_not_empty(storage, settings, day, totals, local_folder, local_files)
        dups = [t for t in totals if t["category"] == tx.LOCAL_DUPLICATE_KEY]
        if dups:
            examples = (rows.filter(F.col("category") == tx.LOCAL_DUPLICATE_KEY)
                        .select("channel", "txn_type", "order_no", "refund_no").distinct()
                        .orderBy("channel", "order_no", "refund_no").limit(5).collect())
            listed = "; ".join(f"{r.channel} {r.txn_type} {r.order_no} {r.refund_no}".strip() for r in examples)
            raise IntegrityError(f"the local export lists the same key more than once (e.g. {listed})",
                                 date=d, file=storage.uri(local_folder),
                                 hint="fix the order system's export (one row per order and refund) and re-run")
        lost = rows.filter(F.col("_matches") != 1).select("channel", "order_no", "refund_no", "source_line",
                                                           "_matches").limit(5).collect()
        if lost:
            examples = "; ".join(f"{r.channel} {r.order_no} {r.refund_no} line {r.source_line}: {r._matches} found"
                                 for r in lost)
            raise IntegrityError(f"listed channel records were not found exactly once among the standard records "
                                 f"read for this date ({examples})", date=d,
                                 hint="the standard files changed during the run (a normalize ran at the same "
                                      "time?); re-run the reconcile")
        held_local = [{"channel": t["channel"], "records": t["records"], "amount": t["amount"]}
                      for t in totals if t["side"] == "HELD"]
        totals = [t for t in totals if t["side"] != "HELD"]
        held_items = opening.filter(~in_scope)

        # -- load --------------------------------------------------------------------------------------------
        staged = None
        try:
            staged = storage.staging("recon", d if publish else f"check-{d}")
            t0 = time.time()
            rejects = read_rejects(spark, storage, available, day, staged)
            write_single_csv(storage, tx.discrepancies(rows, d, rejects), DISCREPANCY_ORDER, staged,
                             "discrepancies.csv")
            storage.delete(staged, REJECTS_COPY)
            _phase("wrote discrepancies.csv", t0)
            t0 = time.time()
            write_single_csv(storage, tx.corrections(rows, d, _corrections_already(spark, storage, day)),
                             CORRECTION_ORDER, staged, "corrections.csv")
            carried_unchanged = held_items.withColumn(
                "age_days", F.datediff(F.lit(d), F.to_date("first_seen")).cast("int"))
            _phase("wrote corrections.csv", t0)
            t0 = time.time()
            closing = tx.open_items(rows).unionByName(carried_unchanged)
            write_single_csv(storage, closing, OPEN_ITEM_ORDER, staged, "open_items.csv")
            digests = {r["channel"]: r["digest"] for r in
                       closing.groupBy("channel").agg(tx.content_digest().alias("digest")).collect()}
            _phase("wrote open_items.csv", t0)
            t0 = time.time()
            held_item_rows = carried_unchanged.groupBy("channel").agg(
                F.count(F.lit(1)).alias("records"), F.sum("amount").alias("amount")).collect()
            summary = build_summary(
                storage, settings, day, run_id=run_id, totals=totals, available=available, missing=missing,
                held_local=held_local, held_items=held_item_rows, previous=prev, opening_check=opening_check,
                closing_digests=digests,
                local_files=[posixpath.join(local_folder, n) for n in local_files], extra=extra or {},
                reconcile_seconds=round(time.time() - started, 3))
            _phase("built summary.json", t0)
            if not finish(storage, staged, day, summary, engine="spark", publish=publish):
                return summary, staged
        except BaseException as exc:
            if staged is not None:
                _discard(storage, staged)
            error = disk_error(exc, writing=f"the result of {d} under {storage.uri('recon')}", date=d,
                               file=storage.uri(staged) if staged else None) if isinstance(exc, OSError) else None
            if error is None:
                raise
            log.debug("the write behind %s", error.message, exc_info=exc)
            raise error from None
    finally:
        rows.unpersist()
        kept.unpersist()
        slim.unpersist()
    log.info("date %s: published %s", d, storage.uri(recon_dir(day)))
    return summary


def ready_channels(storage: Storage, day: dt.date, channels: list[str], not_ready: list[str] | None):
    """(the channels with published standard records for D, the others and ``not_ready``); UnavailableError
    when none is ready (both engines)."""
    available = [ch for ch in channels if is_published(storage, ch, day)]
    missing = sorted(set(not_ready or []) | {ch for ch in channels if ch not in available})
    if not available:
        raise UnavailableError("no channel has published standard records for this date; nothing to reconcile",
                               date=day.isoformat(), hint="run `recon download` and `recon normalize` first")
    return available, missing


def columnar_copies(storage: Storage, folder: str) -> list[str] | None:
    """The Parquet copies of a standard folder's files (paths), when the manifest lists one with the right row
    count for every file and each exists; else None (read the CSV, which stays the published contract)."""
    files = storage.read_json(folder, "_manifest.json").get("files", [])
    copies = [posixpath.join(folder, f["columnar_file"]) for f in files
              if f.get("columnar_file") and f.get("columnar_rows") == f.get("records")]
    if files and len(copies) == len(files) and all(storage.is_file(c) for c in copies):
        return copies
    return None


def classify_params(settings: Settings, day: dt.date, available: list[str]):
    """The classification's parameters for D's reconciled channels (both engines)."""
    from jobs.rules import ChannelRules, ClassifyParams

    return ClassifyParams(
        day=day.isoformat(), max_carry_days=settings.max_carry_days,
        window_starts={ch: window_start(day, settings.channels[ch].cutoff_minutes) for ch in available},
        rules={ch: ChannelRules(cutoff_minutes=settings.channels[ch].cutoff_minutes,
                                fee_rate=settings.channels[ch].fee_rate,
                                fee_tolerance=settings.channels[ch].fee_tolerance,
                                fee_rounding=settings.channels[ch].fee_rounding) for ch in available},
    )


def checksums_aside(storage: Storage, paths: list[str]):
    """A future of {path: (sha256, size)} of ``paths``, computed in a thread (hashlib lets go of the GIL): an
    engine starts it where it has a core to spare and hands it to ``build_summary``."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksums")
    try:
        return pool.submit(lambda: {p: storage.sha256(p) for p in paths})
    finally:
        pool.shutdown(wait=False)


def finish(storage: Storage, staged: str, day: dt.date, summary: dict, *, engine: str, publish: bool) -> bool:
    """Complete a staged result (both engines): summary.json, report.html and report.xlsx (inside the atomic
    publish), _SUCCESS; then swap it in when ``publish`` (returns True) or leave it staged (False)."""
    summary["engine"] = engine
    storage.write_json(summary, staged, "summary.json")
    t0 = time.time()
    write_reports(storage, staged, day)
    _phase("wrote report.html and report.xlsx", t0)
    storage.write_bytes(b"", staged, "_SUCCESS")
    if publish:
        storage.swap_in(staged, recon_dir(day))
    return publish


def _size_shuffle(spark, settings: Settings, storage: Storage, std_folders: list[str], local_files: list[str]):
    """Size the classification's shuffle to the input, today's and the lookback dates' standard files and the
    local export (``jobs.spark.shuffle_partitions``).

    Left alone when the conf's [spark] table or the session (spark-submit --conf) set the number.
    """
    from jobs.spark import DEFAULTS, shuffle_partitions

    key, ours = "spark.sql.shuffle.partitions", "recon.shuffle.partitions.sized"
    if key in settings.spark or (spark.conf.get(key) != DEFAULTS[key] and spark.conf.get(ours, "") != "true"):
        return
    total = sum(storage.size(f) for f in local_files)
    for folder in std_folders:
        total += sum(storage.size(folder, n) for n in storage.list(folder) if not n.startswith(("_", ".")))
    if not local_files:  # a JDBC read: about as many local records as channel records, at a third of the bytes
        total += total // 3
    partitions = shuffle_partitions(total, spark.sparkContext.defaultParallelism)
    log.info("input %.0f MB: %d shuffle partitions", total / 2**20, partitions)
    spark.conf.set(key, str(partitions))
    spark.conf.set(ours, "true")  # the next date of a backfill sizes again


def _phase(what: str, since: float) -> None:
    log.info("%s in %.2f s", what, time.time() - since)


def _lookback(storage: Storage, settings: Settings, day: dt.date, channels: list[str]) -> list[tuple[str, dt.date]]:
    """The published (channel, date) standard folders of the ``refund_lookback_days`` dates before D."""
    return [(ch, day - dt.timedelta(days=k)) for k in range(1, settings.refund_lookback_days + 1)
            for ch in channels if is_published(storage, ch, day - dt.timedelta(days=k))]


def read_standard(spark, storage: Storage, published: list[tuple[str, dt.date]]):
    """The standard records of the given (channel, date) folders.

    Read from the Parquet copy the normalizer publishes beside each standard CSV (``_columnar/``, listed in
    ``_manifest.json``) when every file of the folder has one with the manifest's row count; otherwise from
    the CSV, which stays the published contract. Both give the same rows (tests/normalizers check).
    """
    from jobs import inputs

    columnar, csv_groups = [], {}
    for ch, d in published:
        folder = standard_dir(ch, d)
        copies = columnar_copies(storage, folder)
        if copies is not None:
            columnar.extend(storage.uri(c) for c in copies)
        else:  # by header name, LF or CRLF, with or without a BOM (jobs/inputs.py)
            groups = inputs.group_by_header(
                storage, inputs.data_files(storage, folder), standard.COLUMNS, what="a standard file",
                date=d.isoformat(), channel=ch,
                hint=f"standard files are written by `recon normalize`: re-run it for channel {ch} and date {d}")
            for header, uris in groups.items():
                csv_groups.setdefault(header, []).extend(uris)
    schema = standard.spark_schema()
    frames = ([spark.read.schema(schema).parquet(*columnar)] if columnar else []) + \
             ([inputs.read_groups(spark, csv_groups, schema)] if csv_groups else [])
    df = frames[0]
    for more in frames[1:]:
        df = df.unionByName(more)
    return df


REJECTS_COPY = "_rejects_read"  # in the staging folder: the copies read_rejects gives Spark, deleted after use


def read_rejects(spark, storage: Storage, channels: list[str], day: dt.date, staged: str):
    """The rejected statement rows of D's published channels (their ``_rejects.csv``), or None when there are
    none; each becomes a CHANNEL_ROW_REJECTED row. The manifest says which folders have any.

    Spark skips a file whose name starts with "_" even when it is named explicitly (that is what hides
    ``_rejects.csv`` from the read of the standard folder), so each is copied, byte for byte, into the staging
    folder under a plain name and read from there; the caller deletes the copies.
    """
    from pyspark.sql import types as T

    from jobs import inputs

    paths = []
    for ch in channels:
        folder = standard_dir(ch, day)
        if any(f.get("rejects") for f in storage.read_json(folder, "_manifest.json")["files"]):
            copy = posixpath.join(staged, REJECTS_COPY, f"{ch}.csv")
            storage.copy(posixpath.join(folder, "_rejects.csv"), copy)
            paths.append(copy)
    if not paths:
        return None
    schema = T.StructType([T.StructField(n, T.LongType() if n == "source_line" else T.StringType())
                           for n in REJECT_COLUMNS])
    return inputs.read_csv(spark, storage, paths, schema, what="the rejected rows of the standard folders",
                           date=day.isoformat(), hint="re-run `recon normalize` for this date")


APPLIED_DIR = "corrections/applied"


def rerun_hint(prev: dt.date, day: dt.date) -> str:
    """What to do when the result ``day`` carries from (``prev``) is damaged or missing."""
    return (f"a published result must not be edited: restore it from a copy, or re-run the reconcile of {prev} "
            f"(recon run --date {prev} --cascade), then re-run {day}")


def opening_file(storage: Storage, prev: dt.date, day: dt.date | None = None) -> str:
    """The open_items.csv ``prev`` published (relative to the root).

    A published date without its open_items.csv is an integrity failure (exit 4): the chain of open items is
    broken, and carrying nothing would lose them without a word (its summary.json: ``previous_closing``).
    """
    folder = recon_dir(prev)
    if not storage.is_file(folder, "open_items.csv"):
        raise IntegrityError(f"the result published for {prev} (it has _SUCCESS) has no open_items.csv: the open "
                             f"items carried to {day or 'the next date'} cannot be known",
                             date=(day or prev).isoformat(), file=storage.uri(folder, "open_items.csv"),
                             hint=rerun_hint(prev, day or prev + dt.timedelta(days=1)))
    return posixpath.join(folder, "open_items.csv")


def _read_open_items(spark, storage: Storage, prev: dt.date, item_schema, day: dt.date | None = None):
    """The open items ``prev`` published (its open_items.csv), matched by header name (jobs/inputs.py)."""
    from jobs import inputs

    path = opening_file(storage, prev, day)
    return inputs.read_csv(spark, storage, [path], item_schema, what=f"open_items.csv published for {prev}",
                           date=prev.isoformat(), hint=rerun_hint(prev, day or prev + dt.timedelta(days=1)))


def previous_closing(storage: Storage, prev: dt.date, day: dt.date) -> tuple[dict | None, dict]:
    """({channel: {"records", "amount", "digest"}} or None, {"records", "amount"} total) of ``prev``'s closing,
    from its summary.json. None per channel for a summary written before closings were recorded per channel;
    a digest of None for one written before the items' content was recorded."""
    from decimal import Decimal, InvalidOperation

    path = storage.uri(recon_dir(prev), "summary.json")
    try:
        summary = storage.read_json(recon_dir(prev), "summary.json")
        total = summary["roll_forward"]["closing"]
        total = {"records": int(total["records"]), "amount": Decimal(total["amount"])}
        per = summary.get("roll_forward_by_channel")
        if per is not None:  # the digest of the items' content: recorded since it was added (else None)
            per = {ch: {"records": int(v["closing"]["records"]), "amount": Decimal(v["closing"]["amount"]),
                        "digest": v["closing"].get("digest")}
                   for ch, v in per.items()}
    except FileNotFoundError:
        raise IntegrityError(f"the result published for {prev} has no summary.json", date=day.isoformat(),
                             file=path, hint=rerun_hint(prev, day)) from None
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation, UnicodeDecodeError) as exc:
        raise IntegrityError(f"summary.json published for {prev} cannot be read for its closing open items "
                             f"({type(exc).__name__}: {str(exc)[:120]})", date=day.isoformat(), file=path,
                             hint=rerun_hint(prev, day)) from None
    return per, total


def check_opening(storage: Storage, prev: dt.date, opening, day: dt.date) -> dict:
    """Today's opening (``prev``'s open_items.csv, as read) must equal ``prev``'s published closing (its
    summary.json), count, amount and content digest per channel; else IntegrityError (exit 4), before anything
    is classified.

    One small aggregate of open_items.csv (the few open items, not the day's records); a file Spark cannot
    parse fails here too, with its line. A summary written before closings were per channel is compared on
    its total. Returns what was checked, for summary.json.
    """
    from pyspark.sql import functions as F

    from jobs.read_errors import told
    from jobs.transforms import content_digest

    d = day.isoformat()
    items = storage.uri(recon_dir(prev), "open_items.csv")
    with told(storage, date=d, file=items, hint=rerun_hint(prev, day)):
        rows = opening.groupBy("channel").agg(F.count(F.lit(1)).alias("records"), F.sum("amount").alias("amount"),
                                              content_digest().alias("digest")).collect()
    found = {r["channel"] or "": {"records": r["records"], "amount": r["amount"], "digest": r["digest"]}
             for r in rows}
    return compare_opening(storage, prev, found, day)


def compare_opening(storage: Storage, prev: dt.date, found: dict[str, dict], day: dt.date) -> dict:
    """Check today's opening as read (``found``: channel -> records, amount, digest) against ``prev``'s
    published closing; IntegrityError (exit 4) when they differ. Returns what was checked, for summary.json."""
    from decimal import Decimal

    d = day.isoformat()
    items = storage.uri(recon_dir(prev), "open_items.csv")
    zero = Decimal("0.00")
    found = {ch: dict(v, amount=v["amount"] or zero) for ch, v in found.items()}
    per, total = previous_closing(storage, prev, day)
    if per is None:
        expected = {"(all channels)": total}
        found = {"(all channels)": {"records": sum(v["records"] for v in found.values()),
                                    "amount": sum((v["amount"] for v in found.values()), zero)}}
    else:
        expected = {ch: v for ch, v in per.items() if v["records"] or v["amount"]}
    off = []
    for ch in sorted(set(found) | set(expected)):
        f = found.get(ch, {"records": 0, "amount": zero})
        e = expected.get(ch, {"records": 0, "amount": zero})
        if f["records"] != e["records"] or f["amount"] != e["amount"]:
            off.append(f"{ch}: {f['records']} items / {_money(f['amount'])} in open_items.csv, "
                       f"{e['records']} / {_money(e['amount'])} in summary.json")
        elif e.get("digest") is not None and f.get("digest") != e["digest"]:
            off.append(f"{ch}: {f['records']} items / {_money(f['amount'])} as in summary.json, but their content "
                       f"is not what {prev} wrote (a value cut or changed)")
    if off:
        raise IntegrityError(
            f"the open items {prev} published do not add up to its closing, so {d} cannot open with them "
            f"({'; '.join(off)}; summary.json {storage.uri(recon_dir(prev), 'summary.json')})",
            date=d, file=items, hint=rerun_hint(prev, day))
    return {"date": prev.isoformat(), "by": "total" if per is None else "channel"}


def _check_not_empty(storage: Storage, settings: Settings, day: dt.date, totals: list[dict], folder: str, files: list[str]) -> None:
    """An export without a single record while today's statements have some is refused (exit 4), unless
    ``[local_orders] allow_empty = true`` says such a day is expected."""
    local = sum(t["records"] for t in totals if t["side"] in ("LOCAL", "HELD") and not t["carried"])
    channel = sum(t["records"] for t in totals if t["side"] == "CHANNEL" and not t["carried"])
    if local or not channel or settings.local_orders.get("allow_empty"):
        return
    if not files:  # the read replica (JDBC) returned no row of D
        from jobs.local_jdbc import describe_source

        raise IntegrityError(f"{describe_source(settings.local_orders)} has no local order of this date while the "
                             f"channels' statements have {channel}", date=day.isoformat(),
                             hint="check that local_orders.table / query reads the order system's current data "
                                  "(a replica that stopped replicating?) and re-run; if no order is expected on "
                                  "such a day, set allow_empty = true in [local_orders]")
    raise IntegrityError(f"the local orders export has no records while the channels' statements have {channel} "
                         f"for this date ({', '.join(files)})", date=day.isoformat(),
                         file=storage.uri(posixpath.join(folder, files[0]) if len(files) == 1 else folder),
                         hint="put the order system's export of this date there and re-run; if no order is "
                              "expected on such a day, set allow_empty = true in [local_orders]")


def _discard(storage: Storage, staged: str) -> None:
    """Delete a staging folder of a failed run; a failure to do so (a read-only disk) is only logged: the next
    run under the lock removes it (Storage.recover)."""
    try:
        storage.delete(staged)
    except OSError as exc:
        log.warning("could not remove %s (%s); the next run removes it", storage.uri(staged), exc)


def corrections_already_paths(storage: Storage, day: dt.date) -> list[str]:
    """The files whose idempotency keys are never emitted again: corrections.csv of earlier reconciled dates
    and the ledgers of `recon apply-fixes`."""
    emitted = [posixpath.join(recon_dir(dt.date.fromisoformat(n)), "corrections.csv")
               for n in storage.list("recon") if DATE_DIR.match(n) and n < day.isoformat()
               and is_reconciled(storage, dt.date.fromisoformat(n))]
    return emitted + [posixpath.join(APPLIED_DIR, n) for n in storage.list(APPLIED_DIR) if n.endswith(".csv")]


ALREADY_WHAT = "a file of corrections already made"
ALREADY_HINT = "restore the file (a published result or the ledger of `recon apply-fixes`), then re-run"


def _corrections_already(spark, storage: Storage, day: dt.date):
    """Idempotency keys emitted on an earlier date or recorded as applied: never emitted again."""
    from jobs import inputs

    # two kinds of file: each read by its own header (LF or CRLF, with or without a BOM)
    return inputs.read_column(spark, storage, corrections_already_paths(storage, day), "idempotency_key",
                              what=ALREADY_WHAT, date=day.isoformat(), hint=ALREADY_HINT)


def build_summary(storage: Storage, settings: Settings, day: dt.date, *, run_id: str, totals: list[dict],
                  available: list[str], missing: list[str], held_local, held_items, previous, local_files,
                  extra: dict, reconcile_seconds: float, opening_check: dict | None = None,
                  closing_digests: dict[str, str] | None = None, checksums=None) -> dict:
    """summary.json: counts and amounts per channel and category, control totals, roll-forward, inputs.
    ``checksums``: the local files' (sha256, size) as ``checksums_aside`` computes them, else computed here."""
    from decimal import Decimal

    from jobs.transforms import CARRIED_CATEGORIES as carried_categories  # what open_items.csv carries

    zero = Decimal("0.00")
    by_channel: dict[str, dict] = {}
    terms = ("opening", "new", "cleared", "closing")
    roll = {k: {"records": 0, "amount": zero} for k in terms}
    roll_by_channel: dict[str, dict] = {}  # the same per channel: D+1 checks its opening against "closing"

    def rolls(channel):
        return roll, roll_by_channel.setdefault(channel, {k: {"records": 0, "amount": zero} for k in terms})
    for ch in available:
        by_channel[ch] = {"categories": {}, "local": {"records": 0, "amount": zero},
                          "channel": {"records": 0, "amount": zero}, "discrepancy_rows": 0, "corrections": 0}
    for t in sorted(totals, key=lambda t: (t["channel"], t["category"], t["side"], t["carried"])):
        ch = by_channel.setdefault(t["channel"], {"categories": {}, "local": {"records": 0, "amount": zero},
                                                  "channel": {"records": 0, "amount": zero},
                                                  "discrepancy_rows": 0, "corrections": 0})
        side = "local" if t["side"] == "LOCAL" else "channel"
        amount = t["amount"] or zero
        cat = ch["categories"].setdefault(t["category"], {"local": {"records": 0, "amount": zero},
                                                          "channel": {"records": 0, "amount": zero}, "rows": 0})
        cat[side]["records"] += t["records"]
        cat[side]["amount"] += amount
        cat["rows"] += t["rows"]
        ch[side]["records"] += t["records"]
        ch[side]["amount"] += amount
        if side == "channel" and not t["carried"]:  # the fees of today's statement
            ch["fees"] = ch.get("fees", zero) + (t.get("fee") or zero)
        ch["discrepancy_rows"] += t["rows"]
        if t["category"] in CORRECTION_ACTIONS:
            ch["corrections"] += t["rows"]
        for r in rolls(t["channel"]):
            if t["carried"]:
                _add(r["opening"], t["records"], amount)
            if t["category"] in carried_categories:
                _add(r["closing"], t["records"], amount)
                if not t["carried"]:
                    _add(r["new"], t["records"], amount)
    for h in held_items:
        for r in rolls(h["channel"]):
            _add(r["opening"], h["records"], h["amount"] or zero)
            _add(r["closing"], h["records"], h["amount"] or zero)
    for ch in available:
        rolls(ch)
    for r in (roll, *roll_by_channel.values()):
        r["cleared"]["records"] = r["opening"]["records"] + r["new"]["records"] - r["closing"]["records"]
        r["cleared"]["amount"] = r["opening"]["amount"] + r["new"]["amount"] - r["closing"]["amount"]
    for ch, r in roll_by_channel.items():  # what D+1 checks the content of open_items.csv against
        r["closing"]["digest"] = (closing_digests or {}).get(ch, "0")

    inputs, control = [], {}
    for ch in available:
        manifest = storage.read_json(standard_dir(ch, day), "_manifest.json")
        control[ch] = manifest["files"]
        rejected = sum(f["rejects"] for f in manifest["files"])
        by_channel[ch]["rejects"] = rejected
        # the statement's totals were checked against rows of which some are not standard records
        by_channel[ch]["statement_totals"] = "unverified" if rejected else "verified"
        if rejected:  # listed from _rejects.csv (read_rejects): no standard record, so no records or amounts
            by_channel[ch]["categories"][ROW_REJECTED] = {"local": {"records": 0, "amount": zero},
                                                          "channel": {"records": 0, "amount": zero},
                                                          "rows": rejected}
            by_channel[ch]["discrepancy_rows"] += rejected
        by_channel[ch]["control_totals"] = [
            {"source_file": f["source_file"], **f["control_totals"]} for f in manifest["files"]]
        for f in manifest["files"]:
            inputs.append({"kind": "statement", "channel": ch, "file": storage.uri("raw", ch, day.isoformat(),
                                                                                   f["source_file"]),
                           "sha256": f["raw_sha256"]})
    known = checksums.result() if checksums is not None else {}
    for path in local_files:
        sha, size = known[path] if path in known else storage.sha256(path)
        inputs.append({"kind": "local_orders", "file": storage.uri(path), "sha256": sha, "size": size})
    if previous is not None:
        sha, size = storage.sha256(recon_dir(previous), "open_items.csv")
        inputs.append({"kind": "open_items", "file": storage.uri(recon_dir(previous), "open_items.csv"),
                       "sha256": sha, "size": size})

    def plain(obj):
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [plain(v) for v in obj]
        if isinstance(obj, Decimal):
            return _money(obj)
        return obj

    return plain({
        "date": day.isoformat(),
        "run_id": run_id,
        "conf": settings.conf_file,
        "channels": by_channel,
        "channels_reconciled": available,
        "channels_not_available": missing,
        "not_reconciled": {
            "local_orders": {r["channel"]: {"records": r["records"], "amount": r["amount"] or zero}
                             for r in held_local},
            "open_items_carried_unchanged": {r["channel"]: {"records": r["records"], "amount": r["amount"] or zero}
                                             for r in held_items},
        },
        "roll_forward": roll,
        "roll_forward_by_channel": dict(sorted(roll_by_channel.items())),
        "carried_from": previous.isoformat() if previous else None,
        # the previous date's published closing that today's opening was checked against (count and amount
        # per channel, or in total against a summary without per-channel closings), before classifying
        "opening_checked_against": opening_check["date"] if opening_check else None,
        "opening_checked_by": opening_check["by"] if opening_check else None,
        "inputs": inputs,
        "timings": {**extra.get("timings", {}), "reconcile_seconds": reconcile_seconds},
        "failures": extra.get("failures", {}),
    })


def _add(bucket: dict, records: int, amount) -> None:
    bucket["records"] += records
    bucket["amount"] += amount
