"""report.xlsx: a Summary sheet, one sheet per category listed, and the open items, written as rows stream in.

The workbook is written by ``reports.xlsxstream``, our own streaming XLSX
writer (pure Python; at 200,000 rows the report step took 54 s CPU with
openpyxl's write-only mode, 8 s with it: bench/report_scale.py; openpyxl now
only reads workbooks, in the tests). Each sheet streams to its own temporary
file as rows are appended, so memory does not grow with the number of rows. ``ReportWorkbook.add_break`` and
``add_open_item`` take the rows one at a time, in any order of categories
(discrepancies.csv is sorted by channel, then category, so the category
sheets are appended to in turn); ``save`` then writes the Summary sheet and
zips the sheets in order (Summary, categories in DESIGN order, Open items).

Every row is in the workbook. A sheet holds at most ``MAX_SHEET_ROWS`` rows
(Excel's limit, header included); a category (or the open items) with more
continues on further sheets named ``… (2)``, ``… (3)``, and the Summary sheet
says so under its table.

Amounts are numeric cells (Decimal written as a number, never through float)
with the money format; every sheet's header row is frozen and filterable.
Text cells are made safe from formula injection (``safe_text``) and always
typed as text: a payer name such as ``=HYPERLINK(...)`` in a statement must
reach the analyst as text, not run when the workbook is opened.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from decimal import Decimal
from typing import BinaryIO

from reports.data import ZERO, category_order, channel_glance, rejected_rows_headlines
from reports.xlsxstream import SEAM, Sheet, Style, Workbook, column_letter
from schemas.outputs import DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS, RESOLUTIONS

MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "0"
# Rows per sheet, the header row included (Excel's limit).
MAX_SHEET_ROWS = 1_048_576
# Characters that make a spreadsheet treat a cell as a formula (OWASP CSV
# injection), plus the full-width forms some East-Asian Excel locales accept.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Control characters the xlsx XML cannot hold (the writer would have to escape them as _xHHHH_).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# ``_no_formula``'s test over a row's texts joined with SEAM: a text starting with a formula character has a seam (or
# the row's start) before it. The start is looked at apart: an alternation with ^ is searched 10x slower.
_FORMULA_AFTER_SEAM = re.compile(SEAM + "[" + re.escape("".join(FORMULA_START)) + "]")
HEADER_STYLE = Style(bold=True, color="FFFFFF", fill="0F172A", valign="center")
TOTAL_STYLE = Style(bold=True)
TITLE_STYLE = Style(bold=True, size=13)
MAX_SHEET_NAME = 31
SUMMARY = "Summary"
OPEN_ITEMS = "Open items"
TAB_COLORS = {"MANUAL_REVIEW": "C2410C", "AUTO_FIXED": "1D4ED8", "CARRIED": "B45309", "CLEARED": "15803D"}
# Column widths of the row sheets, by column name (a streamed sheet's widths are fixed before its first row).
WIDTHS = {"date": 11, "channel": 12, "category": 26, "resolution": 16, "order_no": 22, "refund_no": 22,
          "local_amount": 14, "channel_amount": 16, "local_status": 13, "channel_status": 15, "currency": 10,
          "channel_txn_id": 30, "channel_refund_id": 30, "local_time": 20, "channel_time": 20, "txn_time": 20,
          "created_at": 20, "paid_at": 20, "age_days": 10, "source_file": 30, "source_line": 12, "note": 50,
          "carried_as": 24, "first_seen": 12, "merchant_id": 14, "payer_id": 18, "bank": 14}


def safe_text(value) -> str:
    """Text that a spreadsheet shows literally: illegal control characters dropped, a leading
    formula character neutralised with a ' prefix."""
    text = "" if value is None else value if type(value) is str else str(value)
    if _ILLEGAL.search(text):
        text = _ILLEGAL.sub("", text)
    return "'" + text if text.startswith(FORMULA_START) else text


def _no_formula(joined: str) -> bool:
    """True when no text of a row (joined by SEAM in ``joined``) starts a formula: then, as the writer lets no
    control character through ``append_plain``, ``safe_text`` would leave every text of the row as it is."""
    return not joined.startswith(FORMULA_START) and not _FORMULA_AFTER_SEAM.search(joined)


def _value(value):
    """What the writer gets for one value: None, a number (Decimal: money format, int: count) or safe text.

    Every text is written as an inline string, so it stays text whatever it
    looks like (``=...``, ``#N/A``, ``1e5``); ``safe_text`` still prefixes a
    leading formula character, so that editing the cell in Excel cannot turn
    it into a formula either.
    """
    t = type(value)
    if t is str:
        return safe_text(value)
    if value is None or t is Decimal or t is int:
        return value
    if isinstance(value, Decimal):
        return Decimal(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return safe_text(value)


def _start_table(ws: Sheet, headers: list[str]) -> None:
    """A sheet's first row: the styled header (the sheet was made with the top row frozen and its widths)."""
    ws.append([_value(h) for h in headers], HEADER_STYLE)


def _table_widths(headers: list[str], widths: dict[int, int]) -> dict[int, int]:
    """Each column's width: the given one, else from the header's length (10 to 60)."""
    return {c: widths.get(c) or min(60, max(10, len(h) + 2)) for c, h in enumerate(headers, 1)}


def _end_table(ws: Sheet, columns: int, rows: int, top: int = 1) -> None:
    """The filter over the header (on row ``top``) and ``rows`` rows under it (written with the sheet's tail
    at save)."""
    ws.auto_filter(f"A{top}:{column_letter(columns)}{top + max(0, rows)}")


def _sheet_name(label: str, taken: set[str], part: int = 1) -> str:
    # Excel limits sheet names to 31 characters; long category names are
    # shortened, and the full name stays in each row's category column.
    suffix = f" ({part})" if part > 1 else ""
    name = label if len(label) + len(suffix) <= MAX_SHEET_NAME else (
        label.replace("CHANNEL", "CH").replace("REFUNDED", "REFD")[:MAX_SHEET_NAME - len(suffix)])
    name += suffix
    base, n = name, 2
    while name.upper() in taken:
        tag = f"~{n}"
        name, n = base[:MAX_SHEET_NAME - len(tag)] + tag, n + 1
    taken.add(name.upper())
    return name


class _Section:
    """The rows of one category (or the open items), on as many sheets as they need."""

    def __init__(self, book: "ReportWorkbook", label: str, columns: list[str], tab_color: str | None = None):
        self.book, self.label, self.columns, self.tab_color = book, label, columns, tab_color
        self.widths = {c: WIDTHS[h] for c, h in enumerate(columns, 1) if h in WIDTHS}
        self.sheets: list[Sheet] = []
        self.total = 0
        self._in_sheet = 0

    @property
    def titles(self) -> list[str]:
        return [ws.name for ws in self.sheets]

    def _next_sheet(self) -> None:
        if self.sheets:
            _end_table(self.sheets[-1], len(self.columns), self._in_sheet)
        ws = self.book.wb.add_sheet(_sheet_name(self.label, self.book.taken, len(self.sheets) + 1),
                                    tab_color=self.tab_color, widths=_table_widths(self.columns, self.widths),
                                    freeze_rows=1)
        _start_table(ws, self.columns)
        self.sheets.append(ws)
        self._in_sheet = 0

    def start(self) -> None:
        """Create the first sheet now (it is created with the first row otherwise)."""
        if not self.sheets:
            self._next_sheet()

    def append(self, row: dict) -> None:
        if not self.sheets or self._in_sheet >= self.book.sheet_rows - 1:
            self._next_sheet()
        # Nearly every row is written as it is: one test of the row's texts together (_no_formula, in the writer's
        # append_plain) rather than _value per value (10M-record day, 141,674 rows: 0.7 s -> 0.1 s).
        values = list(map(row.get, self.columns))
        if not self.sheets[-1].append_plain(values, None, _no_formula):
            self.sheets[-1].append([_value(v) for v in values])
        self._in_sheet += 1
        self.total += 1

    def finish(self) -> str | None:
        """Close the last sheet's table; a note for the Summary sheet when the rows took several sheets."""
        self.start()  # an empty section still shows its header
        _end_table(self.sheets[-1], len(self.columns), self._in_sheet)
        if len(self.sheets) == 1:
            return None
        return (f"{self.label}: {self.total:,} rows, more than one sheet holds ({self.book.sheet_rows - 1:,} under "
                f"its header); continued on sheets {', '.join(self.titles)}")


SUMMARY_HEADERS = ["Channel", "Category", "Resolution", "Local records", "Local amount", "Channel records",
                   "Channel amount", "Listed rows"]
SUMMARY_WIDTHS = {1: 14, 2: 38, 3: 16, 4: 14, 5: 16, 6: 16, 7: 16, 8: 12}
TOTAL_LABEL = "TOTAL"


def summary_rows(summary: dict) -> list[list]:
    """Summary table rows: each channel's categories, then the channel's TOTAL row."""
    rows = []
    for name, ch in sorted(summary.get("channels", {}).items()):
        g = channel_glance(name, ch, None)
        for cat, res, local, chan, listed in g["categories"]:
            rows.append([name, cat, res, local["records"], local["amount"], chan["records"], chan["amount"], listed])
        rows.append([name, TOTAL_LABEL, "", g["local"]["records"], g["local"]["amount"],
                     g["channel_side"]["records"], g["channel_side"]["amount"], g["discrepancy_rows"]])
    return rows


def discrepancy_columns(with_date: bool) -> list[str]:
    """The break sheets' columns: discrepancies.csv's, the date first in a range report, left out otherwise."""
    columns = [c for c in DISCREPANCY_COLUMNS if c != "date"]
    return ["date"] + columns if with_date else columns


class ReportWorkbook:
    """report.xlsx built while the rows stream past: ``add_break``/``add_open_item`` per row, then ``save``.

    Use it in a ``with`` block: when the rows fail half-way, the sheets'
    temporary files are closed rather than left to the interpreter's exit.
    """

    def __init__(self, *, with_date: bool = False, sheet_rows: int | None = None):
        self.sheet_rows = sheet_rows or MAX_SHEET_ROWS  # rows per sheet, header included
        if self.sheet_rows < 2:
            raise ValueError("a sheet holds a header and at least one row")
        self.wb = Workbook(number_formats={Decimal: MONEY_FORMAT, int: COUNT_FORMAT})
        self.taken = {SUMMARY.upper()}  # the Summary sheet is made at save, first in order
        self.columns = discrepancy_columns(with_date)
        self.categories: dict[str, _Section] = {}
        self.open_items = _Section(self, OPEN_ITEMS, list(OPEN_ITEM_COLUMNS))
        self.open_items.start()  # its name taken before any category's

    def __enter__(self) -> "ReportWorkbook":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the sheets' temporary files (``save`` does; after an error, nothing else would)."""
        self.wb.close()

    def add_break(self, row: dict) -> None:
        """One discrepancy row (masked, amounts Decimal) onto its category's sheet."""
        cat = row.get("category", "")
        section = self.categories.get(cat)
        if section is None:
            color = TAB_COLORS.get(RESOLUTIONS.get(cat, ""), "64748B")
            section = self.categories[cat] = _Section(self, cat, self.columns, color)
        section.append(row)

    def add_open_item(self, row: dict) -> None:
        """One open item row (masked, amounts Decimal) onto the Open items sheet."""
        self.open_items.append(row)

    def save(self, out: BinaryIO, *, title: str, summary: dict, fees: dict, notes: list[str] = ()) -> None:
        """Write the Summary sheet, order the sheets and write the workbook to the binary stream ``out``."""
        sections = [self.categories[c] for c in category_order(self.categories)] + [self.open_items]
        spill = [note for s in sections if (note := s.finish())]
        headlines = [line for _, line in rejected_rows_headlines(summary)]
        # the headlines above the table (and a blank row), the table's header frozen under them
        top = len(headlines) + 2 if headlines else 1
        ws = self.wb.add_sheet(SUMMARY, widths=_table_widths(SUMMARY_HEADERS, SUMMARY_WIDTHS), freeze_rows=top)
        for line in headlines:
            ws.append([_value(line)], TOTAL_STYLE)
        if headlines:
            ws.append([])
        self._write_summary(ws, title, summary, fees, [*notes, *spill], top)
        order = [ws] + [sheet for s in sections for sheet in s.sheets]
        # The zip goes to a local temporary file first: zipfile wants to seek, an HDFS stream cannot.
        with tempfile.TemporaryFile(prefix="report-xlsx-") as tmp:
            self.wb.save(tmp, order)
            tmp.seek(0)
            shutil.copyfileobj(tmp, out, 1 << 20)

    @staticmethod
    def _write_summary(ws: Sheet, title: str, summary: dict, fees: dict, notes: list[str], top: int = 1) -> None:
        rows = summary_rows(summary)
        _start_table(ws, SUMMARY_HEADERS)
        for values in rows:
            ws.append([_value(v) for v in values], TOTAL_STYLE if values[1] == TOTAL_LABEL else None)
        _end_table(ws, len(SUMMARY_HEADERS), len(rows), top)
        # Below the table (outside the filter range): roll-forward, fees and notes.
        ws.append([])
        ws.append([_value(title)], TITLE_STYLE)
        ws.append([])
        ws.append([_value(h) for h in ("Open items", "Records", "Amount")], TOTAL_STYLE)
        rf = summary.get("roll_forward") or {}
        for key, label in (("opening", "Opening"), ("new", "+ New"), ("cleared", "− Cleared"),
                           ("closing", "= Closing")):
            v = rf.get(key) or {"records": 0, "amount": ZERO}
            ws.append([_value(label), _value(int(v["records"])), _value(v["amount"])])
        ws.append([])
        ws.append([_value("Fees (net, statement)")], TOTAL_STYLE)
        for name in sorted(fees):
            ws.append([_value(name), _value("not available" if fees[name] is None else fees[name])])
        for note in notes:
            ws.append([])
            ws.append([_value(note)])
