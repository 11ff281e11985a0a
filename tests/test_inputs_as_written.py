"""Inputs as real systems write them, through the whole reconcile: CRLF, a BOM, columns in another order.

Each variant of day 2's inputs must give byte for byte the data files of the
LF run in DESIGN's column order; a header that lacks, adds or repeats a
column, and a file Spark cannot parse, exit 4 naming the file, the column or
line, the cause, and no Py4J text.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from tests.conftest import DAY1, DAY2, run_cli
from tests.test_end_to_end import DATA_FILES, _recon, two_days  # noqa: F401  (the module's LF run)

pytestmark = pytest.mark.slow
BANNED = ("o3423", "collectToPython", "py4j", "Py4J", "An error occurred while calling", "\tat ", "at org.apache",
          "Traceback")


def _copy(two_days: Path, tmp_path: Path) -> Path:  # noqa: F811  (the fixture's name, as a plain argument)
    other = tmp_path / "demo"
    shutil.copytree(two_days, other)
    return other


def _table(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]], *, bom: bool = False, **fmt) -> None:
    """Rows as Python's csv module writes them by default (CRLF line ends), optionally after a BOM."""
    out = io.StringIO(newline="")
    csv.writer(out, **fmt).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"))


def _reordered(rows: list[list[str]]) -> list[list[str]]:
    order = list(reversed(range(len(rows[0]))))
    order[0], order[1] = order[1], order[0]  # not just reversed
    return [[r[i] for i in order] for r in rows]


def _reconcile(demo: Path, spark, day=DAY2) -> int:
    return run_cli("reconcile", "--conf", str(demo / "conf" / "pipeline.toml"), "--date", day.isoformat(),
                   spark=spark)


def _export(demo: Path) -> Path:
    return demo / "root" / "local" / DAY2.isoformat() / "orders.csv"


@pytest.mark.parametrize("variant", ["crlf", "bom", "reordered", "everything_crlf_bom_reordered"])
def test_an_export_as_written_by_other_tools_reconciles_byte_for_byte_like_the_lf_one(
        two_days, spark, tmp_path, variant):  # noqa: F811
    other = _copy(two_days, tmp_path)
    export = _export(other)
    rows = _table(export)
    assert b"\r" not in export.read_bytes()  # the LF run's export
    if variant == "crlf":
        _write(export, rows)
        assert export.read_bytes().count(b"\r\n") == len(rows)
    elif variant == "bom":
        export.write_bytes(b"\xef\xbb\xbf" + export.read_bytes())
    elif variant == "reordered":
        with export.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(_reordered(rows))
    else:  # every CSV the reconcile of day 2 reads, re-saved: the export, day 1's results, day 2's standard CSVs
        _write(export, _reordered(rows), bom=True)
        for name in ("open_items.csv", "corrections.csv"):
            path = _recon(other, DAY1) / name
            _write(path, _reordered(_table(path)), bom=True)
        std = sorted((other / "root" / "standard").glob(f"*/{DAY2}/[!_]*.csv"))
        assert std
        for path in std:
            _write(path, _reordered(_table(path)), bom=True)
            shutil.rmtree(path.parent / "_columnar", ignore_errors=True)  # so the CSV itself is read
    before = {name: (_recon(two_days, DAY2) / name).read_bytes() for name in DATA_FILES}
    assert _reconcile(other, spark) == 0
    after = {name: (_recon(other, DAY2) / name).read_bytes() for name in DATA_FILES}
    assert after == before


@pytest.mark.parametrize("change, column, said", [
    ("missing", "currency", "missing column 'currency'"),
    ("extra", "coupon", "unknown column 'coupon'"),
    ("duplicated", "status", "column 'status' more than once"),
])
def test_a_header_that_lacks_adds_or_repeats_a_column_exits_4_naming_file_and_column(
        two_days, spark, tmp_path, capsys, change, column, said):  # noqa: F811
    other = _copy(two_days, tmp_path)
    export = _export(other)
    rows = _table(export)
    i = rows[0].index(column) if column in rows[0] else None
    if change == "missing":
        rows = [r[:i] + r[i + 1:] for r in rows]
    elif change == "extra":
        rows = [r + (["coupon"] if n == 0 else ["0.00"]) for n, r in enumerate(rows)]
    else:
        rows = [r + [r[i]] for r in rows]
    _write(export, rows)
    before = (_recon(other, DAY2) / "summary.json").read_bytes()
    assert _reconcile(other, spark) == 4
    out = capsys.readouterr()
    text = out.out + out.err
    assert said in text and export.as_uri().replace("file:///", "file:/") in text.replace("file:///", "file:/")
    assert "fix the order system's export and re-run" in text
    assert not [b for b in BANNED if b in text]
    assert (_recon(other, DAY2) / "summary.json").read_bytes() == before  # nothing replaced


def test_an_export_row_with_too_few_fields_exits_4_with_file_line_and_cause(
        two_days, spark, tmp_path, capsys):  # noqa: F811
    other = _copy(two_days, tmp_path)
    export = _export(other)
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].rsplit(",", 2)[0] + "\n"  # the 4th line (3rd order) loses its last two fields
    export.write_text("".join(lines), encoding="utf-8")
    assert _reconcile(other, spark) == 4
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"{export.name} line 4" in text
    assert "the local orders export cannot be read: a row with 7 fields where the header has 9" in text
    assert "fix the order system's export and re-run" in text
    assert not [b for b in BANNED if b in text], text


def test_a_truncated_open_items_file_of_the_day_before_exits_4_with_file_and_cause(
        two_days, spark, tmp_path, capsys):  # noqa: F811
    other = _copy(two_days, tmp_path)
    items = _recon(other, DAY1) / "open_items.csv"
    data = items.read_bytes()
    assert data.count(b"\n") >= 2
    items.write_bytes(data[:-25])  # cut inside the last row, as a disk-full copy would
    assert _reconcile(other, spark) == 4
    out = capsys.readouterr()
    text = out.out + out.err
    assert "open_items.csv" in text and f"published for {DAY1}" in text and "line " in text
    assert "where the header has" in text and "restore" in text
    assert not [b for b in BANNED if b in text], text


def test_a_non_numeric_source_line_in_a_standard_csv_read_without_its_copy_exits_4(
        two_days, spark, tmp_path, capsys):  # noqa: F811
    other = _copy(two_days, tmp_path)
    std = sorted((other / "root" / "standard" / "wechatpay" / DAY2.isoformat()).glob("[!_]*.csv"))[0]
    shutil.rmtree(std.parent / "_columnar")
    rows = _table(std)
    rows[2][rows[0].index("source_line")] = "abc"
    with std.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    assert _reconcile(other, spark) == 4
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"{std.name} line 3" in text and "channel wechatpay" in text
    assert "value 'abc' of source_line is not a whole number" in text and "recon normalize" in text
    assert not [b for b in BANNED if b in text], text
