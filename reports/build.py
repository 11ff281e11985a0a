"""Writing the reports: a date's report.html / report.xlsx, and the range report.

``write_reports`` runs inside the reconcile job, on the staging folder before
``_SUCCESS`` is written, so a published date always has its reports.
``write_range_report`` serves ``recon report --from D1 --to D2``.
"""

from __future__ import annotations

import datetime as dt
import posixpath

from reports.data import DayData, history, load_day, merge_summaries, reconciled_dates, recon_folder, trend_point
from reports.html import e, render_html
from reports.xlsx import render_xlsx

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
    html = render_html(title=f"Payment reconciliation {day.isoformat()}", subtitle=_subtitle(data.summary),
                       summary=data.summary, fees=data.fees, discrepancies=data.discrepancies,
                       open_items=data.open_items, trend=trend, footer=_footer(storage, folder, data.summary))
    xlsx = render_xlsx(title=f"Payment reconciliation {day.isoformat()}", summary=data.summary, fees=data.fees,
                       discrepancies=data.discrepancies, open_items=data.open_items,
                       notes=[f"run {data.summary.get('run_id', '?')}"])
    storage.write_bytes(html.encode("utf-8"), folder, HTML_NAME)
    storage.write_bytes(xlsx, folder, XLSX_NAME)
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
    first date's opening to the last date's closing; the break list is every
    date's, with a date column. The folder is built aside and swapped in, so a
    reader never sees half of it. Raises ``NoResults`` when no date in the range
    is reconciled.
    """
    if last < first:
        raise NoResults(f"the range {first} .. {last} is empty (--from after --to)")
    days = reconciled_dates(storage, first, last)
    if not days:
        raise NoResults(f"no reconciled date between {first} and {last} under {storage.uri('recon')}")
    loaded: list[DayData] = [load_day(storage, recon_folder(d), d) for d in days]
    summary = merge_summaries([d.summary for d in loaded])
    fees: dict = {}
    for d in loaded:
        for ch, fee in d.fees.items():
            # A date without the statement's fees makes the channel's range total unknown, not smaller.
            fees[ch] = None if (ch in fees and fees[ch] is None) or fee is None else fees.get(ch, 0) + fee
    discrepancies = [row for d in loaded for row in d.discrepancies]
    trend = [trend_point(d.day, d.summary) for d in loaded]
    expected = (last - first).days + 1
    gaps = (f"{expected - len(days)} of {expected} dates have no published result and are not included"
            if len(days) < expected else "")
    title = f"Payment reconciliation {first.isoformat()} to {last.isoformat()}"
    subtitle = (f"{len(days)} reconciled dates: {days[0]} .. {days[-1]}" + (f" · {gaps}" if gaps else "")
                + " · open items: those carried out of the last date")
    html = render_html(title=title, subtitle=subtitle, summary=summary, fees=fees, discrepancies=discrepancies,
                       open_items=loaded[-1].open_items, trend=trend, with_date=True,
                       footer=f"Dates included: {e(', '.join(d.isoformat() for d in days))}.")
    xlsx = render_xlsx(title=title, summary=summary, fees=fees, discrepancies=discrepancies,
                       open_items=loaded[-1].open_items, with_date=True,
                       notes=[f"dates included: {', '.join(d.isoformat() for d in days)}"] + ([gaps] if gaps else []))
    final = range_folder(first, last)
    staged = storage.staging(RANGE_PARENT, f"{first.isoformat()}_{last.isoformat()}")
    try:
        storage.write_bytes(html.encode("utf-8"), staged, HTML_NAME)
        storage.write_bytes(xlsx, staged, XLSX_NAME)
        storage.swap_in(staged, final)
    except BaseException:
        storage.delete(staged)
        raise
    return [posixpath.join(final, HTML_NAME), posixpath.join(final, XLSX_NAME)]
