"""report.html and report.xlsx, built from a real two-day pipeline run (one Spark run pair per module).

The HTML is checked as Chromium renders it (headless, --dump-dom), the
workbook as openpyxl reads it back; both against summary.json. A copy of
the second date with its rows multiplied past the page's cap checks what
the page leaves out and that the workbook still holds every row.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import html.parser
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reports import xlsxstream
from reports.build import range_folder, write_range_report, write_reports
from reports.data import break_sort_key, open_item_sort_key
from reports.html import HTML_ROW_LIMIT
from reports.shortlist import Shortlist
from reports.xlsx import COUNT_FORMAT, FORMULA_START, MONEY_FORMAT, ReportWorkbook, safe_text
import reports.xlsx
from schemas.masking import CARD_RE, mask_card, mask_payer, mask_record, mask_text
from tests.conftest import DAY1, DAY2, run_cli

CHROMIUM = Path("/usr/bin/chromium")
CARD = "6222021234567890123"          # 19 digits
CARD16 = "4111 1111 1111 1111"         # grouped, as a person would type it
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
EVIL = '=HYPERLINK("http://x","y")'
OPENID_RE = re.compile(r"o[A-Za-z0-9_-]{27}")


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    """A two-day demo reconciled in-process, with this module's reports written on both dates."""
    from core.storage import Storage
    from recon.config import load_settings
    from recon.demo import Demo

    out = tmp_path_factory.mktemp("reports") / "demo"
    Demo(DAY1, 2, orders_per_day=40).build().write(out)  # what the demo_dir fixture builds, once per module
    conf = str(out / "conf" / "pipeline.toml")
    for day in (DAY1, DAY2):
        assert run_cli("run", "--conf", conf, "--date", day.isoformat(), spark=spark) == 0
    storage = Storage(load_settings(conf).root)
    for day in (DAY1, DAY2):  # until the job calls write_reports itself
        write_reports(storage, f"recon/{day}", day)
    return storage


@pytest.fixture(scope="module")
def injected(root):
    """A copy of DAY2's published files with hostile text, a card number and an openid put in, re-reported."""
    folder = "scratch/injected"
    root.delete(folder)
    for name in ("discrepancies.csv", "open_items.csv", "summary.json"):
        data = root.read_bytes(f"recon/{DAY2}", name)
        if name.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
            fields = list(rows[0])
            if name == "discrepancies.csv":
                rows[0]["note"] = EVIL
                rows[1]["note"] = f"payer card {CARD16}, openid {OPENID}, bank card {CARD}"
                rows[2]["local_status"] = "+SUM(A1)"
            else:
                rows[0]["payer_id"] = EVIL
                rows[1]["payer_id"] = CARD
                rows[2]["payer_id"] = OPENID
                rows[3]["bank"] = f"-{CARD}"
            buf = io.StringIO()
            w = csv.DictWriter(buf, fields, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            data = buf.getvalue().encode("utf-8")
        root.write_bytes(data, folder, name)
    write_reports(root, folder, DAY2)
    return folder


def read_rows(storage, folder, name) -> list[dict]:
    return list(csv.DictReader(io.StringIO(storage.read_bytes(folder, name).decode("utf-8"))))


def write_rows(storage, folder, name, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    storage.write_bytes(buf.getvalue().encode("utf-8"), folder, name)


BREAKS_PAST_CAP = HTML_ROW_LIMIT + 600
ITEMS_PAST_CAP = HTML_ROW_LIMIT + 300


def multiplied(root, folder: str) -> str:
    """DAY2's files in ``folder`` with the breaks and open items copied past the page's cap.

    Each copy gets its own order number and amounts moved by a few cents (so
    sums tell rows apart); open items get ages 0-6 and some are open breaks.
    discrepancies.csv keeps the job's sort (channel, category, order, refund).
    """
    root.delete(folder)
    day = f"recon/{DAY2}"
    breaks, items = read_rows(root, day, "discrepancies.csv"), read_rows(root, day, "open_items.csv")
    rows = []
    for k in range(BREAKS_PAST_CAP):
        row = dict(breaks[k % len(breaks)], order_no=f"{breaks[k % len(breaks)]['order_no']}-{k:05d}")
        for col in ("local_amount", "channel_amount"):
            if row[col]:
                row[col] = str(Decimal(row[col]) + Decimal(k % 97) / 100)
        rows.append(row)
    rows.sort(key=lambda r: (r["channel"], r["category"], r["order_no"], r["refund_no"]))
    write_rows(root, folder, "discrepancies.csv", rows)
    opened = [dict(items[k % len(items)], order_no=f"{items[k % len(items)]['order_no']}-{k:05d}", age_days=str(k % 7),
                   carried_as="LOCAL_ONLY" if k % 5 == 0 else "") for k in range(ITEMS_PAST_CAP)]
    write_rows(root, folder, "open_items.csv", opened)
    root.write_bytes(root.read_bytes(day, "summary.json"), folder, "summary.json")
    return folder


@pytest.fixture(scope="module")
def many(root):
    """``multiplied`` files, reported with the real page cap and sheet size."""
    folder = multiplied(root, "scratch/many")
    write_reports(root, folder, DAY2)
    return folder


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium; installed with apt-get when missing."""
    if not CHROMIUM.exists() and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is needed at /usr/bin/chromium: run `apt-get install -y chromium` (Debian)")
    return CHROMIUM


def browse(chromium: Path, page: Path, tmp: Path, *extra: str) -> str:
    """Run headless Chromium on a local page (no network) and return its stdout."""
    cmd = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", *extra, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Metrics(html.parser.HTMLParser):
    """data-metric elements of a DOM: name -> (data-value, rendered text)."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, tuple[str, str]] = {}
        self._open: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-metric" in a:
            self._open.append((a["data-metric"], a.get("data-value", "")))
            self.text.append("")

    def handle_data(self, data):
        if self._open:
            self.text[-1] += data

    def handle_endtag(self, tag):
        if self._open and tag in ("span", "td"):
            name, value = self._open.pop()
            self.found[name] = (value, self.text.pop().strip())


def local_file(storage, *parts) -> Path:
    return Path(storage.path(*parts))


def summary_of(storage, folder):
    return storage.read_json(folder, "summary.json")


def all_text(workbook) -> str:
    return "\n".join(str(c.value) for ws in workbook.worksheets for row in ws.iter_rows() for c in row
                     if c.value is not None)


def load_xlsx(storage, folder):
    from openpyxl import load_workbook

    return load_workbook(io.BytesIO(storage.read_bytes(folder, "report.xlsx")))


# -- 1. the page as Chromium renders it --------------------------------------------------------------------------

def test_rendered_page_shows_summary_numbers(root, chromium, tmp_path):
    folder = f"recon/{DAY2}"
    page = local_file(root, folder, "report.html")
    dom = browse(chromium, page, tmp_path, "--dump-dom")
    parser = Metrics()
    parser.feed(dom)
    got = parser.found
    summary = summary_of(root, folder)

    def check(name, expected):
        value, shown = got[name]
        if isinstance(expected, int):
            assert int(value) == expected and int(shown) == expected, name
        else:
            assert Decimal(value) == Decimal(expected) and Decimal(shown.replace(",", "")) == Decimal(expected), name

    for ch, v in summary["channels"].items():
        for side in ("local", "channel"):
            check(f"{ch}.{side}.records", v[side]["records"])
            check(f"{ch}.{side}.amount", v[side]["amount"])
        for cat, c in v["categories"].items():
            for side in ("local", "channel"):
                check(f"{ch}.{cat}.{side}.records", c[side]["records"])
                check(f"{ch}.{cat}.{side}.amount", c[side]["amount"])
            check(f"{ch}.{cat}.rows", c["rows"])
    for key, v in summary["roll_forward"].items():
        check(f"roll_forward.{key}.records", v["records"])
        check(f"roll_forward.{key}.amount", v["amount"])
    rf = summary["roll_forward"]
    assert rf["opening"]["records"] > 0, "DAY2 should carry items from DAY1"
    assert "opening + new − cleared = closing" in dom and "✗" not in dom
    # Every listed row is on the page (fewer than the cap), and the page is self-contained.
    listed = sum(v["discrepancy_rows"] for v in summary["channels"].values())
    assert listed < HTML_ROW_LIMIT
    assert f'data-rows="{listed}" data-total-rows="{listed}"' in dom and "not shown" not in dom
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", dom), "the page must not load anything"
    assert "<script" not in dom.lower()
    shot = tmp_path / "report.png"  # kept out of the repo; look at it when changing the layout
    browse(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert shot.stat().st_size > 10_000


# -- 2. the workbook ---------------------------------------------------------------------------------------------

def test_workbook_sheets_numbers_and_layout(root):
    folder = f"recon/{DAY2}"
    summary = summary_of(root, folder)
    wb = load_xlsx(root, folder)
    disc = list(csv.DictReader(io.StringIO(root.read_bytes(folder, "discrepancies.csv").decode("utf-8"))))
    present = {r["category"] for r in disc}
    assert wb.sheetnames[0] == "Summary" and wb.sheetnames[-1] == "Open items"
    assert len(wb.sheetnames) == len(present) + 2
    # the demo's WeChat bill has a rejected row: its headline sits above the Summary table, then a blank row
    headline = ("wechatpay: 1 statement row was rejected and the statement's totals are unverified; each rejected "
                "row is listed as CHANNEL_ROW_REJECTED for review")
    assert summary["channels"]["wechatpay"]["rejects"] == 1
    ws = wb["Summary"]
    assert [ws["A1"].value, ws["A2"].value] == [headline, None]
    top = 3
    for sheet in wb.worksheets:
        first = top if sheet.title == "Summary" else 1
        assert sheet.freeze_panes == f"A{first + 1}", sheet.title
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith(f"A{first}:"), sheet.title

    header = [c.value for c in ws[top]]
    assert header[:2] == ["Channel", "Category"]
    seen_totals = 0
    for row in ws.iter_rows(min_row=top + 1):
        if row[0].value is None:
            break
        ch, cat = row[0].value, row[1].value
        v = summary["channels"][ch] if cat == "TOTAL" else summary["channels"][ch]["categories"][cat]
        seen_totals += cat == "TOTAL"
        cells = dict(zip(header, row))
        for side in ("Local", "Channel"):
            amount = cells[f"{side} amount"]
            assert amount.data_type == "n" and amount.number_format == MONEY_FORMAT
            assert Decimal(str(amount.value)) == Decimal(v[side.lower()]["amount"])
            assert cells[f"{side} records"].value == v[side.lower()]["records"]
    assert seen_totals == len(summary["channels"])

    for cat in present:
        rows = [r for r in disc if r["category"] == cat]
        sheet = next(s for s in wb.worksheets[1:-1] if s["B2"].value == cat or s.title == cat[:31])
        cols = [c.value for c in sheet[1]]
        body = list(sheet.iter_rows(min_row=2))
        assert len(body) == len(rows)
        amount_cells = [r[cols.index("channel_amount")] for r in body if r[cols.index("channel_amount")].value
                        is not None]
        assert all(c.data_type == "n" and c.number_format == MONEY_FORMAT for c in amount_cells)
        expected = sum((Decimal(r["channel_amount"]) for r in rows if r["channel_amount"]), Decimal("0"))
        assert sum((Decimal(str(c.value)) for c in amount_cells), Decimal("0")) == expected


# -- 3. formula injection ----------------------------------------------------------------------------------------

def test_hostile_text_arrives_as_text(root, injected, chromium, tmp_path):
    wb = load_xlsx(root, injected)
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row
             if isinstance(c.value, str) and c.value.lstrip("'").startswith("=")]
    # the note (whole) and the payer field (masked, but still starting with "=")
    assert any("HYPERLINK" in c.value for c in cells) and any(c.parent.title == "Open items" for c in cells)
    for c in cells:
        assert c.data_type == "s" and c.value.startswith("'"), (c.coordinate, c.value)
    plus = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value and "SUM(A1)" in str(c.value)]
    assert plus and all(c.data_type == "s" and c.value == "'+SUM(A1)" for c in plus)

    raw = root.read_bytes(injected, "report.html").decode("utf-8")
    assert EVIL not in raw and html_escape(EVIL) in raw
    dom = browse(chromium, local_file(root, injected, "report.html"), tmp_path, "--dump-dom")
    assert "<a " not in dom.lower()  # rendered as text, nothing became a link


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# -- 4. masking --------------------------------------------------------------------------------------------------

def test_no_card_number_or_openid_leaks(root, injected):
    raw_bill = "".join(root.read_bytes(f"raw/wechatpay/{d}", n).decode("utf-8", "replace")
                       for d in (DAY1, DAY2) for n in root.list(f"raw/wechatpay/{d}") if n.endswith(".csv"))
    openids = set(OPENID_RE.findall(raw_bill)) | {OPENID}
    assert len(openids) > 10
    for folder in (injected, f"recon/{DAY1}", f"recon/{DAY2}", range_folder(DAY1, DAY2)):
        if folder.startswith("reports/"):
            write_range_report(root, DAY1, DAY2)
        page = root.read_bytes(folder, "report.html").decode("utf-8")
        book = all_text(load_xlsx(root, folder))
        for text in (page, book):
            digits = re.sub(r"(?<=\d)[ -](?=\d)", "", text)
            assert CARD not in digits and CARD16.replace(" ", "") not in digits
            leaked = [o for o in openids if o in text]
            assert not leaked, (folder, leaked[:3])
    page = root.read_bytes(injected, "report.html").decode("utf-8")
    assert mask_card(CARD) in page and mask_payer(OPENID) in page


def test_range_report(root):
    paths = write_range_report(root, DAY1 - dt.timedelta(days=1), DAY2)
    assert paths == [f"{range_folder(DAY1 - dt.timedelta(days=1), DAY2)}/report.html",
                     f"{range_folder(DAY1 - dt.timedelta(days=1), DAY2)}/report.xlsx"]
    wb = load_xlsx(root, range_folder(DAY1 - dt.timedelta(days=1), DAY2))
    s1, s2 = summary_of(root, f"recon/{DAY1}"), summary_of(root, f"recon/{DAY2}")
    ws = wb["Summary"]
    totals = {r[0].value: r for r in ws.iter_rows(min_row=2) if r[1].value == "TOTAL"}
    for ch in totals:
        want = sum(Decimal(s["channels"].get(ch, {}).get("local", {}).get("amount", "0")) for s in (s1, s2))
        assert Decimal(str(totals[ch][4].value)) == want
    # Both dates' rows, each with its date, on the category sheets; the page lists them all (under the cap).
    both = read_rows(root, f"recon/{DAY1}", "discrepancies.csv") + read_rows(root, f"recon/{DAY2}", "discrepancies.csv")
    assert xlsx_breaks(wb) == csv_breaks(both)
    assert all(s["A1"].value == "date" for s in wb.worksheets[1:-1])
    assert {s.cell(row=r, column=1).value for s in wb.worksheets[1:-1] for r in range(2, s.max_row + 1)} == {
        DAY1.isoformat(), DAY2.isoformat()}
    page = root.read_bytes(range_folder(DAY1 - dt.timedelta(days=1), DAY2), "report.html").decode("utf-8")
    assert f'data-rows="{len(both)}" data-total-rows="{len(both)}"' in page


# -- 5. more rows than the page lists ----------------------------------------------------------------------------

def xlsx_breaks(wb) -> dict[str, tuple[int, Decimal, Decimal]]:
    """(rows, local amount, channel amount) per category over every break sheet; amounts must be money cells."""
    out: dict[str, tuple[int, Decimal, Decimal]] = {}
    for ws in wb.worksheets[1:]:
        if ws.title.startswith("Open items"):
            continue
        cols = [c.value for c in ws[1]]
        for row in ws.iter_rows(min_row=2):
            cat = row[cols.index("category")].value
            n, local, chan = out.get(cat, (0, Decimal("0"), Decimal("0")))
            amounts = []
            for name in ("local_amount", "channel_amount"):
                cell = row[cols.index(name)]
                if cell.value is not None:
                    assert cell.data_type == "n" and cell.number_format == MONEY_FORMAT, (ws.title, cell.coordinate)
                amounts.append(Decimal("0") if cell.value is None else Decimal(str(cell.value)))
            out[cat] = (n + 1, local + amounts[0], chan + amounts[1])
    return out


def csv_breaks(rows: list[dict]) -> dict[str, tuple[int, Decimal, Decimal]]:
    out: dict[str, tuple[int, Decimal, Decimal]] = {}
    for r in rows:
        n, local, chan = out.get(r["category"], (0, Decimal("0"), Decimal("0")))
        out[r["category"]] = (n + 1, local + Decimal(r["local_amount"] or "0"),
                              chan + Decimal(r["channel_amount"] or "0"))
    return out


def listed(page: str, table: str) -> list[list[str]]:
    """The words of each cell of each body row of the table with id ``table`` (tags dropped)."""
    body = re.search(rf'<table[^>]* id="{table}"[^>]*>.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    words = lambda cell: html.unescape(re.sub(r"<[^>]+>", " ", cell.replace("<wbr>", ""))).split()  # noqa: E731
    return [[words(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


def test_page_lists_the_most_urgent_rows_up_to_the_cap(root, many, chromium, tmp_path):
    page = root.read_bytes(many, "report.html").decode("utf-8")
    rows = read_rows(root, many, "discrepancies.csv")
    assert len(rows) == BREAKS_PAST_CAP > HTML_ROW_LIMIT
    shown = listed(page, "breaks")
    assert len(shown) == HTML_ROW_LIMIT
    assert f'data-rows="{HTML_ROW_LIMIT}" data-total-rows="{BREAKS_PAST_CAP}"' in page
    # Most urgent first: the page's rows are the first of a stable sort of the file by the break order.
    want = sorted(rows, key=break_sort_key)[:HTML_ROW_LIMIT]
    assert [(r[0][0], r[1][0], r[2][0]) for r in shown] == [(w["channel"], w["category"], w["order_no"]) for w in want]
    assert shown[0][1][1:] == ["needs", "review"] and any(r["category"] == "CLEARED_LATE" for r in rows)
    assert not any(r[1][0] == "CLEARED_LATE" for r in shown), "the least urgent rows are the ones left out"
    # The reader is told how many rows are not shown and where they all are.
    missing = BREAKS_PAST_CAP - HTML_ROW_LIMIT
    note = re.search(r'<p class="capped" id="breaks-not-shown">(.*?)</p>', page, re.S).group(1)
    assert f'data-metric="breaks.not_shown" data-value="{missing}">{missing:,}</span>' in note
    assert f"Showing the {HTML_ROW_LIMIT:,} most urgent" in note and f"of {BREAKS_PAST_CAP:,} rows" in note
    assert "discrepancies.csv" in note and "report.xlsx" in note
    assert f"Break list ({BREAKS_PAST_CAP:,} rows)" in page
    dom = browse(chromium, local_file(root, many, "report.html"), tmp_path, "--dump-dom")
    text = re.sub(r"<[^>]+>", "", dom)
    assert f"{missing:,} rows are not shown here: every one is in discrepancies.csv and in report.xlsx" in text


def test_page_lists_open_items_up_to_the_cap(root, many):
    page = root.read_bytes(many, "report.html").decode("utf-8")
    items = read_rows(root, many, "open_items.csv")
    shown = listed(page, "open-items")
    assert len(shown) == HTML_ROW_LIMIT and len(items) == ITEMS_PAST_CAP
    typed = [dict(r, age_days=int(r["age_days"])) for r in items]
    want = sorted(typed, key=open_item_sort_key)[:HTML_ROW_LIMIT]
    assert [r[4][0] for r in shown] == [w["order_no"] for w in want]
    assert shown[0][2] == ["LOCAL_ONLY"] and shown[0][-1] == ["6"], "open breaks first, the longest open first"
    missing = ITEMS_PAST_CAP - HTML_ROW_LIMIT
    assert f'data-metric="open_items.not_shown" data-value="{missing}"' in page
    assert "every one is in open_items.csv and in report.xlsx (sheet Open items)" in page


def test_workbook_holds_every_row_past_the_cap(root, many):
    wb = load_xlsx(root, many)
    rows = read_rows(root, many, "discrepancies.csv")
    assert xlsx_breaks(wb) == csv_breaks(rows)  # conservation: count and amounts per category
    assert wb["Open items"].max_row - 1 == ITEMS_PAST_CAP
    assert not [n for n in wb.sheetnames if n.endswith(")")], "no sheet is near Excel's row limit"


def test_workbook_continues_a_category_past_the_sheet_limit(root, monkeypatch):
    folder = multiplied(root, "scratch/spill")
    monkeypatch.setattr(reports.xlsx, "MAX_SHEET_ROWS", 101)  # 100 rows under each header
    write_reports(root, folder, DAY2)
    wb = load_xlsx(root, folder)
    rows = read_rows(root, folder, "discrepancies.csv")
    assert xlsx_breaks(wb) == csv_breaks(rows)
    counts = {c: n for c, (n, _, _) in csv_breaks(rows).items()}
    big = max((c for c in counts if len(c) <= 26), key=counts.get)  # a name that takes " (2)" unshortened
    assert counts[big] > 200
    names = wb.sheetnames
    parts = [big[:31]] + [f"{big} ({k})" for k in range(2, -(-counts[big] // 100) + 1)]
    start = names.index(parts[0])
    assert names[start:start + len(parts)] == parts, "a category's further sheets follow it"
    for name in parts:
        ws = wb[name]
        assert ws["B1"].value == "category" and ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:Q{ws.max_row}"
        assert ws.max_row == (101 if name != parts[-1] else counts[big] - 100 * (len(parts) - 1) + 1)
    assert names[0] == "Summary" and names[-1].startswith("Open items (")
    summary_text = all_text_of(wb["Summary"])
    assert f"{big}: {counts[big]:,} rows, more than one sheet holds" in summary_text
    assert "continued on sheets " + ", ".join(parts) in summary_text


def all_text_of(ws) -> str:
    return "\n".join(str(c.value) for row in ws.iter_rows() for c in row if c.value is not None)


# -- 6. the workbook file itself (reports.xlsxstream) -----------------------------------------------------------

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
CT = "{http://schemas.openxmlformats.org/package/2006/content-types}"
# The order CT_Worksheet and CT_Stylesheet prescribe (of the elements we write): Excel refuses others.
SHEET_ORDER = ["sheetPr", "dimension", "sheetViews", "sheetFormatPr", "cols", "sheetData", "autoFilter", "pageMargins"]
STYLES_ORDER = ["numFmts", "fonts", "fills", "borders", "cellStyleXfs", "cellXfs", "cellStyles", "dxfs"]
CELL_REF = re.compile(r"([A-Z]+)([0-9]+)")


def in_order(element, order: list[str]) -> bool:
    tags = [child.tag.removeprefix(MAIN) for child in element]
    return all(t in order for t in tags) and tags == sorted(tags, key=order.index) and len(set(tags)) == len(tags)


def column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def xlsx_parts(data: bytes) -> dict[str, ET.Element]:
    """Every part of an .xlsx parsed by an XML parser (so: well-formed), after checking the package holds together:
    content types for each part, relationships to parts that exist, schema element order, style indexes in range,
    rows and cells in order with references that agree."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert len(names) == len(set(names)) and names[0] == "[Content_Types].xml"
        parts = {n: ET.fromstring(zf.read(n)) for n in names}
    overrides = {o.get("PartName").lstrip("/") for o in parts["[Content_Types].xml"].iter(f"{CT}Override")}
    assert overrides == {n for n in names if not n.endswith(".rels") and n != "[Content_Types].xml"}
    (main,) = parts["_rels/.rels"].iter(f"{PKG_REL}Relationship")
    assert main.get("Target") == "xl/workbook.xml"
    rels = {r.get("Id"): "xl/" + r.get("Target") for r in parts["xl/_rels/workbook.xml.rels"]}
    assert set(rels.values()) == {n for n in names if n.startswith("xl/") and not n.endswith(".rels")} - {
        "xl/workbook.xml"}
    sheets = [rels[s.get(f"{DOC_REL}id")] for s in parts["xl/workbook.xml"].iter(f"{MAIN}sheet")]
    assert sorted(sheets) == sorted(n for n in names if n.startswith("xl/worksheets/"))
    styles = parts["xl/styles.xml"]
    assert in_order(styles, STYLES_ORDER)
    xfs = styles.find(f"{MAIN}cellXfs")
    assert int(xfs.get("count")) == len(xfs)
    for name in sheets:
        ws = parts[name]
        assert in_order(ws, SHEET_ORDER), name
        assert {child.tag for child in ws.find(f"{MAIN}sheetData")} <= {f"{MAIN}row"}, name
        last_row = 0
        for row in ws.iter(f"{MAIN}row"):
            r = int(row.get("r"))
            assert r > last_row, (name, r)
            last_row, last_col = r, 0
            for c in row:
                letters, digits = CELL_REF.fullmatch(c.get("r")).groups()
                assert int(digits) == r and column_number(letters) > last_col, (name, c.get("r"))
                last_col = column_number(letters)
                assert int(c.get("s", "0")) < len(xfs), (name, c.get("r"))
                assert (c.get("t") == "inlineStr") == (c.find(f"{MAIN}is") is not None) != (c.find(f"{MAIN}v") is
                                                                                              not None)
    return parts


def test_report_files_are_well_formed_packages(root, injected, many):
    for folder in (f"recon/{DAY2}", injected, many):
        data = root.read_bytes(folder, "report.xlsx")
        parts = xlsx_parts(data)
        names = [s.get("name") for s in parts["xl/workbook.xml"].iter(f"{MAIN}sheet")]
        assert names == load_xlsx(root, folder).sheetnames
        filters = {d.get("localSheetId"): d.text for d in parts["xl/workbook.xml"].iter(f"{MAIN}definedName")}
        assert len(filters) == len(names), "each sheet's filter range has Excel's _FilterDatabase name"


TRICKY = 'Tom & Jerry <b>"quoted"</b> isn\'t ]]> 支付宝付款 · 微信支付 💳'
SPACED = "  two lines\r\nand a\ttab  "


def written_book(breaks: list[dict], items: list[dict] = ()) -> bytes:
    out = io.BytesIO()
    with ReportWorkbook() as book:
        for row in breaks:
            book.add_break(row)
        for row in items:
            book.add_open_item(row)
        book.save(out, title="Payment reconciliation 2026-11-20", summary={"channels": {}}, fees={})
    return out.getvalue()


def test_workbook_is_well_formed_and_text_round_trips_exactly():
    from openpyxl import load_workbook

    amounts = [Decimal("12345678901.23"), Decimal("-0.10"), Decimal("0.00")]
    breaks = [{"channel": "alipay", "category": "AMOUNT_MISMATCH", "order_no": f"S{k}", "note": TRICKY,
               "local_status": SPACED, "local_amount": amounts[k], "channel_amount": None, "age_days": k}
              for k in range(3)]
    data = written_book(breaks, [{"order_no": "S9", "payer_id": TRICKY, "amount": Decimal("7.05")}])
    assert written_book(breaks, [{"order_no": "S9", "payer_id": TRICKY, "amount": Decimal("7.05")}]) == data, \
        "the same rows give the same bytes"
    parts = xlsx_parts(data)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Summary", "AMOUNT_MISMATCH", "Open items"]
    ws = wb["AMOUNT_MISMATCH"]
    cols = [c.value for c in ws[1]]
    body = list(ws.iter_rows(min_row=2))
    assert len(body) == 3 and ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:Q4"
    assert ws.sheet_properties.tabColor.rgb.endswith("C2410C")
    for k, row in enumerate(body):
        note, status = row[cols.index("note")], row[cols.index("local_status")]
        assert note.value == TRICKY and note.data_type == "s"
        assert status.value == SPACED and status.data_type == "s"
        amount = row[cols.index("local_amount")]
        assert amount.data_type == "n" and amount.number_format == MONEY_FORMAT
        assert Decimal(str(amount.value)) == amounts[k]
        age = row[cols.index("age_days")]
        assert age.value == k and age.data_type == "n" and age.number_format == COUNT_FORMAT
        assert row[cols.index("channel_amount")].value is None
    items = wb["Open items"]
    item_cols = [c.value for c in items[1]]
    assert items.cell(2, item_cols.index("payer_id") + 1).value == TRICKY
    # The file itself: the decimal text exactly (never through float), the text exactly, UTF-8.
    sheet = parts["xl/worksheets/sheet2.xml"]
    values = [v.text for v in sheet.iter(f"{MAIN}v")]
    assert [v for v in values if "." in v] == ["12345678901.23", "-0.10", "0.00"]
    texts = ["".join(t.itertext()) for t in sheet.iter(f"{MAIN}is")]
    assert texts.count(TRICKY) == 3 and texts.count(SPACED) == 3
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        raw = zf.read("xl/worksheets/sheet2.xml").decode("utf-8")
    assert "Tom &amp; Jerry &lt;b&gt;" in raw and "支付宝付款" in raw and "&#13;" in raw
    assert 'xml:space="preserve"' in raw


def xstring(text: str) -> str:
    """SpreadsheetML's own escapes decoded (_xHHHH_ is a character), as Excel reads cell text."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=4))
@example(["_x0041_ stays _x005F_x1234_x5678_", "\x01 \uffff\ufffe", "", " \r"])
def test_any_text_round_trips_through_the_writer(texts):
    from openpyxl import load_workbook

    out = io.BytesIO()
    with xlsxstream.Workbook() as book:
        book.add_sheet("t").append(texts)
        book.save(out)
    xlsx_parts(out.getvalue())
    row = next(load_workbook(io.BytesIO(out.getvalue())).active.iter_rows(max_col=len(texts)))
    # openpyxl hands over the raw text: decoding _xHHHH_ gives back every character, controls included.
    assert [None if c.value is None else xstring(c.value) for c in row] == [t or None for t in texts]


def test_writer_refuses_what_it_cannot_write_and_stays_well_formed():
    out = io.BytesIO()
    with xlsxstream.Workbook() as book:
        ws = book.add_sheet("Breaks", freeze_rows=1)
        for bad in (1.5, True, Decimal("NaN"), Decimal("Infinity")):
            with pytest.raises((TypeError, ValueError)):
                ws.append(["ok", bad])
        assert ws.rows == 0, "a refused row leaves nothing behind"
        ws.append(["ok", 1])
        for name in ("", "x" * 32, "a/b", "[x]", "'quoted'", "breaks"):
            with pytest.raises(ValueError):
                book.add_sheet(name)
        for ref in ("A1", "B1:A2", "A2:B1", "A0:B1", "A1:XFE2"):
            with pytest.raises(ValueError):
                ws.auto_filter(ref)
        ws.auto_filter("A1:B2")
        book.add_sheet("It's 31 characters, & <long> ok")
        book.save(out)
        with pytest.raises(ValueError):
            book.save(io.BytesIO())
    parts = xlsx_parts(out.getvalue())
    names = [s.get("name") for s in parts["xl/workbook.xml"].iter(f"{MAIN}sheet")]
    assert names == ["Breaks", "It's 31 characters, & <long> ok"]
    (name,) = parts["xl/workbook.xml"].iter(f"{MAIN}definedName")
    assert name.text == "'Breaks'!$A$1:$B$2"


# -- units: masking, the formula sanitiser, the shortlist --------------------------------------------------------

@given(st.lists(st.integers(0, 6), max_size=80), st.integers(1, 9))
def test_shortlist_is_the_head_of_a_stable_sort(keys, limit):
    rows = [{"k": k, "n": n} for n, k in enumerate(keys)]
    short = Shortlist(limit, key=lambda r: r["k"])
    for row in rows:
        short.offer(row)
    assert short.rows == sorted(rows, key=lambda r: r["k"])[:limit]
    assert short.total == len(rows) and short.not_shown == max(0, len(rows) - limit)


def test_mask_examples():
    assert mask_card("6222021234567890123") == "622202*********0123"
    assert mask_text("card 4111-1111-1111-1111 paid") == "card 411111******1111 paid"
    assert mask_payer(OPENID) == "oUp****S6o"
    assert mask_payer("zhang.san@example.com") == "zh****an@example.com"
    assert mask_payer("13812345678") == "13****78"
    assert mask_text("run 2026-11-21-20261123T173852Z") == "run 2026-11-21-20261123T173852Z"
    # A 27-digit channel transaction id is not a card; references are kept for searching.
    assert mask_text("4200000925202611201234567890") == "4200000925202611201234567890"
    row = mask_record({"channel_txn_id": "5030088023744736240", "payer_id": CARD, "note": f"x {OPENID}",
                       "amount": Decimal("1.00")})
    assert row == {"channel_txn_id": "5030088023744736240", "payer_id": "622202*********0123",
                   "note": "x oUp****S6o", "amount": Decimal("1.00")}


@given(st.text())
def test_sanitised_text_never_starts_a_formula(text):
    out = safe_text(text)
    assert not out.startswith(FORMULA_START)
    # the text itself, or with a ' in front; control characters the sheet cannot hold dropped
    kept = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", text)
    assert out in (kept, "'" + kept)


@given(st.from_regex(r"[0-9]{13,19}|[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{1,7}|[0-9]{4} [0-9]{6} [0-9]{5}",
                     fullmatch=True), st.text(alphabet="ab ,.:", max_size=5),
       st.text(alphabet="ab ,.:", max_size=5))
def test_masked_card_shows_at_most_bin_and_last_four(card, before, after):
    out = mask_text(before + card + after)
    shown = re.findall(r"[0-9]+", out)
    assert sum(len(s) for s in shown) <= 10
    digits = re.sub(r"[^0-9]", "", card)
    assert digits[:6] + "*" in out and out.endswith(digits[-4:] + after) and card not in out


@given(st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cs",)), max_size=80))
def test_mask_text_leaves_no_card_like_run(text):
    assert not CARD_RE.search(mask_text(text))
