"""Normalize a landed statement and publish standard/{channel}/{D}/ atomically.

Published folder: ``<statement>.csv`` (standard records), ``_rejects.csv``,
``_manifest.json`` (counts, control totals, source checksums) and
``_SUCCESS``. Names starting with ``_`` are invisible to Spark's reader, so
the job reads the folder and sees only standard rows. When a statement fails
an integrity check nothing is published for that channel and date, and a
result published earlier from another download is withdrawn.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath

from connectors.landing import landed_manifest, raw_dir
from normalizers.base import Normalizer, RawStatement, Sink
from recon import registry
from recon.config import ChannelSettings
from recon.errors import ReconError, UnavailableError
from recon.storage import Storage
from schemas import csvio, standard
from schemas.outputs import REJECT_COLUMNS
from schemas.standard import StandardRecord

log = logging.getLogger(__name__)


def standard_dir(channel: str, day: dt.date) -> str:
    return posixpath.join("standard", channel, day.isoformat())


def is_published(storage: Storage, channel: str, day: dt.date) -> bool:
    return storage.is_file(standard_dir(channel, day), "_SUCCESS")


def bulk_csv(table) -> str:
    """CSV rows (no header) of a standard-record table, byte-identical to ``csvio.writer``'s.

    The bulk path is only given values that need no quoting (normalizers
    check), so Arrow's unquoted writer and Python's minimal quoting agree.
    """
    import io

    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return buf.getvalue().decode("utf-8")


def make_normalizer(channel: ChannelSettings) -> Normalizer:
    cls = registry.load(channel.normalizer, package="normalizers", attribute="NORMALIZER",
                        conf_file=channel.conf_file)
    return cls(channel)


class _CsvSink(Sink):
    def __init__(self, channel: str, day: dt.date, source_file: str, records_out, rejects_out):
        self.channel, self.day, self.source_file = channel, day.isoformat(), source_file
        self._out = records_out
        self.records = csvio.writer(records_out)
        self.rejects = rejects_out
        self.record_count = 0
        self.reject_count = 0

    def record(self, rec: StandardRecord) -> None:
        self.records.writerow(rec.as_csv_row())
        self.record_count += 1

    def reject(self, line: int, reason: str, raw: str) -> None:
        self.rejects.writerow([self.channel, self.day, self.source_file, line, reason, raw])
        self.reject_count += 1

    def records_table(self, table) -> None:
        self._out.write(bulk_csv(table))
        self.record_count += table.num_rows


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
    files = []
    try:
        with storage.open_text_write(staged, "_rejects.csv") as rej_fh:
            rejects = csvio.writer(rej_fh)
            rejects.writerow(REJECT_COLUMNS)
            for entry in raw["files"]:
                name = entry["name"]
                out_name = posixpath.splitext(name)[0] + ".csv"
                with storage.open_text_write(staged, out_name) as rec_fh, \
                        storage.open_read(raw_dir(channel.name, day), name) as raw_fh:
                    csvio.writer(rec_fh).writerow(standard.COLUMNS)
                    sink = _CsvSink(channel.name, day, name, rec_fh, rejects)
                    report = normalizer.normalize(RawStatement(channel.name, day, name, raw_fh), sink)
                files.append({
                    "source_file": name, "raw_sha256": entry["sha256"], "standard_file": out_name,
                    "records": sink.record_count, "rejects": sink.reject_count,
                    "control_totals": report.as_dict(),
                })
                log.info("channel %s date %s: %s -> %d standard rows, %d rejects", channel.name, day, name,
                         sink.record_count, sink.reject_count)
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
