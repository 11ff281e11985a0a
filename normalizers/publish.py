"""Normalize a landed statement and publish standard/{channel}/{D}/ atomically.

Published folder: ``<statement>.csv`` (standard records), ``_rejects.csv``,
``_columnar/<statement>.parquet`` (the same records as Parquet, see
``ColumnarCopy``), ``_manifest.json`` (counts, control totals, source
checksums) and ``_SUCCESS``. Names starting with ``_`` are invisible to
Spark's reader, so the job reads the folder and sees only standard rows.
When a statement fails an integrity check nothing is published for that
channel and date, and a result published earlier from another download is
withdrawn.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import posixpath
from operator import attrgetter

from core import registry
from core.errors import IntegrityError, ReconError, UnavailableError
from core.settings import ChannelSettings
from core.storage import Storage
from normalizers.base import Normalizer, RawStatement, Sink
from schemas import csvio, standard
from schemas.layout import landed_manifest, raw_dir, standard_dir
from schemas.masking import mask_text
from schemas.outputs import REJECT_COLUMNS
from schemas.standard import StandardRecord

log = logging.getLogger(__name__)

SHOWN_REJECTS = 5  # rejects named in the error when a statement has more than the channel allows
MAX_RAW_CHARS = 2000  # of a rejected line's text: enough to recognise it; the whole line is in raw/
COLUMNAR_DIR = "_columnar"  # starts with "_": invisible to Spark's CSV read of the folder
TEXT_FLUSH_CHARS = 1 << 20  # row-by-row CSV text is encoded and written in pieces of about this size


def reject_row(channel: str, day: str, source_file: str, line: int, reason: str, raw: str, order_no: str) -> list:
    """A ``_rejects.csv`` row (``REJECT_COLUMNS``). The raw text is masked (card numbers, openids, e-mails):
    the row is listed for people in discrepancies.csv and the reports; the original stays in raw/. The order
    number the row names is a reference analysts search for, not a payment instrument: it is left readable
    even where it has a card number's shape."""
    shown = mask_text(raw.replace(order_no, "\x00")).replace("\x00", order_no) if order_no else mask_text(raw)
    return [channel, day, source_file, line, order_no, reason, shown[:MAX_RAW_CHARS]]


def bulk_csv_buffer(table):
    """CSV rows (no header, UTF-8) of a standard-record table as a pyarrow Buffer, byte-identical to
    ``csvio.writer``'s.

    The bulk path is only given values that need no quoting (normalizers
    check), so Arrow's unquoted writer and Python's minimal quoting agree.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none",
                                                   batch_size=max(1, table.num_rows)))
    return buf.getvalue()


def bulk_csv(table) -> str:
    """``bulk_csv_buffer`` as text."""
    return bulk_csv_buffer(table).to_pybytes().decode("utf-8")


def make_normalizer(channel: ChannelSettings) -> Normalizer:
    cls = registry.load(channel.normalizer, package="normalizers", attribute="NORMALIZER",
                        conf_file=channel.conf_file)
    return cls(channel)


COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")


def standard_name(raw_name: str, taken: set[str]) -> str:
    """The standard file of the raw statement ``raw_name``: its name without a compression suffix and its own
    extension, as ``.csv`` (``X.csv.gz``, ``X.zip`` and ``X.txt`` all give ``X.csv``), numbered ``X-2.csv``...
    when ``taken`` (the folder's names so far, case folded) already holds it. Adds the name to ``taken``."""
    stem = raw_name
    if stem.lower().endswith(COMPRESSED_SUFFIXES):
        stem = posixpath.splitext(stem)[0]
    stem = posixpath.splitext(stem)[0] or raw_name
    name, n = f"{stem}.csv", 1
    while name.lower() in taken or columnar_name(name).lower() in taken:
        n += 1
        name = f"{stem}-{n}.csv"
    taken.update((name.lower(), columnar_name(name).lower()))
    return name


def columnar_name(standard_file: str) -> str:
    """The Parquet copy of ``{stem}.csv``, relative to the standard folder: ``_columnar/{stem}.parquet``."""
    return posixpath.join(COLUMNAR_DIR, posixpath.splitext(standard_file)[0] + ".parquet")


class ColumnarCopy:
    """The standard records as Parquet: the same rows in the same order, as Spark reads the standard CSV.

    Columns are ``standard.COLUMNS`` with ``standard.arrow_schema()`` types.
    Values are what Spark's CSV reader gives for the CSV with the project's
    options (``nullValue`` is ""): an empty string field is null. Bulk tables
    are written as they come; single records are buffered into Arrow batches
    of ``batch_rows``. Row groups hold at least ``group_rows`` rows (the last
    one fewer).
    """

    # few distinct values: dictionary-encoded; the identifiers are not (it would only cost time)
    DICTIONARY = ["channel", "merchant_id", "txn_type", "status", "currency", "bank", "source_file"]
    # min/max kept where a reader can use them; string statistics of the identifiers cost time for nothing
    STATISTICS = ["amount", "fee", "coupon_amount", "txn_time", "source_line"]

    def __init__(self, stream, *, batch_rows: int = 65536, group_rows: int = 65536):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = standard.arrow_schema()
        self._writer = pq.ParquetWriter(stream, self.schema, compression="snappy", use_dictionary=self.DICTIONARY,
                                        write_statistics=self.STATISTICS, store_decimal_as_integer=True,
                                        data_page_size=4 << 20, write_batch_size=64 << 10)
        self._strings = {i for i, f in enumerate(self.schema) if pa.types.is_string(f.type)}
        self._values = attrgetter(*standard.COLUMNS)
        self._records: list[tuple] = []
        self._tables: list = []  # converted tables not yet written (fewer than group_rows rows in all)
        self._buffered = 0
        self.batch_rows, self.group_rows = batch_rows, group_rows
        self.rows = 0

    def record(self, rec: StandardRecord) -> None:
        self._records.append(self._values(rec))
        if len(self._records) >= self.batch_rows:
            self._flush_records()

    def table(self, table) -> None:
        self._flush_records()
        self._add(self._as_spark_reads(table))

    def close(self) -> None:
        """Write what is buffered and the Parquet footer."""
        self._flush_records()
        self._write()
        self._writer.close()

    def abandon(self) -> None:
        """Forget the file (it is being deleted): no footer is written, now or when collected."""
        self._records, self._tables, self._buffered = [], [], 0
        self._writer.is_open = False

    # -- inside ------------------------------------------------------------------------------------------------
    def _flush_records(self) -> None:
        import pyarrow as pa

        if not self._records:
            return
        columns = list(zip(*self._records))
        self._records = []
        arrays = [pa.array([None if v == "" else v for v in values] if i in self._strings else values, f.type)
                  for i, (values, f) in enumerate(zip(columns, self.schema))]
        self._add(pa.Table.from_arrays(arrays, schema=self.schema))

    def _as_spark_reads(self, table):
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.select(list(standard.COLUMNS)).cast(self.schema)
        null = pa.scalar(None, pa.string())
        arrays = []
        for i, column in enumerate(table.columns):
            if i in self._strings:
                blank = pc.equal(column, "")
                if pc.any(blank).as_py():
                    column = pc.if_else(blank, null, column)
            arrays.append(column)
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _add(self, table) -> None:
        self._tables.append(table)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.group_rows:
            self._write()

    def _write(self) -> None:
        import pyarrow as pa

        if not self._buffered:
            self._tables, self._buffered = [], 0
            return
        table = self._tables[0] if len(self._tables) == 1 else pa.concat_tables(self._tables)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._tables, self._buffered = [], 0


class _CsvSink(Sink):
    """Writes the standard CSV (``records_out``, binary), the rejects and, if given, the columnar copy."""

    def __init__(self, channel: str, day: dt.date, source_file: str, records_out, rejects_out,
                 columnar: ColumnarCopy | None = None):
        self.channel, self.day, self.source_file = channel, day.isoformat(), source_file
        self._out = records_out
        self._text = io.StringIO(newline="")
        self.records = csvio.writer(self._text)
        self.rejects = rejects_out
        self.columnar = columnar
        self.record_count = 0
        self.reject_count = 0
        self.first_rejects: list[tuple[int, str]] = []  # (line, reason) of the first few, for the error message
        self.records.writerow(standard.COLUMNS)

    def record(self, rec: StandardRecord) -> None:
        self.records.writerow(rec.as_csv_row())
        self.record_count += 1
        if self.columnar is not None:
            self.columnar.record(rec)
        if self._text.tell() >= TEXT_FLUSH_CHARS:
            self._flush_text()

    def reject(self, line: int, reason: str, raw: str, order_no: str = "") -> None:
        self.rejects.writerow(reject_row(self.channel, self.day, self.source_file, line, reason, raw, order_no))
        self.reject_count += 1
        if len(self.first_rejects) < SHOWN_REJECTS:
            self.first_rejects.append((line, reason))

    def records_table(self, table) -> None:
        self._flush_text()
        self._out.write(bulk_csv_buffer(table))
        self.record_count += table.num_rows
        if self.columnar is not None:
            self.columnar.table(table)

    def close(self) -> None:
        """Write what is buffered (call before the output streams close)."""
        self._flush_text()

    def _flush_text(self) -> None:
        text = self._text.getvalue()
        if text:
            self._out.write(text.encode("utf-8"))
            self._text.seek(0)
            self._text.truncate()


def _check_rejects(channel: ChannelSettings, day: dt.date, files: list[dict], first: list[tuple]) -> None:
    """More rejected rows than the channel's ``max_rejected_rows``: the statement cannot be trusted as a
    whole (like a control-total mismatch), and nothing is published for the channel and date."""
    rejected = sum(f["rejects"] for f in files)
    allowed = channel.max_rejected_rows
    if rejected <= allowed:
        return
    examples = "; ".join(f"{name} line {line}: {reason}" for name, line, reason in first)
    raise IntegrityError(
        f"{rejected} statement row(s) rejected, more than max_rejected_rows = {allowed} ({examples})",
        channel=channel.name, date=day.isoformat(), file=first[0][0], line=first[0][1],
        hint=f"download the statement again or ask the channel for a corrected one; to publish the other rows "
             f"and list these for review, raise max_rejected_rows under [channel] in {channel.conf_file}")


def normalize_channel(storage: Storage, channel: ChannelSettings, day: dt.date) -> dict:
    """Normalize D's landed statement of ``channel`` and publish it; returns the published manifest."""
    raw = landed_manifest(storage, channel.name, day)
    if raw is None:
        raise UnavailableError("no landed statement to normalize", channel=channel.name, date=day.isoformat(),
                               hint="run `recon download` for this date first")
    normalizer = make_normalizer(channel)
    storage.recover(posixpath.join("standard", channel.name))  # leftovers of a killed run
    final = standard_dir(channel.name, day)
    staged = storage.staging(posixpath.join("standard", channel.name), day.isoformat())
    files, first_rejects = [], []
    try:
        with storage.open_text_write(staged, "_rejects.csv") as rej_fh:
            rejects = csvio.writer(rej_fh)
            rejects.writerow(REJECT_COLUMNS)
            taken = {"_rejects.csv", "_manifest.json", "_success"}
            for entry in raw["files"]:
                name = entry["name"]
                out_name = standard_name(name, taken)
                parquet_name = columnar_name(out_name)
                with storage.open_write(staged, out_name) as rec_fh, \
                        storage.open_write(staged, parquet_name) as col_fh, \
                        storage.open_read(raw_dir(channel.name, day), name) as raw_fh:
                    columnar = ColumnarCopy(col_fh)
                    sink = _CsvSink(channel.name, day, name, rec_fh, rejects, columnar)
                    try:
                        report = normalizer.normalize(RawStatement(channel.name, day, name, raw_fh), sink)
                    except BaseException:
                        columnar.abandon()
                        raise
                    sink.close()
                    columnar.close()
                files.append({
                    "source_file": name, "raw_sha256": entry["sha256"], "standard_file": out_name,
                    "records": sink.record_count, "rejects": sink.reject_count,
                    "columnar_file": parquet_name, "columnar_rows": columnar.rows,
                    "control_totals": report.as_dict(),
                })
                first_rejects += [(name, line, reason) for line, reason in sink.first_rejects]
                log.info("channel %s date %s: %s -> %d standard rows, %d rejects", channel.name, day, name,
                         sink.record_count, sink.reject_count)
        _check_rejects(channel, day, files, first_rejects)
        storage.write_json({"channel": channel.name, "date": day.isoformat(), "normalizer": channel.normalizer,
                            "files": files}, staged, "_manifest.json")
        storage.write_bytes(b"", staged, "_SUCCESS")
    except ReconError:
        storage.delete(staged)
        if storage.exists(final):
            log.warning("channel %s date %s: withdrawing the previously published standard records", channel.name,
                        day)
            storage.delete(final)
        raise
    except BaseException:
        storage.delete(staged)
        raise
    storage.swap_in(staged, final)
    return storage.read_json(final, "_manifest.json")
