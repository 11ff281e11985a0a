"""Run a normalizer on a local sample file, in memory (golden tests and the regeneration command)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from core.settings import ChannelSettings
from normalizers.base import ControlReport, RawStatement, Sink
from normalizers.publish import make_normalizer
from normalizers.publish import reject_row
from schemas import csvio, standard
from schemas.outputs import REJECT_COLUMNS
from schemas.standard import StandardRecord


class MemorySink(Sink):
    """Collects records and rejects as CSV text, exactly as the published files hold them, and the
    Parquet copy of the records as ``normalize_channel`` writes it (``columnar_table()``)."""

    def __init__(self, channel: str, day: dt.date, source_file: str):
        import pyarrow as pa

        from normalizers.publish import ColumnarCopy

        self.channel, self.day, self.source_file = channel, day.isoformat(), source_file
        self._parquet = pa.BufferOutputStream()
        self.columnar = ColumnarCopy(self._parquet, batch_rows=3, group_rows=4)  # small: several batches and groups
        self._columnar_table = None
        self.records_io, self.rejects_io = io.StringIO(newline=""), io.StringIO(newline="")
        self._records, self._rejects = csvio.writer(self.records_io), csvio.writer(self.rejects_io)
        self._records.writerow(standard.COLUMNS)
        self._rejects.writerow(REJECT_COLUMNS)
        self.records: list = []
        self.reject_lines: list[int] = []
        self.reject_orders: list[str] = []  # the order number each reject names ("" when unreadable)
        self.bulk_batches = 0  # batches written by a normalizer's bulk path

    def record(self, rec) -> None:
        self.records.append(rec)
        self._records.writerow(rec.as_csv_row())
        self.columnar.record(rec)

    def records_table(self, table) -> None:
        from normalizers.publish import bulk_csv

        self.bulk_batches += 1
        self.records.extend(StandardRecord(**row) for row in table.to_pylist())
        self.records_io.write(bulk_csv(table))
        self.columnar.table(table)

    def columnar_table(self):
        """The Parquet copy of the records, read back (the copy is closed on the first call)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._columnar_table is None:
            self.columnar.close()
            self._columnar_table = pq.read_table(pa.BufferReader(self._parquet.getvalue()))
        return self._columnar_table

    def reject(self, line: int, reason: str, raw: str, order_no: str = "") -> None:
        self.reject_lines.append(line)
        self.reject_orders.append(order_no)
        self._rejects.writerow(reject_row(self.channel, self.day, self.source_file, line, reason, raw, order_no))


def channel_for(normalizer: str, name: str | None = None, **options) -> ChannelSettings:
    """A minimal channel configuration for running ``normalizer`` outside a pipeline."""
    return ChannelSettings(name=name or normalizer, normalizer=normalizer, download={"type": "localdir"},
                           conf_file="<test>", normalizer_options=options)


def normalize_bytes(channel: ChannelSettings, name: str, data: bytes,
                    day: dt.date = dt.date(2026, 11, 20)) -> tuple[MemorySink, ControlReport]:
    sink = MemorySink(channel.name, day, name)
    report = make_normalizer(channel).normalize(RawStatement(channel.name, day, name, io.BytesIO(data)), sink)
    return sink, report


def normalize_file(channel: ChannelSettings, path: Path, day: dt.date = dt.date(2026, 11, 20)):
    return normalize_bytes(channel, path.name, path.read_bytes(), day)
