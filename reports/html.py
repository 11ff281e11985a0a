"""report.html: one self-contained page for finance analysts.

No network at all: inline CSS, inline SVG charts, system fonts, no scripts.
Every text value is HTML-escaped through ``e``; personal data was already
masked when the files were read (``reports.data``). Key figures carry
``data-metric`` (a stable name) and ``data-value`` (the exact decimal or
count) so tests and scrapers can read them without parsing the layout.

The figures, charts and roll-forward come from summary.json and cover every
row. The break list and the open items list are for a person reading in a
browser, so each shows at most ``HTML_ROW_LIMIT`` rows, the most urgent
first (a ``reports.shortlist.Shortlist`` chosen while the CSV streams past);
when rows are left out, a line says how many and that every row is in the
CSV and in report.xlsx (``data-metric`` ``breaks.not_shown`` /
``open_items.not_shown``).
"""

from __future__ import annotations

import html
from decimal import Decimal

from reports.data import ZERO, breaks_by_category, channel_glance, rejected_rows_headlines
from reports.shortlist import Shortlist

# Rows listed on the page, per list (breaks, open items); the rest are in the CSVs and report.xlsx.
HTML_ROW_LIMIT = 2_000

COLORS = {"MANUAL_REVIEW": "#c2410c", "AUTO_FIXED": "#1d4ed8", "CARRIED": "#b45309", "CLEARED": "#15803d",
          "MATCHED": "#64748b"}
RESOLUTION_LABELS = {"MANUAL_REVIEW": "needs review", "AUTO_FIXED": "auto-fixed", "CARRIED": "carried",
                     "CLEARED": "cleared", "MATCHED": "matched"}

CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--accent:#0f766e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","PingFang SC","Microsoft YaHei",sans-serif}
header{background:#0f172a;color:#f8fafc;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{color:#cbd5e1;font-size:13px;margin-top:4px}
main{padding:20px 32px 40px;max-width:1500px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;flex:1 1 560px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:#374151;background:#f1f5f9;font-size:12px;text-transform:none}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.kpis{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:8px;margin-bottom:12px}
.kpi{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.kpi .label{color:var(--muted);font-size:12px}
.kpi .value{font-size:18px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi .detail{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
.kpi.warn .value{color:#c2410c}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:11px;font-weight:600;color:#fff;white-space:nowrap}
.muted{color:var(--muted)}
.capped{background:#fffbeb;border:1px solid #fde68a;color:#78350f;padding:8px 12px;border-radius:6px;margin:10px 0}
.alert{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;padding:8px 12px;border-radius:6px;margin:10px 0}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.equation{display:flex;align-items:stretch;gap:10px;flex-wrap:wrap}
.equation .term{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:170px}
.equation .op{font-size:26px;align-self:center;color:var(--muted)}
.equation .term .label{color:var(--muted);font-size:12px}
.equation .term .value{font-size:20px;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts .card{flex:1 1 640px}
table.breaks td{font-size:12.5px}
table.breaks tr.MANUAL_REVIEW td:first-child{border-left:3px solid #c2410c}
table.breaks tr.AUTO_FIXED td:first-child{border-left:3px solid #1d4ed8}
table.breaks tr.CARRIED td:first-child{border-left:3px solid #b45309}
table.breaks tr.CLEARED td:first-child{border-left:3px solid #15803d}
th.side{text-align:center;border-left:2px solid #cbd5e1}
td.lstart,th.lstart{border-left:2px solid #cbd5e1}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
.small{font-size:11.5px;color:#4b5563;white-space:nowrap}
td.note{min-width:200px;max-width:340px}
td.src{overflow-wrap:anywhere;min-width:120px;max-width:190px}
td.cat{font-size:12px}
td.nowrap{white-space:nowrap}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
footer{color:var(--muted);font-size:12px;margin-top:30px}
@media print{header{background:#fff;color:#000}.card{box-shadow:none}}
"""


def e(value) -> str:
    """HTML-escaped text of any value (None shows as empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def wrap_name(value) -> str:
    """Escaped CATEGORY_NAME with break opportunities after underscores (keeps the break list narrow)."""
    return e(value).replace("_", "_<wbr>")


def money(value: Decimal | None) -> str:
    """An amount as analysts read it: thousands separators, 2 decimals; empty when absent."""
    if value is None:
        return ""
    return f"{value:,.2f}"


def metric(name: str, value, shown: str | None = None, tag: str = "span", cls: str = "") -> str:
    """An element holding one key figure: data-metric names it, data-value holds it exactly."""
    raw = "" if value is None else (f"{value:.2f}" if isinstance(value, Decimal) and name.endswith("amount")
                                    else str(value))
    if shown is None:
        shown = money(value) if isinstance(value, Decimal) else ("" if value is None else str(value))
    attr = f' class="{e(cls)}"' if cls else ""
    return f'<{tag}{attr} data-metric="{e(name)}" data-value="{e(raw)}">{e(shown)}</{tag}>'


def pill(resolution: str) -> str:
    color = COLORS.get(resolution, "#64748b")
    return f'<span class="pill" style="background:{color}">{e(RESOLUTION_LABELS.get(resolution, resolution))}</span>'


def _kpi(label: str, value_html: str, detail_html: str = "", warn: bool = False) -> str:
    return (f'<div class="kpi{" warn" if warn else ""}"><div class="label">{e(label)}</div>'
            f'<div class="value">{value_html}</div><div class="detail">{detail_html}</div></div>')


def _channel_card(g: dict) -> str:
    ch = g["channel"]
    p = f"{ch}."
    share = g["matched_share_channel"]
    kpis = [
        _kpi("Local records / amount", metric(p + "local.records", g["local"]["records"]),
             metric(p + "local.amount", g["local"]["amount"])),
        _kpi("Channel records / amount", metric(p + "channel.records", g["channel_side"]["records"]),
             metric(p + "channel.amount", g["channel_side"]["amount"])),
        _kpi("Matched (channel side)", metric(p + "matched_share", share, "–" if share is None else f"{share}%"),
             metric(p + "matched.channel.records", g["matched_channel"]["records"]) + " records · "
             + metric(p + "matched.channel.amount", g["matched_channel"]["amount"])),
        _kpi("Fees (net, statement)", metric(p + "fees", g["fees"], "–" if g["fees"] is None else None)),
        _kpi("Needs review", metric(p + "breaks.rows", g["breaks"]["rows"]),
             "rows · local " + metric(p + "breaks.local.amount", g["breaks"]["local"]) + " / channel "
             + metric(p + "breaks.channel.amount", g["breaks"]["channel"]), warn=g["breaks"]["rows"] > 0),
        _kpi("Auto-fixes", metric(p + "auto_fixed.rows", g["auto_fixed"]["rows"]),
             metric(p + "corrections", g["corrections"]) + " corrections · "
             + metric(p + "auto_fixed.channel.amount", g["auto_fixed"]["channel"])),
        _kpi("Carried to next day", metric(p + "carried.rows", g["carried"]["rows"]),
             "local " + metric(p + "carried.local.amount", g["carried"]["local"]) + " / channel "
             + metric(p + "carried.channel.amount", g["carried"]["channel"])),
        _kpi("Cleared late · rejects", metric(p + "cleared.rows", g["cleared"]["rows"]),
             metric(p + "rejects", g["rejects"]) + " statement rows rejected", warn=g["rejects"] > 0),
    ]
    rows = []
    for cat, res, local, chan, listed in g["categories"]:
        q = f"{ch}.{cat}."
        rows.append(
            f"<tr><td>{e(cat)}</td><td>{pill(res)}</td>"
            f"{metric(q + 'local.records', local['records'], tag='td', cls='num lstart')}"
            f"{metric(q + 'local.amount', local['amount'], tag='td', cls='num')}"
            f"{metric(q + 'channel.records', chan['records'], tag='td', cls='num lstart')}"
            f"{metric(q + 'channel.amount', chan['amount'], tag='td', cls='num')}"
            f"{metric(q + 'rows', listed, tag='td', cls='num lstart')}</tr>")
    table = ('<table><thead><tr><th>Category</th><th>Resolution</th><th class="num lstart">Local records</th>'
             '<th class="num">Local amount</th><th class="num lstart">Channel records</th>'
             '<th class="num">Channel amount</th><th class="num lstart">Listed rows</th></tr></thead><tbody>'
             + "".join(rows) + "</tbody></table>")
    return (f'<section class="card" id="channel-{e(ch)}" data-channel="{e(ch)}"><h3>{e(ch)}</h3>'
            f'<div class="kpis">{"".join(kpis)}</div>{table}</section>')


def _roll_forward(rf: dict) -> str:
    def term(key, label):
        v = rf.get(key) or {"records": 0, "amount": ZERO}
        return (f'<div class="term"><div class="label">{e(label)}</div>'
                f'<div class="value">{metric(f"roll_forward.{key}.records", v["records"])} items</div>'
                f'<div class="muted">{metric(f"roll_forward.{key}.amount", v["amount"])}</div></div>')

    o, n, c, z = (rf.get(k) or {"records": 0, "amount": ZERO} for k in ("opening", "new", "cleared", "closing"))
    holds = (o["records"] + n["records"] - c["records"] == z["records"]
             and o["amount"] + n["amount"] - c["amount"] == z["amount"])
    check = ('<span class="ok">✓ opening + new − cleared = closing</span>' if holds else
             '<span class="bad">✗ opening + new − cleared ≠ closing: dates are missing in between, '
             'or the carry was re-run; check the daily reports</span>')
    return (f'<div class="equation">{term("opening", "Opening (carried in)")}<div class="op">+</div>'
            f'{term("new", "New today")}<div class="op">−</div>{term("cleared", "Cleared")}<div class="op">=</div>'
            f'{term("closing", "Closing (carried out)")}</div><p>{check}</p>')


def _bar_chart(cats: list[dict]) -> str:
    """Horizontal bars: listed rows per category, coloured by resolution, amounts as labels."""
    if not cats:
        return '<p class="muted">No breaks: every record matched.</p>'
    label_w, bar_w, row_h, top = 290, 250, 28, 8
    width, height = label_w + bar_w + 230, top * 2 + row_h * len(cats)
    peak = max(c["rows"] for c in cats) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-size="12" font-family="inherit">'
             '<title>Breaks by category (listed rows)</title>']
    for i, c in enumerate(cats):
        y = top + i * row_h
        w = max(2, c["rows"] * bar_w // peak) if c["rows"] else 0
        amount = max(c["local"], c["channel"])
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" fill="#374151">{e(c["category"])}</text>'
            f'<rect x="{label_w}" y="{y + 5}" width="{w}" height="{row_h - 10}" rx="3" '
            f'fill="{COLORS.get(c["resolution"], "#64748b")}" data-category="{e(c["category"])}" '
            f'data-rows="{c["rows"]}"><title>{e(c["category"])}: {c["rows"]} rows</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 18}" fill="#111827">{c["rows"]} · {e(money(amount))}</text>')
    parts.append("</svg>")
    legend = " ".join(pill(r) for r in ("MANUAL_REVIEW", "AUTO_FIXED", "CARRIED", "CLEARED"))
    return "".join(parts) + f'<p class="muted">Bar: listed rows; label: rows · larger side\'s amount. {legend}</p>'


def _trend_chart(points: list[dict]) -> str:
    """Stacked bars per date (needs review, auto-fixed) and a line of open items at close."""
    if not points:
        return '<p class="muted">No earlier dates yet.</p>'
    left, right, top, bottom, plot_h = 44, 16, 16, 46, 200
    step = max(44, min(90, 820 // len(points)))
    width, height = left + right + step * len(points), top + plot_h + bottom
    peak = max(max(p["review"] + p["auto_fixed"], p["open_items"]) for p in points) or 1

    def y(v: int) -> int:
        return top + plot_h - v * plot_h // peak

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-size="11" font-family="inherit">'
           '<title>Trend: rows needing review, auto-fixes and open items per date</title>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#9ca3af"/>']
    for tick in sorted({0, peak // 2, peak}):
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end" fill="#6b7280">{tick}</text>'
                   f'<line x1="{left}" y1="{y(tick)}" x2="{width - right}" y2="{y(tick)}" stroke="#eef2f7"/>')
    line = []
    for i, p in enumerate(points):
        x = left + i * step + step // 4
        bw = step // 2
        y_review, y_auto = y(p["review"]), y(p["review"] + p["auto_fixed"])
        out.append(f'<rect x="{x}" y="{y_review}" width="{bw}" height="{top + plot_h - y_review}" '
                   f'fill="{COLORS["MANUAL_REVIEW"]}" data-day="{p["day"]}" data-review="{p["review"]}">'
                   f'<title>{p["day"]}: {p["review"]} need review</title></rect>'
                   f'<rect x="{x}" y="{y_auto}" width="{bw}" height="{y_review - y_auto}" '
                   f'fill="{COLORS["AUTO_FIXED"]}"><title>{p["day"]}: {p["auto_fixed"]} auto-fixed</title></rect>'
                   f'<text x="{x + bw // 2}" y="{top + plot_h + 14}" text-anchor="middle" fill="#374151">'
                   f'{p["day"]:%m-%d}</text>'
                   f'<text x="{x + bw // 2}" y="{top + plot_h + 28}" text-anchor="middle" fill="#6b7280">'
                   f'{"–" if p["matched_share"] is None else str(p["matched_share"]) + "%"}</text>')
        line.append((x + bw // 2, y(p["open_items"])))
    out.append('<polyline fill="none" stroke="#b45309" stroke-width="2" points="'
               + " ".join(f"{a},{b}" for a, b in line) + '"/>')
    out += [f'<circle cx="{a}" cy="{b}" r="3" fill="#b45309"/>' for a, b in line]
    out.append("</svg>")
    return ("".join(out) + '<p class="muted"><span style="color:#c2410c">■</span> needs review '
            '<span style="color:#1d4ed8">■</span> auto-fixed <span style="color:#b45309">●</span> open items at '
            'close; under each date: matched share (channel records)</p>')


def _side_cell(amount, status, time, txn_id) -> str:
    """One side of a break in one cell: amount, then status and time, then the channel's txn id."""
    if amount is None and not status and not time:
        return '<span class="muted">—</span>'
    lines = [f'<b>{e(money(amount))}</b>', f'<span class="small">{e(status)} · {e(time)}</span>']
    if txn_id:
        lines.append(f'<span class="small mono">{e(txn_id)}</span>')
    return "<br>".join(lines)


def _not_shown(listed: Shortlist, name: str, what: str, order: str, where: str) -> str:
    """The line saying how many rows the page leaves out, and where every row is; empty when none is left out."""
    if not listed.not_shown:
        return ""
    n = listed.not_shown
    return (f'<p class="capped" id="{e(name)}-not-shown">Showing the {len(listed.rows):,} {e(order)} of '
            f'{listed.total:,} {e(what)}. <b>{metric(name + ".not_shown", n, f"{n:,}")} {e(what)} are not shown '
            f'here</b>: every one is in {e(where)}.</p>')


def _break_list(listed: Shortlist, with_date: bool) -> str:
    rows = listed.rows
    if not rows:
        return '<p class="muted">Nothing listed.</p>'
    head = ("<thead><tr>" + ("<th>Date</th>" if with_date else "")
            + "<th>Channel</th><th>Category</th><th>Order no / refund no</th>"
            '<th class="num lstart">Local side</th><th class="num lstart">Channel side</th>'
            '<th class="num lstart">Difference</th><th>Cur.</th><th class="num">Age (days)</th><th>Note</th>'
            '<th>Source (file:line)</th></tr></thead>')
    body = []
    for r in rows:
        la, ca = r.get("local_amount"), r.get("channel_amount")
        diff = ca - la if la is not None and ca is not None and ca != la else None
        source = f'{r.get("source_file") or ""}:{r["source_line"]}' if r.get("source_line") else (
            r.get("source_file") or "")
        ref = e(r.get("order_no")) + (f'<br><span class="muted">{e(r["refund_no"])}</span>' if r.get("refund_no")
                                      else "")
        res = r.get("resolution", "")
        body.append(
            f'<tr class="{e(res)}" data-category="{e(r.get("category"))}">'
            + (f'<td>{e(r.get("date"))}</td>' if with_date else "")
            + f'<td>{e(r.get("channel"))}</td><td class="cat">{wrap_name(r.get("category"))}<br>{pill(res)}</td>'
            f'<td class="mono">{ref}</td>'
            f'<td class="num lstart">{_side_cell(la, r.get("local_status"), r.get("local_time"), "")}</td>'
            f'<td class="num lstart">{_side_cell(ca, r.get("channel_status"), r.get("channel_time"), r.get("channel_txn_id"))}</td>'
            f'<td class="num lstart">{e(money(diff))}</td><td>{e(r.get("currency"))}</td>'
            f'<td class="num">{e(r.get("age_days"))}</td><td class="note">{e(r.get("note"))}</td>'
            f'<td class="mono src">{e(source)}</td></tr>')
    return (f'<div class="scroll"><table class="breaks" id="breaks" data-rows="{len(rows)}" '
            f'data-total-rows="{listed.total}">{head}<tbody>{"".join(body)}</tbody></table></div>')


def _open_items(listed: Shortlist) -> str:
    rows = listed.rows
    if not rows:
        return '<p class="muted">No open items carried.</p>'
    head = ('<thead><tr><th>Channel</th><th>Side</th><th>Carried as</th><th>Type</th><th>Order no / refund no</th>'
            '<th>Status</th><th class="num">Amount</th><th>Cur.</th><th>Time</th><th>Payer</th>'
            '<th>Source (file:line)</th><th>First seen</th><th class="num">Age (days)</th></tr></thead>')
    body = []
    for r in rows:
        time = r.get("txn_time") or r.get("paid_at") or r.get("created_at")
        source = f'{r.get("source_file")}:{r["source_line"]}' if r.get("source_line") else ""
        ref = e(r.get("order_no")) + (f'<br><span class="muted">{e(r["refund_no"])}</span>' if r.get("refund_no")
                                      else "")
        body.append(
            f'<tr><td>{e(r.get("channel"))}</td><td>{e(r.get("side"))}</td><td>{e(r.get("carried_as"))}</td>'
            f'<td>{e(r.get("txn_type"))}</td><td class="mono">{ref}</td><td>{e(r.get("status"))}</td>'
            f'<td class="num">{e(money(r.get("amount")))}</td><td>{e(r.get("currency"))}</td>'
            f'<td class="mono nowrap">{e(time)}</td><td class="mono nowrap">{e(r.get("payer_id"))}</td>'
            f'<td class="mono src">{e(source)}</td><td>{e(r.get("first_seen"))}</td>'
            f'<td class="num">{e(r.get("age_days"))}</td></tr>')
    return (f'<div class="scroll"><table id="open-items" data-rows="{len(rows)}" '
            f'data-total-rows="{listed.total}">{head}<tbody>{"".join(body)}</tbody></table></div>')


def render_html(*, title: str, subtitle: str, summary: dict, fees: dict, discrepancies: Shortlist,
                open_items: Shortlist, trend: list[dict], with_date: bool = False, footer: str = "") -> str:
    """The whole page as text (UTF-8). ``summary`` has Decimal amounts (reports.data).

    ``discrepancies`` and ``open_items`` are the rows to list (at most
    ``HTML_ROW_LIMIT`` each, most urgent first) with the count of all rows.
    """
    csv_name = "each date's discrepancies.csv" if with_date else "discrepancies.csv"
    breaks_capped = _not_shown(discrepancies, "breaks", "rows", "most urgent (needs review first, then auto-fixed, "
                               "carried and cleared; by category, channel and order)",
                               f"{csv_name} and in report.xlsx (one sheet per category)")
    items_capped = _not_shown(open_items, "open_items", "open items", "most urgent (open breaks first, then pending "
                              "items; the longest open first)", "open_items.csv and in report.xlsx (sheet Open items)")
    cards = "".join(_channel_card(channel_glance(name, ch, fees.get(name)))
                    for name, ch in sorted(summary.get("channels", {}).items()))
    missing = summary.get("channels_not_available") or []
    alert = (f'<div class="alert" id="not-reconciled"><b>Not reconciled</b> (no statement): {e(", ".join(missing))}'
             '. Their local orders are held and will be reconciled when the statement arrives.</div>'
             if missing else "")
    alert += "".join(f'<div class="alert" id="rows-rejected-{e(name)}"><b>Rows rejected.</b> {e(line)}</div>'
                     for name, line in rejected_rows_headlines(summary))
    rf = summary.get("roll_forward") or {}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{e(title)}</title><style>{CSS}</style></head>
<body><header><h1>{e(title)}</h1><div class="sub">{e(subtitle)}</div></header><main>
{alert}
<h2>At a glance, per channel</h2><div class="cards">{cards or '<p class="muted">No channel reconciled.</p>'}</div>
<h2>Open items roll-forward</h2>{_roll_forward(rf)}
<div class="charts">
<section class="card" id="chart-categories"><h3>Breaks by category</h3>{_bar_chart(breaks_by_category(summary))}</section>
<section class="card" id="chart-trend"><h3>Trend</h3>{_trend_chart(trend)}</section>
</div>
<h2>Break list ({discrepancies.total:,} rows)</h2>
<p class="muted">Both sides side by side. Difference = channel − local. Card numbers and payer ids are masked.</p>
{breaks_capped}{_break_list(discrepancies, with_date)}
<h2>Open items carried forward ({open_items.total:,})</h2>{items_capped}{_open_items(open_items)}
<footer>{footer}</footer>
</main></body></html>
"""
