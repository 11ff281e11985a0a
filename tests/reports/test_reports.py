"""report.html and report.xlsx, built from a real two-day pipeline run (one Spark run pair per module).

The HTML is checked as Chromium renders it (headless, --dump-dom), the
workbook as openpyxl reads it back; both against summary.json.
"""

from __future__ import annotations

import csv
import datetime as dt
import html.parser
import io
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.build import range_folder, write_range_report, write_reports
from reports.mask import CARD_RE, mask_card, mask_payer, mask_record, mask_text
from reports.xlsx import FORMULA_START, MONEY_FORMAT, safe_text
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
    from recon.config import load_settings
    from recon.demo import Demo
    from recon.storage import Storage

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
    # Every listed row is on the page, and the page is self-contained.
    listed = sum(v["discrepancy_rows"] for v in summary["channels"].values())
    assert f'data-rows="{listed}"' in dom
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
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), ws.title

    ws = wb["Summary"]
    header = [c.value for c in ws[1]]
    seen_totals = 0
    for row in ws.iter_rows(min_row=2):
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


# -- units: masking and the formula sanitiser --------------------------------------------------------------------

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
    assert out.lstrip("'") .endswith(out[-1:]) and (out == text or out == "'" + text or "\x00" in text or
                                                    re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text))


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
