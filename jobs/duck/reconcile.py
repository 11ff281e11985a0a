"""The reconciliation of one date on DuckDB: extract -> classify -> publish {root}/recon/{D}/, in one process.

The same inputs, rules, checks and outputs as jobs/reconcile.py (Spark); what is shared lives there and in
jobs/rules.py, and this module holds only how DuckDB reads, runs and writes. ``[engine]`` in the pipeline conf
sets DuckDB's ``memory_limit``, ``threads`` and the spill folder (``spill_dir``, default ``{work_dir}/duckdb``):
a day larger than memory spills there instead of failing. ``database`` says where DuckDB keeps the tables it
reads the inputs into: ``memory`` (fastest while they fit), ``file`` (a database file in the spill folder,
compressed, removed after the run: a day several times the memory limit spills a fraction of what memory tables
would) or ``auto`` (file when ``INPUT_EXPANSION`` times the inputs' bytes passes the memory limit).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import threading
import time

from core.errors import IntegrityError, UnavailableError
from core.settings import Settings
from core.storage import Storage, disk_error
from jobs import reconcile as shared
from jobs.duck import read
from jobs.duck.expressions import lit
from jobs.duck.write import texts, write_csv
from jobs.rules import CARRIED_CATEGORIES, LOCAL_DUPLICATE_KEY
from jobs.sparkhash import content_digest, xxhash64
from schemas import standard
from schemas.layout import recon_dir, standard_dir
from schemas.outputs import (CORRECTION_ACTIONS, CORRECTION_COLUMNS, DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS,
                             RESOLUTIONS, ROW_REJECTED)

log = logging.getLogger(__name__)


# Peak memory of a reconcile held in memory, per byte of its input files (standard Parquet or CSV and the export):
# 6.0 GB for 1.7 GB at 10M keys (BENCHMARKS.md), rounded up.
INPUT_EXPANSION = 4


def connect(settings: Settings, input_bytes: int = 0):
    """A DuckDB connection with the conf's memory limit, threads and spill folder: its tables in memory, or in a
    database file in the spill folder (``[engine] database``, see the module docstring), removed by ``close``."""
    import duckdb

    engine = getattr(settings, "engine", None) or {}
    spill = engine.get("spill_dir") or os.path.join(settings.work_dir or ".", "duckdb")
    os.makedirs(spill, exist_ok=True)
    config = {"temp_directory": spill, "preserve_insertion_order": False}
    if engine.get("memory_limit"):
        config["memory_limit"] = engine["memory_limit"]
    if engine.get("threads"):
        config["threads"] = int(engine["threads"])
    database = engine.get("database", "auto")
    if database == "auto":
        database = "file" if input_bytes * INPUT_EXPANSION > memory_limit_bytes(engine) else "memory"
    if database == "memory":
        return duckdb.connect(":memory:", config=config)
    path = os.path.join(spill, f"recon-{os.getpid()}.duckdb")
    _remove(path)  # a killed run's (the run lock is ours)
    log.info("DuckDB keeps the inputs' tables in %s (%.1f GB of input files)", path, input_bytes / 1e9)
    return _FileDatabase(duckdb.connect(path, config=config), path)


def memory_limit_bytes(engine: dict) -> int:
    """DuckDB's memory limit in bytes: ``[engine] memory_limit`` (recon.config parses it), else DuckDB's
    default, 80% of the RAM."""
    if engine.get("memory_limit_bytes"):
        return engine["memory_limit_bytes"]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 4 // 5


class _FileDatabase:
    """A connection to a database file that is removed (with its WAL) when the connection is closed."""

    def __init__(self, con, path: str):
        self._con, self.path = con, path

    def __getattr__(self, name):
        return getattr(self._con, name)

    def close(self) -> None:
        self._con.close()
        _remove(self.path)


def _remove(path: str) -> None:
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)


def _input_bytes(storage: Storage, day: dt.date, channels: list[str]) -> int:
    """The bytes of D's input files: the standard folders' Parquet copies (else CSV files) and the local export."""
    from jobs import inputs
    from jobs.local_orders import local_export_files

    paths = []
    for ch in channels:
        folder = standard_dir(ch, day)
        paths += shared.columnar_copies(storage, folder) or inputs.data_files(storage, folder)
    try:
        folder, names = local_export_files(storage, day)
        paths += [posixpath.join(folder, n) for n in names]
    except UnavailableError:  # no export (a replica, or a missing one: the read says so in its own words)
        pass
    return sum(storage.size(p) for p in paths)


def reconcile_date(storage: Storage, settings: Settings, day: dt.date, channels: list[str], *, run_id: str,
                   extra: dict | None = None, not_ready: list[str] | None = None, publish: bool = True):
    """Reconcile D for ``channels`` (those with published standard records) and publish the result; returns
    the summary written to summary.json. ``publish=False`` (the cross-check of jobs/engines.py) leaves the
    result in a staging folder instead and returns (summary, that folder)."""
    started = time.time()
    read.local_file(storage, "")  # a root DuckDB can read, before anything else
    if publish:
        storage.recover("recon")  # leftovers of a killed run (we hold the run lock)
    available, missing = shared.ready_channels(storage, day, channels, not_ready)
    con = connect(settings, _input_bytes(storage, day, available))
    # Once the result is staged the connection is closed in a thread, beside the reports (freeing the tables'
    # memory is 0.4 s at 10M keys; DuckDB lets go of the GIL meanwhile); else closed here.
    failed: list[BaseException] = []

    def close() -> None:
        try:
            con.close()
        except BaseException as exc:  # raised again below, in the caller's thread
            failed.append(exc)

    closer = threading.Thread(target=close, name="duckdb-close")
    try:
        result = _reconcile(con, storage, settings, day, available, missing, run_id=run_id, extra=extra or {},
                            publish=publish, started=started, release=closer.start)
    finally:  # the connection is closed whatever happened (an error of the run is the one raised)
        if closer.ident is None:
            close()
        else:
            closer.join()
    if failed:
        raise failed[0]
    return result


def _reconcile(con, storage, settings, day, available, missing, *, run_id, extra, publish, started, release):
    """``release()``: the connection is no longer used (called once, before the summary and the reports)."""
    from jobs.duck.classify import classify

    d = day.isoformat()
    # -- extract ---------------------------------------------------------------------------------------------
    read.create_standard(con, storage, "std_in", [(ch, day) for ch in available])
    local_folder, local_files = _load_local(con, storage, settings, day)
    read.create_standard(con, storage, "hist_in", shared._lookback(storage, settings, day, available))
    prev = shared.previous_result(storage, day)
    if prev is not None and prev != day - dt.timedelta(days=1):
        log.warning("date %s: carrying open items from %s, the latest reconciled date (%s is missing)", d, prev,
                    day - dt.timedelta(days=1))
    opening_check = None
    if prev is not None:  # today's opening is yesterday's published closing, checked before anything else
        path = shared.opening_file(storage, prev, day)
        read.create_open_items(con, storage, "open_in", path, what=f"open_items.csv published for {prev}",
                               date=prev.isoformat(), hint=shared.rerun_hint(prev, day))
        opening_check = shared.compare_opening(storage, prev, _opening(con), day)
    else:
        read.create_open_items(con, storage, "open_in", None, what="", date=d, hint="")
    _file_ids(con)

    # -- transform -------------------------------------------------------------------------------------------
    classify(con, shared.classify_params(settings, day, available), available)
    totals = [dict(zip(("channel", "category", "side", "carried", "records", "amount", "fee", "rows"), r))
              for r in con.execute("SELECT channel, category, side, carried, records, amount, fee, rows FROM totals")
              .fetchall()]
    shared._phase("classified every record", started)
    shared._check_not_empty(storage, settings, day, totals, local_folder, local_files)
    examples = con.execute(f"""
        SELECT DISTINCT channel, txn_type, order_no, refund_no FROM rows WHERE category = '{LOCAL_DUPLICATE_KEY}'
        ORDER BY channel, order_no, refund_no LIMIT 5""").fetchall()
    if examples:
        listed = "; ".join(" ".join(r).strip() for r in examples)
        raise IntegrityError(f"the local export lists the same key more than once (e.g. {listed})",
                             date=d, file=storage.uri(local_folder),
                             hint="fix the order system's export (one row per order and refund) and re-run")
    held_local = [{"channel": t["channel"], "records": t["records"], "amount": t["amount"]}
                  for t in totals if t["side"] == "HELD"]
    totals = [t for t in totals if t["side"] != "HELD"]
    scope = "(" + ", ".join(lit(c) for c in available) + ")"
    held_items = [dict(zip(("channel", "records", "amount"), r)) for r in con.execute(
        f"SELECT channel, count(*), sum(amount) FROM open_in WHERE channel NOT IN {scope} GROUP BY channel"
    ).fetchall()]

    # -- load ------------------------------------------------------------------------------------------------
    # the export's checksum for summary.json, beside the writing below (much of which keeps one core busy)
    local_paths = [posixpath.join(local_folder, n) for n in local_files]
    checksums = shared.checksums_aside(storage, local_paths)
    staged = None
    try:
        staged = storage.staging("recon", f"check-{d}" if not publish else d)
        t0 = time.time()
        _rejects(con, storage, available, day)
        write_csv(con, storage, staged, "discrepancies.csv", DISCREPANCY_COLUMNS, _discrepancies_sql(d),
                  shared.DISCREPANCY_ORDER)
        shared._phase("wrote discrepancies.csv", t0)
        read.create_keys(con, storage, "already", shared.corrections_already_paths(storage, day),
                         "idempotency_key", what=shared.ALREADY_WHAT, date=d, hint=shared.ALREADY_HINT)
        write_csv(con, storage, staged, "corrections.csv", CORRECTION_COLUMNS, _corrections_sql(d),
                  shared.CORRECTION_ORDER)
        t0 = time.time()
        closing = _closing_sql(d, scope)
        write_csv(con, storage, staged, "open_items.csv", OPEN_ITEM_COLUMNS, closing, shared.OPEN_ITEM_ORDER)
        digests = _digests(con, closing)
        shared._phase("wrote open_items.csv", t0)
        release()
        summary = shared.build_summary(
            storage, settings, day, run_id=run_id, totals=totals, available=available, missing=missing,
            held_local=held_local, held_items=held_items, previous=prev, opening_check=opening_check,
            closing_digests=digests, local_files=local_paths, checksums=checksums, extra=extra,
            reconcile_seconds=round(time.time() - started, 3))
        if not shared.finish(storage, staged, day, summary, engine="duckdb", publish=publish):
            return summary, staged
    except BaseException as exc:
        if staged is not None:
            shared._discard(storage, staged)
        error = disk_error(exc, writing=f"the result of {d} under {storage.uri('recon')}", date=d,
                           file=storage.uri(staged) if staged else None) if isinstance(exc, OSError) else None
        if error is None:
            raise
        raise error from None
    log.info("date %s: published %s (DuckDB)", d, storage.uri(recon_dir(day)))
    return summary


# -- inputs ---------------------------------------------------------------------------------------------------

def _load_local(con, storage: Storage, settings: Settings, day: dt.date) -> tuple[str, list[str]]:
    """``local_in``: D's local orders (export files or the replica); returns (folder, export file names)."""
    from jobs.local_orders import EXPORT_HINT, FILE_COLUMN, parse_local_orders_config, time_bounds

    cfg = parse_local_orders_config(settings.local_orders, None)
    if cfg.get("format", "csv") == "jdbc":
        from jobs.duck.local_pg import load_local_pg
        from schemas.layout import local_dir

        load_local_pg(con, cfg, day, settings.timezone, table="local_in")
        return local_dir(day), []
    margin = shared.local_margin(settings)
    first, end = time_bounds(day, margin)

    def record_time(paid_at: str, created_at: str) -> str:
        return f"coalesce(nullif({paid_at}, ''), nullif({created_at}, ''))"

    def outside_day(paid_at: str, created_at: str) -> str:
        when = record_time(paid_at, created_at)
        return f"({when} IS NOT NULL AND ({when} < {lit(first)} OR {when} >= {lit(end)}))"

    fmt = cfg.get("format", "csv")
    paths = read.create_local_export(con, storage, "local_in", fmt, day, EXPORT_HINT, outside_day)
    if fmt != "parquet":
        read.check_amounts(con, storage, "local_in", day, EXPORT_HINT)
    if not con.execute("SELECT count(*) FROM local_in WHERE recon_outside").fetchone()[0]:
        return posixpath.dirname(paths[0]), [posixpath.basename(p) for p in paths]
    when = record_time("paid_at", "created_at")
    rows = con.execute(f"""
        SELECT f.path, rows, bad, first, earliest, latest FROM (
            SELECT recon_file_id, count(*) AS rows, sum(CASE WHEN recon_outside THEN 1 ELSE 0 END) AS bad,
                   min(CASE WHEN recon_outside THEN {{'when': {when}, 'order_no': order_no}} END) AS first,
                   min({when}) AS earliest, max({when}) AS latest
            FROM local_in GROUP BY recon_file_id HAVING bad > 0) JOIN local_in_files f ON f.file_no = recon_file_id
        ORDER BY f.path""").fetchall()
    if rows:
        from jobs.local_orders import out_of_day_message

        keys = (FILE_COLUMN, "rows", "bad", "first", "earliest", "latest")
        raise out_of_day_message(storage, posixpath.dirname(paths[0]), day, margin,
                                 [dict(zip(keys, r)) for r in rows])
    return posixpath.dirname(paths[0]), [posixpath.basename(p) for p in paths]


def _file_ids(con) -> None:
    """``fids``: each statement file's Spark xxhash64 (its place among records of one key and time), of the
    records that do not hold it (``_fid``: those read from a Parquet copy do)."""
    names = {r[0] for r in con.execute("""
        SELECT DISTINCT coalesce(source_file, '') FROM std_in WHERE _fid IS NULL
        UNION SELECT DISTINCT coalesce(source_file, '') FROM open_in
        UNION SELECT DISTINCT coalesce(source_file, '') FROM hist_in WHERE _fid IS NULL""").fetchall()}
    con.execute("CREATE OR REPLACE TEMP TABLE fids (source_file VARCHAR, fid BIGINT)")
    if names:
        con.executemany("INSERT INTO fids VALUES (?, ?)", [(n, xxhash64(n)) for n in sorted(names)])


def _opening(con) -> dict[str, dict]:
    """channel -> records, amount and content digest of the opening open items (``open_in``)."""
    found: dict[str, dict] = {}
    for ch, records, amount in con.execute(
            "SELECT coalesce(channel, ''), count(*), sum(amount) FROM open_in GROUP BY ALL").fetchall():
        found[ch] = {"records": records, "amount": amount, "digest": None}
    for ch, digest in _digests(con, "SELECT * FROM open_in", channel="coalesce(channel, '')").items():
        found[ch]["digest"] = digest
    return found


def _digests(con, source: str, channel: str = "channel") -> dict[str, str]:
    """channel -> the content digest of the open items of SQL ``source`` (jobs.transforms.content_digest)."""
    rows: dict[str, list] = {}
    for row in texts(con, f"SELECT {channel} AS _ch, * FROM ({source})", OPEN_ITEM_COLUMNS, "_ch"):
        rows.setdefault(row[0], []).append(row[1:])
    return {ch: content_digest(r) for ch, r in rows.items()}


def _rejects(con, storage: Storage, channels: list[str], day: dt.date) -> None:
    """``rejects``: the rejected statement rows of D's channels (their _rejects.csv, where the manifest says
    there are any)."""
    paths = [posixpath.join(standard_dir(ch, day), "_rejects.csv") for ch in channels
             if any(f.get("rejects") for f in storage.read_json(standard_dir(ch, day), "_manifest.json")["files"])]
    read.create_rejects(con, storage, "rejects", paths, day.isoformat())


# -- outputs --------------------------------------------------------------------------------------------------

RAW_IN_NOTE = 500


def _s(value: str) -> str:
    """A value as Java's ``%s`` shows it (a missing one as "null")."""
    return f"coalesce(CAST({value} AS VARCHAR), 'null')"


def _note() -> str:
    """The row's note (jobs.transforms._note, word for word)."""
    breaks = "('LOCAL_ONLY', 'CHANNEL_ONLY', 'REFUND_LOCAL_ONLY', 'REFUND_CHANNEL_ONLY')"
    return f"""CASE
        WHEN category IN ('AMOUNT_MISMATCH', 'REFUND_AMOUNT_MISMATCH') THEN
            'local ' || {_s('lx_amount')} || ', channel ' || {_s('cx_amount')} || ', difference '
            || {_s('cx_amount - lx_amount')}
        WHEN category = 'CURRENCY_MISMATCH' THEN 'local ' || {_s('lx_currency')} || ', channel ' || {_s('cx_currency')}
        WHEN category = 'STATUS_MISMATCH' THEN 'local ' || {_s('lx_status')} || ', channel ' || {_s('cx_status')}
        WHEN category = 'DUPLICATE_CHANNEL' THEN {_s('n_channel_ok')} || ' SUCCESS records at the channel for one key'
        WHEN category = 'DUPLICATE_ACROSS_CHANNELS'
            THEN 'the order was also paid at another channel: refund one of the payments'
        WHEN category = 'REFUND_EXCEEDS_PAYMENT' THEN 'refunds total ' || {_s('cx_refunded_total')}
            || ', more than the payment ' || {_s('cx_paid_amount')}
        WHEN category = 'FEE_MISMATCH' THEN 'fee ' || {_s('cx_fee')} || ', contracted rate gives ' || {_s('expected_fee')}
        WHEN category = 'LOCAL_UNPAID_CHANNEL_PAID' THEN 'local ' || {_s('lx_status')} || ', channel SUCCESS: mark paid'
        WHEN category = 'LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED'
            THEN 'local refund ' || {_s('lx_status')} || ', channel SUCCESS: mark refunded'
        WHEN category IN {breaks} AND age_days > 0
            THEN 'still one-sided after ' || {_s('age_days')} || ' days of carrying'
        WHEN category IN ('LOCAL_ONLY', 'REFUND_LOCAL_ONLY', 'PENDING_CUTOFF') AND NOT is_chan AND rej IS NOT NULL
            THEN 'no channel record read: the channel''s row for this order was rejected (' || {_s('rej.f')}
                 || ' line ' || {_s('rej.l')} || ': ' || {_s('rej.r')} || '); see {ROW_REJECTED}'
        WHEN category IN ('LOCAL_ONLY', 'REFUND_LOCAL_ONLY') THEN 'no channel record'
        WHEN category IN ('CHANNEL_ONLY', 'REFUND_CHANNEL_ONLY') THEN 'no local record'
        WHEN category = 'PENDING_CUTOFF' THEN CASE WHEN age_days > 0 THEN 'carried since ' || {_s('first_seen')}
            ELSE 'near the cut-off: the other side may arrive in the next day''s data' END
        WHEN category = 'CLEARED_LATE' AND coalesce(lx_carried_as IN {breaks}, false)
            THEN 'clears ' || {_s('lx_carried_as')} || ' reported on ' || {_s('lx_first_seen')}
        WHEN category = 'CLEARED_LATE' AND coalesce(cx_carried_as IN {breaks}, false)
            THEN 'clears ' || {_s('cx_carried_as')} || ' reported on ' || {_s('cx_first_seen')}
        WHEN category = 'CLEARED_LATE'
            THEN 'carried since ' || {_s('least(lx_first_seen, cx_first_seen)')} || ', matched today'
        ELSE '' END"""


def _shown() -> str:
    """The local and channel sides a record's row shows: the key's local primary (not for a duplicate channel
    record) and the record itself when it is a channel record."""
    lx = {f: f"CASE WHEN NOT (side = 'CHANNEL' AND rn_side > 1) THEN l.{f} END AS lx_{f}"
          for f in ("amount", "status", "currency", "time", "carried_as", "first_seen")}
    cx = {f: f"CASE WHEN side = 'CHANNEL' THEN {f} END AS cx_{f}"
          for f in ("amount", "status", "currency", "time", "carried_as", "first_seen", "fee", "channel_txn_id",
                    "source_file", "source_line", "paid_amount", "refunded_total")}
    return ", ".join([*lx.values(), *cx.values(), "side = 'CHANNEL' AS is_chan"])


def _discrepancies_sql(d: str) -> str:
    first_rejected = """SELECT channel AS rch, order_no AS rord, min({'f': source_file, 'l': source_line, 'r': reason}) AS rej
        FROM rejects WHERE coalesce(order_no, '') <> '' GROUP BY channel, order_no"""
    listed = f"""
        SELECT o.*, {_shown()}, fr.rej FROM rows o
        LEFT JOIN ({first_rejected}) fr ON fr.rch = o.channel AND fr.rord = o.order_no
        WHERE emits"""
    rows = f"""
        SELECT {lit(d)} AS date, channel, category, resolution, order_no, refund_no, lx_amount AS local_amount,
               cx_amount AS channel_amount, lx_status AS local_status, cx_status AS channel_status,
               coalesce(lx_currency, cx_currency) AS currency, cx_channel_txn_id AS channel_txn_id,
               lx_time AS local_time, cx_time AS channel_time, age_days, cx_source_file AS source_file,
               cx_source_line AS source_line, {_note()} AS note
        FROM ({listed})"""
    raw = "coalesce(raw, '')"
    shown = f"CASE WHEN length({raw}) > {RAW_IN_NOTE} THEN substring({raw}, 1, {RAW_IN_NOTE}) || '…' ELSE {raw} END"
    rejected = f"""
        SELECT {lit(d)}, channel, {lit(ROW_REJECTED)}, {lit(RESOLUTIONS[ROW_REJECTED])}, coalesce(order_no, ''), '',
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, source_file, source_line,
               'rejected by the normalizer: ' || coalesce(reason, '') || ' | line as sent: ' || {shown}
        FROM rejects"""
    return f"{rows} UNION ALL {rejected}"


def _corrections_sql(d: str) -> str:
    action = "CASE category " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in CORRECTION_ACTIONS.items()) \
             + " END"
    cats = "(" + ", ".join(lit(c) for c in CORRECTION_ACTIONS) + ")"
    return f"""
        SELECT * FROM (
            SELECT {lit(d)} AS date, channel, order_no, refund_no, {action} AS action,
                   CASE WHEN side = 'CHANNEL' THEN amount END AS amount,
                   CASE WHEN side = 'CHANNEL' THEN channel_txn_id END AS channel_txn_id,
                   sha256(concat_ws('|', channel, txn_type, order_no, refund_no, {action})) AS idempotency_key
            FROM rows WHERE emits AND category IN {cats})
        WHERE idempotency_key NOT IN (SELECT idempotency_key FROM already WHERE idempotency_key IS NOT NULL)"""


def _closing_sql(d: str, scope: str) -> str:
    """The open items carried to D+1: every record of a carried category, and the opening items of channels not
    reconciled in this run (unchanged, their age updated)."""
    cats = "(" + ", ".join(lit(c) for c in CARRIED_CATEGORIES) + ")"
    columns = ", ".join(standard.COLUMNS)
    held_cols = ", ".join(c if c != "age_days" else
                          f"CAST(datediff('day', TRY_CAST(first_seen AS DATE), DATE {lit(d)}) AS INTEGER) AS age_days"
                          for c in OPEN_ITEM_COLUMNS)
    return f"""
        SELECT side, first_seen, age_days, category AS carried_as, {columns}, created_at, paid_at
        FROM rows WHERE category IN {cats}
        UNION ALL SELECT {held_cols} FROM open_in WHERE channel NOT IN {scope}"""
