"""CSV and Parquet inputs read by the job, matched to our schemas by column *name*, one file at a time.

Spark's CSV reader matches a schema to a file by position, and with
``enforceSchema = false`` it only refuses a header that differs, without
saying how: an export with a correct header in another order was refused, a
missing column read as shifted values, and the message named no file. So each
file's header is read here first (through ``Storage``: file:// and hdfs://
alike; a UTF-8 byte order mark and a CRLF line end are dropped), checked
against the expected columns -- a missing, an unknown extra and a duplicated
column are refused, naming the file and the column -- and then the file is
read by Spark with a schema *in that file's own column order*, and the
columns are selected in ours. Files with the same header are read together:
the normal case (one or a few files written by one system) is one Spark read,
as before. A Parquet export's column names are checked the same way from the
files' footers (Spark would read a missing column as null without a word).

Header-only and empty files are accepted (they hold no rows), as before.
"""

from __future__ import annotations

import csv
import posixpath
from typing import Iterable, Sequence

from core.errors import IntegrityError
from core.storage import Storage
from schemas.csvio import BOM, SPARK_CSV_READ_OPTIONS

# The header is checked here, so Spark takes the schema as given (it still skips each file's header line).
# Without columnPruning = false, Spark parses only the columns a plan uses and a row with too few or too many
# fields passes as long as those are there (a truncated open_items.csv was read with nulls, without a word).
CSV_READ_OPTIONS = dict(SPARK_CSV_READ_OPTIONS, mode="FAILFAST", enforceSchema="true", columnPruning="false")
MAX_HEADER_BYTES = 1 << 20  # a header line longer than this is not a header of ours


def data_files(storage: Storage, folder: str) -> list[str]:
    """The files of a folder Spark would read (names starting with ``_`` or ``.`` are hidden), as paths."""
    return [posixpath.join(folder, n) for n in storage.list(folder) if not n.startswith(("_", "."))]


def csv_header(storage: Storage, path: str) -> list[str] | None:
    """The column names of a CSV file's header, or None for a file with no header (empty or blank lines only).

    Like Spark's reader, the header is the first line that is not blank. A UTF-8 BOM and the line end
    (LF or CRLF) are not part of any name.
    """
    with storage.open_read(path) as fh:
        first = True
        while True:
            raw = fh.readline(MAX_HEADER_BYTES)
            if not raw:
                return None
            text = raw.decode("utf-8", errors="replace")
            if first and text.startswith(BOM):
                text = text[len(BOM):]
            first = False
            text = text.rstrip("\r\n")
            if text.strip():
                return next(csv.reader([text], delimiter=",", quotechar='"', doublequote=True))


def check_columns(found: Sequence[str], expected: Sequence[str], *, file: str, what: str, hint: str,
                  date: str | None = None, channel: str | None = None) -> None:
    """Refuse a header that lacks a column, has one we do not know, or has one twice (IntegrityError, exit 4).

    The order does not matter. Names are compared exactly: ``Amount`` or ``amount `` is not ``amount``
    (the message shows each name quoted, so a stray space or case is visible).
    """
    seen, duplicated = set(), []
    for name in found:
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.add(name)
    missing = [c for c in expected if c not in seen]
    unknown = [c for c in found if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {_names(missing)}")
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {_names(unknown)}")
    if duplicated:
        problems.append(f"column{'s' if len(duplicated) > 1 else ''} {_names(duplicated)} more than once")
    if problems:
        raise IntegrityError(f"{what} has a header that does not match: {'; '.join(problems)} "
                             f"(expected the columns {', '.join(expected)}, in any order)",
                             channel=channel, date=date, file=file, hint=hint)


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def group_by_header(storage: Storage, paths: Sequence[str], columns: Sequence[str], *, what: str, hint: str,
                    date: str | None = None, channel: str | None = None) -> dict[tuple[str, ...], list[str]]:
    """{header: file URIs} of the CSV files ``paths`` (relative to the root), each header checked.

    A file without a header (empty) holds no rows and is grouped with ``columns``' own order.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        header = csv_header(storage, path)
        header = list(columns) if header is None else header
        check_columns(header, columns, file=storage.uri(path), what=what, hint=hint, date=date, channel=channel)
        groups.setdefault(tuple(header), []).append(storage.uri(path))
    return groups


def read_groups(spark, groups: dict[tuple[str, ...], list[str]], schema, per_group=None):
    """One Spark read per header of ``group_by_header``, combined, with ``schema``'s columns in its order.

    ``per_group``, if given, turns each read into the frame to combine (for a plan that needs the scan
    itself, e.g. ``_metadata.file_path``); it must give ``schema``'s columns. With no file, an empty frame.
    """
    from pyspark.sql import types as T

    names = [f.name for f in schema.fields]
    by_name = {f.name: f for f in schema.fields}
    frames = []
    for header, uris in groups.items():
        df = spark.read.schema(T.StructType([by_name[n] for n in header])).options(**CSV_READ_OPTIONS).csv(uris)
        frames.append(per_group(df) if per_group else df.select(*names))
    return _combined(spark, frames, schema)


def empty_frame(spark, schema):
    """An empty DataFrame built in the JVM (an empty Python list would make executors run Python)."""
    from pyspark.sql import functions as F

    return spark.range(0).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields])


def _combined(spark, frames: list, schema):
    """The frames one after the other (by column name), or an empty frame of ``schema`` when there is none."""
    if not frames:
        return empty_frame(spark, schema)
    out = frames[0]
    for more in frames[1:]:
        out = out.unionByName(more)
    return out


def read_csv(spark, storage: Storage, paths: Sequence[str], schema, *, what: str, hint: str,
             date: str | None = None, channel: str | None = None, per_group=None):
    """The rows of the CSV files ``paths`` (relative to the root), matched to ``schema`` by header name."""
    groups = group_by_header(storage, paths, [f.name for f in schema.fields], what=what, hint=hint, date=date,
                             channel=channel)
    return read_groups(spark, groups, schema, per_group)


def read_column(spark, storage: Storage, paths: Sequence[str], column: str, *, what: str, hint: str,
                date: str | None = None):
    """One text column of CSV files whose other columns may differ (corrections.csv and the apply-fixes
    ledger): each file read by its own header, which must hold ``column`` and no name twice."""
    from pyspark.sql import types as T

    groups: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        header = csv_header(storage, path)
        if header is None:
            continue  # an empty file holds no keys
        others = [n for n in dict.fromkeys(header) if n != column]  # duplicates are refused below
        check_columns(header, [column] + others, file=storage.uri(path), what=what, hint=hint,
                      date=date)
        groups.setdefault(tuple(header), []).append(storage.uri(path))
    frames = [spark.read.schema(T.StructType([T.StructField(n, T.StringType()) for n in header]))
              .options(**CSV_READ_OPTIONS).csv(uris).select(column) for header, uris in groups.items()]
    return _combined(spark, frames, T.StructType([T.StructField(column, T.StringType())]))


def check_parquet(storage: Storage, paths: Sequence[str], expected: Sequence[str], *, what: str, hint: str,
                  date: str | None = None) -> None:
    """Check each Parquet file's column names (read from its footer only) like a CSV header."""
    import pyarrow.parquet as pq

    for path in paths:
        try:
            with storage.fs.open_input_file(storage.path(path)) as fh:
                found = pq.read_schema(fh).names
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise IntegrityError(f"{what} is not a readable Parquet file ({str(exc).splitlines()[0][:200]})",
                                 date=date, file=storage.uri(path), hint=hint) from None
        check_columns(found, expected, file=storage.uri(path), what=what, hint=hint, date=date)
