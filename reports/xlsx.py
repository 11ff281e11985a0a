"""report.xlsx: a Summary sheet, one sheet per category listed, and the open items.

Amounts are numeric cells (Decimal written as a number, never through float)
with the money format; every sheet's header row is frozen and filterable.
Text cells are made safe from formula injection (``safe_text``): a payer
name such as ``=HYPERLINK(...)`` in a statement must reach the analyst as
text, not run when the workbook is opened.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from reports.data import ZERO, category_order, channel_glance
from schemas.outputs import DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS, RESOLUTIONS

MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "0"
# Characters that make a spreadsheet treat a cell as a formula (OWASP CSV
# injection), plus the full-width forms some East-Asian Excel locales accept.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Control characters the xlsx XML cannot hold (openpyxl refuses them).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="0F172A")
TOTAL_FONT = Font(bold=True)
MAX_SHEET_NAME = 31


def safe_text(value) -> str:
    """Text that a spreadsheet shows literally: illegal control characters dropped, a leading
    formula character neutralised with a ' prefix."""
    text = _ILLEGAL.sub("", "" if value is None else str(value))
    return "'" + text if text.startswith(FORMULA_START) else text


def _put(ws, row: int, col: int, value, fmt: str | None = None):
    """Write one cell: numbers stay numbers, everything else is safe text."""
    cell = ws.cell(row=row, column=col)
    if isinstance(value, bool):
        cell.value = safe_text(value)
    elif isinstance(value, (Decimal, int)):
        cell.value = value
        cell.number_format = fmt or (MONEY_FORMAT if isinstance(value, Decimal) else COUNT_FORMAT)
    elif value is None:
        cell.value = None
    else:
        cell.value = safe_text(value)
        # openpyxl guesses a formula from a leading "="; safe_text already
        # removed that case, so the type is forced to string for certainty.
        cell.data_type = "s"
    return cell


def _table(ws, headers: list[str], rows: list[list], widths: dict[int, int] | None = None) -> None:
    """A header row (frozen, filterable) and the rows under it."""
    for c, h in enumerate(headers, 1):
        cell = _put(ws, 1, c, h)
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
        cell.alignment = Alignment(vertical="center")
    for r, values in enumerate(rows, 2):
        for c, v in enumerate(values, 1):
            _put(ws, r, c, v)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{max(1, len(rows) + 1)}"
    for c, h in enumerate(headers, 1):
        longest = max((len(str(row[c - 1] or "")) for row in rows[:500]), default=0)
        width = (widths or {}).get(c) or min(60, max(10, len(h) + 2, longest + 2))
        ws.column_dimensions[get_column_letter(c)].width = width


def _sheet_name(category: str, taken: set[str]) -> str:
    # Excel limits sheet names to 31 characters; long category names are
    # shortened, and the full name stays in each row's category column.
    name = category if len(category) <= MAX_SHEET_NAME else (
        category.replace("CHANNEL", "CH").replace("REFUNDED", "REFD")[:MAX_SHEET_NAME])
    base, n = name, 2
    while name.upper() in taken:
        suffix = f"~{n}"
        name, n = base[:MAX_SHEET_NAME - len(suffix)] + suffix, n + 1
    taken.add(name.upper())
    return name


SUMMARY_HEADERS = ["Channel", "Category", "Resolution", "Local records", "Local amount", "Channel records",
                   "Channel amount", "Listed rows"]
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


def render_xlsx(*, title: str, summary: dict, fees: dict, discrepancies: list[dict], open_items: list[dict],
                with_date: bool = False, notes: list[str] = ()) -> bytes:
    """The workbook as bytes. ``summary`` has Decimal amounts; rows are masked already (reports.data)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Summary"
    rows = summary_rows(summary)
    _table(ws, SUMMARY_HEADERS, rows, {1: 14, 2: 38, 3: 16, 4: 14, 5: 16, 6: 16, 7: 16, 8: 12})
    for r, values in enumerate(rows, 2):
        if values[1] == TOTAL_LABEL:
            for c in range(1, len(values) + 1):
                ws.cell(row=r, column=c).font = TOTAL_FONT
    # Below the table (outside the filter range): roll-forward, fees and notes.
    r = len(rows) + 3
    _put(ws, r, 1, title).font = Font(bold=True, size=13)
    r += 2
    for c, h in enumerate(["Open items", "Records", "Amount"], 1):
        _put(ws, r, c, h).font = TOTAL_FONT
    rf = summary.get("roll_forward") or {}
    for key, label in (("opening", "Opening"), ("new", "+ New"), ("cleared", "− Cleared"), ("closing", "= Closing")):
        r += 1
        v = rf.get(key) or {"records": 0, "amount": ZERO}
        _put(ws, r, 1, label)
        _put(ws, r, 2, int(v["records"]))
        _put(ws, r, 3, v["amount"])
    r += 2
    _put(ws, r, 1, "Fees (net, statement)").font = TOTAL_FONT
    for name in sorted(fees):
        r += 1
        _put(ws, r, 1, name)
        _put(ws, r, 2, fees[name] if fees[name] is not None else "not available")
        if fees[name] is not None:
            ws.cell(row=r, column=2).number_format = MONEY_FORMAT
    for note in notes:
        r += 2
        _put(ws, r, 1, note)

    columns = list(DISCREPANCY_COLUMNS) if with_date else [c for c in DISCREPANCY_COLUMNS if c != "date"]
    if with_date and "date" in columns:
        columns.remove("date")
        columns.insert(0, "date")
    taken = {"SUMMARY", "OPEN ITEMS"}
    by_cat: dict[str, list[dict]] = {}
    for row in discrepancies:
        by_cat.setdefault(row.get("category", ""), []).append(row)
    for cat in category_order(by_cat):
        sheet = wb.create_sheet(_sheet_name(cat, taken))
        sheet.sheet_properties.tabColor = {"MANUAL_REVIEW": "C2410C", "AUTO_FIXED": "1D4ED8", "CARRIED": "B45309",
                                           "CLEARED": "15803D"}.get(RESOLUTIONS.get(cat, ""), "64748B")
        _table(sheet, columns, [[row.get(c) for c in columns] for row in by_cat[cat]])
    items = wb.create_sheet("Open items")
    _table(items, list(OPEN_ITEM_COLUMNS), [[row.get(c) for c in OPEN_ITEM_COLUMNS] for row in open_items])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
