"""Writing the reports: a date's report.html / report.xlsx, and the range report.

``write_reports`` runs inside the reconcile job, on the staging folder before
``_SUCCESS`` is written, so a published date always has its reports.
``write_range_report`` serves ``recon report --from D1 --to D2``.

Both read discrepancies.csv and open_items.csv once, row by row: each row
goes into the workbook as it arrives (every row, ``reports.xlsx``) and is
offered to a ``Shortlist`` that keeps the ``HTML_ROW_LIMIT`` most urgent for
the page. Memory stays flat whatever the number of rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import posixpath
from typing import Callable, Iterable

from reports.data import (DayData, break_sort_key, history, load_day, merge_summaries, open_item_sort_key,
                          reconciled_dates, trend_point)
from reports.html import HTML_ROW_LIMIT, e, render_html
from reports.shortlist import Shortlist
from reports.xlsx import ReportWorkbook
from schemas.layout import recon_dir

HTML_NAME = "report.html"
XLSX_NAME = "report.xlsx"
RANGE_PARENT = "reports"


class NoResults(ValueError):
    """No reconciled date (folder with _SUCCESS) in the requested range."""


def _subtitle(summary: dict) -> str:
    channels = ", ".join(sorted(summary.get("channels", {}))) or "none"
    parts = [f"channels: {channels}", f"run {summary.get('run_id', '?')}"]
    if summary.get("carried_from"):
        parts.append(f"open items carried from {summary['carried_from']}")
    return " · ".join(parts)


def _footer(storage, folder: str, summary: dict) -> str:
    inputs = "".join(
        f"<li>{e(i.get('kind'))} {e(i.get('channel') or '')} <span class='mono'>{e(i.get('file'))}</span> "
        f"sha256 <span class='mono'>{e(str(i.get('sha256', ''))[:16])}…</span></li>"
        for i in summary.get("inputs", []))
    return (f"Generated from <span class='mono'>{e(storage.uri(folder))}</span> (discrepancies.csv, "
            f"open_items.csv, summary.json).<ul>{inputs}</ul>")


def _stream(rows: Iterable[dict], add: Callable[[dict], None], key) -> Shortlist:
    """Every row into the workbook (``add``); the ``HTML_ROW_LIMIT`` first by ``key`` kept for the page."""
    listed = Shortlist(HTML_ROW_LIMIT, key)
    for row in rows:
        add(row)
        listed.offer(row)
    return listed


def write_reports(storage, folder: str, day: dt.date, *, history_days: int = 14) -> list[str]:
    """Write report.html and report.xlsx for ``day`` into ``folder`` (relative to the root).

    ``folder`` holds discrepancies.csv, open_items.csv and summary.json; it may
    be an unpublished staging folder. The trend uses up to ``history_days``
    earlier published dates (``recon/{date}/`` with ``_SUCCESS``) plus this one.
    Returns the relative paths written.
    """
    data = load_day(storage, folder, day)
    trend = [trend_point(d, s) for d, s in history(storage, day, history_days)]
    trend.append(trend_point(day, data.summary))
    title = f"Payment reconciliation {day.isoformat()}"
    with ReportWorkbook() as book:
        breaks = _stream(data.discrepancies(), book.add_break, break_sort_key)
        items = _stream(data.open_items(), book.add_open_item, open_item_sort_key)
        html = render_html(title=title, subtitle=_subtitle(data.summary), summary=data.summary, fees=data.fees,
                           discrepancies=breaks, open_items=items, trend=trend,
                           footer=_footer(storage, folder, data.summary))
        storage.write_bytes(html.encode("utf-8"), folder, HTML_NAME)
        with storage.open_write(folder, XLSX_NAME) as out:
            book.save(out, title=title, summary=data.summary, fees=data.fees,
                      notes=[f"run {data.summary.get('run_id', '?')}"])
    return [posixpath.join(folder, HTML_NAME), posixpath.join(folder, XLSX_NAME)]


def range_folder(first: dt.date, last: dt.date) -> str:
    """Where the range report of [first, last] lives: ``reports/{first}_{last}/`` under the root.

    Outside ``recon/`` on purpose: ``recon/`` holds one folder per date and
    readers there expect date names.
    """
    return posixpath.join(RANGE_PARENT, f"{first.isoformat()}_{last.isoformat()}")


def write_range_report(storage, first: dt.date, last: dt.date) -> list[str]:
    """Write report.html and report.xlsx over every reconciled date in [first, last].

    Counts and amounts are summed over the dates; the roll-forward runs from the
    first date's opening to the last date's closing; the breaks are every
    date's, with a date column (all of them in the workbook, the most urgent
    over all dates on the page); the open items are the last date's. The
    folder is built aside and swapped in, so a reader never sees half of it.
    Raises ``NoResults`` when no date in the range is reconciled.
    """
    if last < first:
        raise NoResults(f"the range {first} .. {last} is empty (--from after --to)")
    days = reconciled_dates(storage, first, last)
    if not days:
        raise NoResults(f"no reconciled date between {first} and {last} under {storage.uri('recon')}")
    loaded: list[DayData] = [load_day(storage, recon_dir(d), d) for d in days]  # summaries; rows stream later
    summary = merge_summaries([d.summary for d in loaded])
    fees: dict = {}
    for d in loaded:
        for ch, fee in d.fees.items():
            # A date without the statement's fees makes the channel's range total unknown, not smaller.
            fees[ch] = None if (ch in fees and fees[ch] is None) or fee is None else fees.get(ch, 0) + fee
    trend = [trend_point(d.day, d.summary) for d in loaded]
    expected = (last - first).days + 1
    gaps = (f"{expected - len(days)} of {expected} dates have no published result and are not included"
            if len(days) < expected else "")
    title = f"Payment reconciliation {first.isoformat()} to {last.isoformat()}"
    subtitle = (f"{len(days)} reconciled dates: {days[0]} .. {days[-1]}" + (f" · {gaps}" if gaps else "")
                + " · open items: those carried out of the last date")
    notes = [f"dates included: {', '.join(d.isoformat() for d in days)}"] + ([gaps] if gaps else [])
    final = range_folder(first, last)
    staged = storage.staging(RANGE_PARENT, f"{first.isoformat()}_{last.isoformat()}")
    try:
        with ReportWorkbook(with_date=True) as book:
            breaks = _stream(itertools.chain.from_iterable(d.discrepancies() for d in loaded), book.add_break,
                             break_sort_key)
            items = _stream(loaded[-1].open_items(), book.add_open_item, open_item_sort_key)
            html = render_html(title=title, subtitle=subtitle, summary=summary, fees=fees, discrepancies=breaks,
                               open_items=items, trend=trend, with_date=True,
                               footer=f"Dates included: {e(', '.join(d.isoformat() for d in days))}.")
            storage.write_bytes(html.encode("utf-8"), staged, HTML_NAME)
            with storage.open_write(staged, XLSX_NAME) as out:
                book.save(out, title=title, summary=summary, fees=fees, notes=notes)
        storage.swap_in(staged, final)
    except BaseException:
        storage.delete(staged)
        raise
    return [posixpath.join(final, HTML_NAME), posixpath.join(final, XLSX_NAME)]
