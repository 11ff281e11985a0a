"""The DuckDB engine's inputs: the same files the Spark job reads, as tables of one DuckDB connection.

Each CSV file is matched to our columns by its header name first (``jobs.inputs.group_by_header``: a missing,
unknown or doubled column is refused, naming the file), then read with every column as text in that file's
own order and cast here, so a value is never guessed (DuckDB's sniffer is off). LF or CRLF, a UTF-8 byte order
mark and blank lines are read as Spark reads them. Amounts are DECIMAL(18,2) end to end, never DOUBLE; a local
export's amount is checked to be a plain decimal exact to the cent before the cast (DuckDB, like Spark, would
round 12.345 to 12.35 without a word).

The DuckDB engine reads a local root (``file://``): hdfs:// roots are the Spark engine's.
"""

from __future__ import annotations

import datetime as dt
import posixpath

import pyarrow.fs as pafs

from core.errors import ConfigError, IntegrityError
from core.storage import Storage
from jobs import inputs
from schemas import local as local_schema
from schemas import standard
from schemas.layout import standard_dir
from schemas.money import CENTS_PATTERN
from schemas.outputs import OPEN_ITEM_COLUMNS, REJECT_COLUMNS

MONEY = "DECIMAL(18,2)"
STANDARD_TYPES = {**{n: "VARCHAR" for n in standard.COLUMNS}, **{n: MONEY for n in standard.MONEY_COLUMNS},
                  "source_line": "BIGINT"}
LOCAL_TYPES = {**{n: "VARCHAR" for n in local_schema.COLUMNS}, "amount": MONEY}
OPEN_ITEM_TYPES = {**{n: "VARCHAR" for n in OPEN_ITEM_COLUMNS}, **STANDARD_TYPES, "age_days": "INTEGER"}
REJECT_TYPES = {**{n: "VARCHAR" for n in REJECT_COLUMNS}, "source_line": "BIGINT"}


def local_file(storage: Storage, path: str) -> str:
    """The local filesystem path of ``path`` under the root; a ConfigError for a root DuckDB cannot read."""
    if not isinstance(storage.fs, pafs.LocalFileSystem):
        raise ConfigError(f"the DuckDB engine reads and writes a local filesystem root, not {storage.root_uri}",
                          hint='use [engine] kind = "spark" (or --engine spark) for an hdfs:// root')
    return storage.path(path)


def quoted(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _list(paths: list[str]) -> str:
    return "[" + ", ".join(quoted(p) for p in paths) + "]"


def _csv_source(files: list[str], header: tuple[str, ...]) -> str:
    """A read of CSV files with one header, every column as text in the files' own order."""
    columns = "{" + ", ".join(f"{quoted(n)}: 'VARCHAR'" for n in header) + "}"
    return (f"read_csv({_list(files)}, header = true, auto_detect = false, columns = {columns}, delim = ',', "
            f"quote = '\"', escape = '\"', strict_mode = true)")


def _empty(types: dict[str, str]) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in types.items()) + " WHERE false"


def create_csv_table(con, storage: Storage, name: str, paths: list[str], types: dict[str, str], *, what: str,
                     hint: str, date: str | None = None, channel: str | None = None, casts: dict | None = None,
                     with_file: bool = False, read_hint: str | None = "", extra: dict[str, str] | None = None) -> None:
    """Table ``name`` with ``types``' columns (in that order) of the CSV files ``paths`` (relative to the root),
    matched by header name. ``casts``: column -> SQL of the text column ``v`` instead of a plain cast.
    ``with_file`` adds ``recon_file_id``, the file's ``file_no`` in table ``{name}_files`` (``file_table``: its
    URI is what the export checks name; a number per row, not the URI, as the rows are millions). ``read_hint``: what to
    do when a file cannot be parsed (default ``hint``; None: by the kind of file, as jobs/read_errors.py says).
    ``extra``: further columns, name -> SQL over the text columns (``"name"``)."""
    groups = inputs.group_by_header(storage, paths, list(types), what=what, hint=hint, date=date, channel=channel)
    selects, numbered = [], []
    for header, uris in groups.items():
        files = [local_file(storage, _relative(storage, u)) for u in uris]
        for uri, path in zip(uris, files):
            cols = [(casts or {}).get(n, f"CAST({{v}} AS {t})").format(v=f'"{n}"') + f' AS "{n}"'
                    for n, t in types.items()] + [f'{sql} AS "{n}"' for n, sql in (extra or {}).items()]
            if with_file:
                cols.append(f"{len(numbered)} AS recon_file_id")
                numbered.append(uri)
            selects.append(f"SELECT {', '.join(cols)} FROM {_csv_source([path], header)}")
    if with_file:
        file_table(con, f"{name}_files", numbered)
    if not selects:
        empty = _empty(types) if not extra else \
            f"SELECT *, {', '.join(f'NULL AS {n}' for n in extra)} FROM ({_empty(types)})"
        selects = [empty if not with_file else f"SELECT *, CAST(NULL AS INTEGER) AS recon_file_id FROM ({empty})"]
    sql = f"CREATE OR REPLACE TABLE {name} AS " + " UNION ALL ".join(selects)
    run(con, sql, what=what, file=storage.uri(paths[0]) if len(paths) == 1 else None, date=date, channel=channel,
        hint=hint if read_hint == "" else read_hint, storage=storage, paths=list(paths))


def file_table(con, table: str, paths: list[str]) -> None:
    """Table ``table``: (``file_no``, ``path``) of the files a table was read from, numbered in order: what its
    rows hold instead of the path."""
    con.execute(f"CREATE OR REPLACE TABLE {table} (file_no INTEGER, path VARCHAR)")
    if paths:
        con.executemany(f"INSERT INTO {table} VALUES (?, ?)", list(enumerate(paths)))


def run(con, sql: str, *, what: str, hint: str | None, file: str | None = None, date: str | None = None,
        channel: str | None = None, params=None, storage: Storage | None = None, paths: list[str] | None = None):
    """Execute ``sql``; a DuckDB error reading an input becomes an IntegrityError (exit 4) in the Spark path's
    words (jobs/read_errors.py): the file, the line and the cause found by reading the file again (``paths``,
    relative to the root), what the file is and what to do (``hint``, else by the kind of file)."""
    import duckdb

    try:
        return con.execute(sql, params) if params is not None else con.execute(sql)
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException) as exc:
        from jobs.read_errors import _kind, find_bad_row

        text = str(exc).splitlines()[0][:300]
        for path in paths or []:
            found = find_bad_row(storage, path)
            if found:
                kind = _kind(path)
                raise IntegrityError(f"{kind['what']} cannot be read: {found[1]}", line=found[0], date=date,
                                     channel=channel or kind.get("channel"), file=storage.uri(path),
                                     hint=hint or kind["hint"]) from None
        kind = _kind(paths[0]) if paths and len(paths) == 1 else {"what": what, "hint": hint or ""}
        raise IntegrityError(f"{kind['what']} cannot be read ({text})", date=date, channel=channel, file=file,
                             hint=hint or kind["hint"]) from None


def _relative(storage: Storage, uri: str) -> str:
    prefix = storage.root_uri + "/"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


# -- the inputs of a date ----------------------------------------------------------------------------------------

# Columns only a listed record shows (never compared): from a Parquet copy they stay on disk, and the few listed
# records fetch them again by (file, row) (``details_from_parquet``), which costs a fraction of holding them.
# source_file is one of them: what the classification needs of it is its file id, ``_fid``, read beside it.
DETAIL_ONLY = ("merchant_id", "channel_txn_id", "payer_id", "bank", "source_file")
POINTER_TYPES = {"_pq_file": "INTEGER", "_pq_row": "BIGINT"}


def create_standard(con, storage: Storage, name: str, published: list[tuple[str, dt.date]]) -> None:
    """Table ``name``: the standard records of the (channel, date) folders, from their Parquet copies where the
    manifest lists one for every file with the right row count (as ``jobs.reconcile.read_standard``), else
    from the CSV. A record read from a Parquet copy holds its DETAIL_ONLY columns as NULL and where to find
    them (``_pq_file``, its copy's ``file_no`` in table ``{name}_parquet``, and ``_pq_row``), and its source
    file's id (``_fid``, Spark's xxhash64 of the name: ``jobs.sparkhash``); one read from CSV holds them itself
    (and NULL pointers and id)."""
    from jobs.reconcile import columnar_copies

    parquet, selects = [], []
    for ch, d in published:
        folder = standard_dir(ch, d)
        copies = columnar_copies(storage, folder)
        if copies is not None:
            parquet.extend(local_file(storage, c) for c in copies)
            continue
        part = f"{name}_{len(selects)}"
        create_csv_table(con, storage, part, inputs.data_files(storage, folder), STANDARD_TYPES,
                         what="a standard file", date=d.isoformat(), channel=ch, read_hint=None,
                         hint=f"standard files are written by `recon normalize`: re-run it for channel {ch} "
                              f"and date {d}")
        selects.append(f"SELECT *, CAST(NULL AS INTEGER) AS _pq_file, CAST(NULL AS BIGINT) AS _pq_row, "
                       f"CAST(NULL AS BIGINT) AS _fid FROM {part}")
    file_table(con, f"{name}_parquet", parquet)
    if parquet:
        fid = _file_id_case(con, parquet)
        on_disk = DETAIL_ONLY if fid != "NULL" else tuple(n for n in DETAIL_ONLY if n != "source_file")
        cols = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' if n in on_disk else f'CAST("{n}" AS {t}) AS "{n}"'
                         for n, t in STANDARD_TYPES.items())
        selects.append(f"SELECT {cols}, CAST(file_index AS INTEGER) AS _pq_file, "
                       f"file_row_number AS _pq_row, CAST({fid} AS BIGINT) AS _fid "
                       f"FROM read_parquet({_list(parquet)})")
    con.execute(f"CREATE OR REPLACE TABLE {name} AS "
                + (" UNION ALL ".join(selects) or _empty({**STANDARD_TYPES, **POINTER_TYPES, "_fid": "BIGINT"})))


def _file_id_case(con, files: list[str]) -> str:
    """SQL over Parquet copies' ``source_file``: its file id (``jobs.duck.expressions.file_id_case`` over the
    copies' distinct names), or "NULL" past MAX_FILE_IDS names (the records then keep the text, and the
    classification finds the ids from it). A 10M-record day holds the id (8 bytes) instead of 10M copies of
    the name (the read 0.3 s faster, and no CASE over the text later)."""
    from jobs.duck import expressions

    names = [r[0] for r in con.execute(
        f"SELECT DISTINCT coalesce(CAST(source_file AS VARCHAR), '') FROM read_parquet({_list(files)}) "
        f"LIMIT {expressions.MAX_FILE_IDS + 1}").fetchall()]
    if not names or len(names) > expressions.MAX_FILE_IDS:
        return "NULL"
    return expressions.file_id_case("CAST(source_file AS VARCHAR)", names)


def details_from_parquet(con, name: str) -> str:
    """SQL: (``_pq_file``, ``_pq_row``, the DETAIL_ONLY columns) of the Parquet copies table ``name`` was read
    from (``create_standard``); no rows without any."""
    files = [r[0] for r in con.execute(f"SELECT path FROM {name}_parquet ORDER BY file_no").fetchall()]
    cols = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' for n in DETAIL_ONLY)
    if not files:
        return _empty({**POINTER_TYPES, **dict.fromkeys(DETAIL_ONLY, "VARCHAR")})
    return (f"SELECT CAST(file_index AS INTEGER) AS _pq_file, file_row_number AS _pq_row, {cols} "
            f"FROM read_parquet({_list(files)})")


def create_local_export(con, storage: Storage, name: str, fmt: str, day: dt.date, hint: str, outside) -> list[str]:
    """Table ``name``: D's export as read (LocalRecord columns; ``recon_file_id``, the file's ``file_no`` in
    ``{name}_files``; ``recon_outside``, whether the record's time is outside D: ``outside(paid_at, created_at)``,
    SQL over those columns' text); returns the files' paths. A CSV export's amount is cast to DECIMAL(18,2) only
    when its text is a plain decimal exact to the cent, else NULL: ``check_amounts`` names such a row."""
    from jobs.local_orders import local_export_files

    folder, names = local_export_files(storage, day)
    paths = [posixpath.join(folder, n) for n in names]
    what = "the local orders export"
    d = day.isoformat()
    if fmt == "parquet":
        inputs.check_parquet(storage, paths, local_schema.COLUMNS, what=what, hint=hint, date=d)
        cols = ", ".join(f'CAST("{n}" AS {t}) AS "{n}"' for n, t in LOCAL_TYPES.items())
        late = outside('CAST("paid_at" AS VARCHAR)', 'CAST("created_at" AS VARCHAR)')
        files = [local_file(storage, p) for p in paths]
        file_table(con, f"{name}_files", [storage.uri(p) for p in paths])
        selects = " UNION ALL ".join(f"SELECT {cols}, {late} AS recon_outside, {i} AS recon_file_id "
                                     f"FROM read_parquet({_list([f])})" for i, f in enumerate(files))
        run(con, f"CREATE OR REPLACE TABLE {name} AS {selects}", what=what, hint=hint, date=d)
        return paths
    pattern = quoted(CENTS_PATTERN).replace("{", "{{").replace("}", "}}")  # a template: {v} is the column
    exact = f"CASE WHEN regexp_full_match({{v}}, {pattern}) THEN CAST({{v}} AS {MONEY}) END"
    create_csv_table(con, storage, name, paths, LOCAL_TYPES, what=what, hint=hint, date=d, with_file=True,
                     casts={"amount": exact}, extra={"recon_outside": outside('"paid_at"', '"created_at"')})
    return paths


def check_amounts(con, storage: Storage, name: str, day: dt.date, hint: str) -> None:
    """A CSV export's amount that is not a plain decimal exact to the cent (NULL in table ``name``, as
    ``create_local_export`` reads it) fails with the order, the file and the value, read again from the file,
    when it looks like a number (it could otherwise be a card number shifted into the column): the words of
    the Spark path (``jobs.local_orders._exact_amounts``). DuckDB, like Spark, would otherwise round 12.345 to
    12.35 without a word. A Parquet export's amounts are typed by its writer."""
    import re

    from jobs.local_orders import MAX_DIGITS_SHOWN

    bad = con.execute(f"""
        SELECT order_no, refund_no, channel, f.path FROM {name} JOIN {name}_files f ON f.file_no = recon_file_id
        WHERE amount IS NULL LIMIT 1""").fetchone()
    if bad is None:
        return
    d = day.isoformat()
    order, refund, channel, file = bad
    path = _relative(storage, file)
    header = inputs.csv_header(storage, path)
    amount = con.execute(f"""
        SELECT "amount" FROM {_csv_source([local_file(storage, path)], tuple(header))}
        WHERE "order_no" IS NOT DISTINCT FROM ? AND "refund_no" IS NOT DISTINCT FROM ?
          AND ("amount" IS NULL OR NOT regexp_full_match("amount", ?)) LIMIT 1""",
                         [order, refund, CENTS_PATTERN]).fetchone()
    amount = amount[0] if amount else None
    digits = len(re.sub(r"[^0-9]", "", amount or ""))
    shown = ("empty" if amount is None else f"'{amount}'"
             if re.fullmatch(r"[0-9.,eE+ -]{1,24}", amount) and digits <= MAX_DIGITS_SHOWN
             else f"of {len(amount)} characters, not shown,")
    raise IntegrityError(f"local order {order or '?'} {refund or ''} (channel {channel or '?'}, date {d}) in "
                         f"{file}: amount {shown} is not a decimal exact to the cent (like 12.30); fix the "
                         f"order system's export and re-run", date=d, file=file, hint=hint)


def create_open_items(con, storage: Storage, name: str, path: str | None, *, what: str, date: str,
                      hint: str) -> None:
    """Table ``name``: a published open_items.csv (``path``), or no rows without one."""
    create_csv_table(con, storage, name, [path] if path else [], OPEN_ITEM_TYPES, what=what, date=date, hint=hint)


def create_rejects(con, storage: Storage, name: str, paths: list[str], date: str) -> None:
    create_csv_table(con, storage, name, paths, REJECT_TYPES, what="the rejected rows of the standard folders",
                     date=date, hint="re-run `recon normalize` for this date")


def create_keys(con, storage: Storage, name: str, paths: list[str], column: str, *, what: str, date: str,
                hint: str) -> None:
    """Table ``name`` (one column ``column``) of CSV files whose other columns may differ (corrections.csv and
    the apply-fixes ledger), each by its own header."""
    selects = []
    for path in paths:
        header = inputs.csv_header(storage, path)
        if header is None:
            continue
        others = [n for n in dict.fromkeys(header) if n != column]
        inputs.check_columns(header, [column] + others, file=storage.uri(path), what=what, hint=hint, date=date)
        selects.append(f'SELECT "{column}" FROM {_csv_source([local_file(storage, path)], tuple(header))}')
    sql = " UNION ALL ".join(selects) or f"SELECT CAST(NULL AS VARCHAR) AS {column} WHERE false"
    run(con, f"CREATE OR REPLACE TABLE {name} AS {sql}", what=what, hint=hint, date=date)
