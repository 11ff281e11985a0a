"""The report step's fast paths, held equal to the plain per-field and per-cell code they stand in for.

Each fast path tests a whole row at once and hands the row to the plain code when in doubt:
``schemas.masking.RowMasker`` (``mask_record``), ``reports.data.iter_csv`` (``csv.DictReader`` + ``_typed``),
``Sheet.append_plain`` (``Sheet._append_cells``) and the report sheets' rows (``_value`` per value, then the
writer cell by cell). Ordinary and hostile values go through both ways, and the results must be the same:
card numbers in every spelling, openid-like and e-mail text, formula starts, control characters, XML specials,
the writer's own seam character, non-ASCII text, empty and missing values.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.storage import Storage
from reports import xlsxstream
from reports.data import DISCREPANCY_MONEY, INT_COLUMNS, OPEN_ITEM_MONEY, _typed, csv_dicts, iter_csv
from reports.xlsx import FORMULA_START
from reports.xlsxstream import SEAM, Style, Workbook
from schemas.masking import RowMasker, mask_record, mask_text, may_need_masking
from schemas.outputs import DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS
from tests.reports.test_reports import written_book

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
HOSTILE = [
    "", " ", "x", "PAID", "wechatpay", "AMOUNT_MISMATCH", "2026-11-20 09:09:25", "2026-11-21-20261123T173852Z",
    "wechatpay_all_20261120.csv", "local 1101.98, channel 1100.98, difference -1.00",
    # card numbers: runs, grouped with spaces or dashes, Amex, 12 against 13 digits, inside text, too long
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "6222021234567890123", "622202123456",
    "6222021234567", "3782 822463 10005", "4111 1111-1111 1111", "card 4111111111111111 paid",
    "x4111111111111111y", "12345678901234567890123", "1234 5678", "123456789", "4200000526202611206917414851",
    # openids (28 characters from "o"), near misses, e-mails
    OPENID, "x" + OPENID, OPENID + "x", "a" + OPENID[1:], OPENID[:-1], f"openid {OPENID}.", f"{OPENID}@qq.com",
    "zhang.san@example.com", "mail a@b.co now", "@", "a@b", "@@x.io",
    # formula starts (ASCII and full-width), control characters, XML specials, the writer's escapes and seam
    '=HYPERLINK("http://x","y")', "+SUM(A1)", "-1.00", "@foo", "\tlead tab", "\rcr", "\nnl", "\uff1d1", "\uff0b",
    "\uff0d", "\uff20x", "trailing ", " leading", "a\x01b", "\x00", "\x1f=x", "\x01=cmd", "\x0b", "\x7f",
    "_x0041_", "_x", "tax_x0", "a & b", "<b>", "x > y", SEAM, "a" + SEAM + " b", "a " + SEAM + "b", SEAM + "=1",
    "\u00a0nbsp", "\u3000", "\ud800", "\ufffe", "\uffff", "tab\tinside", "line\nbreak", "cr\rinside",
    # non-ASCII
    "張三 付款", "支付宝 4111111111111111", "\uff14\uff11\uff11\uff11" * 4,  # full-width digits are not [0-9]
    "".join(map(chr, range(0x660, 0x66a))) * 2,  # nor Arabic-Indic ones
]
texts = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=30),
    st.builds(lambda a, b, c: a + b + c, st.sampled_from(HOSTILE), st.text(max_size=4), st.sampled_from(HOSTILE)),
    st.from_regex(r"[=+@\t -]?[0-9]{4}[ -]?[0-9]{4,6}[ -]?[0-9]{1,7}[ a]?", fullmatch=True),
)
decimals = st.one_of(st.sampled_from([Decimal("1101.98"), Decimal("0.00"), Decimal("-0.00"), Decimal("1E+2"),
                                      Decimal("0E-7"), Decimal("12345678901234567890.123")]),
                     st.decimals(allow_nan=False, allow_infinity=False))


# -- masking -------------------------------------------------------------------------------------------------------

MASK_COLUMNS = ["date", "channel", "note", "payer_id", "order_no", "amount", "age_days", "bank", "openid",
                "channel_txn_id", "raw", "email"]
NUMERIC = {"amount", "age_days"}


def masked_both_ways(values: list) -> tuple[list, list]:
    fast = RowMasker(MASK_COLUMNS, NUMERIC)(list(values))
    plain = list(mask_record(dict(zip(MASK_COLUMNS, values))).values())
    return fast, plain


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(texts, st.none()), min_size=len(MASK_COLUMNS) - 2, max_size=len(MASK_COLUMNS) - 2),
       st.one_of(decimals, st.none()), st.one_of(st.integers(), st.none()))
def test_row_masker_is_mask_record(fields, amount, age):
    values = fields[:5] + [amount, age] + fields[5:]
    fast, plain = masked_both_ways(values)
    assert fast == plain and list(map(type, fast)) == list(map(type, plain))


@pytest.mark.parametrize("text", HOSTILE)
def test_row_masker_is_mask_record_for_each_hostile_text(text):
    for column in range(len(MASK_COLUMNS)):  # the text in each column in turn, ordinary text in the others
        values = ["2026-11-20", "alipay", "note", "payer", "S1", Decimal("1.00"), 3, "CMB", "", "4200", "", ""]
        values[column] = text
        fast, plain = masked_both_ways(values)
        assert fast == plain, (MASK_COLUMNS[column], text)


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, max_size=6))
@example([f"a{OPENID}", "4111 1111 1111 1111"])
def test_nothing_to_mask_when_the_row_test_says_so(parts):
    for text in parts:
        assert may_need_masking(text) or mask_text(text) == text
    assert may_need_masking("\n".join(parts)) or all(mask_text(t) == t for t in parts)


# -- reading the CSVs ----------------------------------------------------------------------------------------------

def read_both_ways(tmp_path, data: bytes, money, ints) -> tuple[tuple, tuple]:
    """The rows iter_csv reads, and those _typed makes of DictReader's: each as far as it gets, and its error."""
    (tmp_path / "f.csv").write_bytes(data)
    storage = Storage(tmp_path.as_uri())

    def rows(stream) -> tuple[list, str | None]:
        out = []
        try:
            for row in stream:
                out.append(row)
        except ValueError as exc:  # an amount or a count that is not one (MoneyError is a ValueError)
            return out, repr(exc)
        return out, None

    return (rows(iter_csv(storage, "", "f.csv", money, ints)),
            rows(_typed(row, money, ints) for row in csv_dicts(storage, "", "f.csv")))


def same_rows(fast: tuple[list, str | None], plain: tuple[list, str | None]) -> bool:
    (a_rows, a_error), (b_rows, b_error) = fast, plain
    return a_error == b_error and a_rows == b_rows and all(
        list(a.items()) == list(b.items()) and list(map(type, a.values())) == list(map(type, b.values()))
        for a, b in zip(a_rows, b_rows))


amounts = st.sampled_from(["", " ", "1.00", "-12.3", "0", " 7.10 ", "9999999999999999.99", "1101.98", "1101.98"])
counts = st.sampled_from(["", "0", "12", " 3 ", "1280353"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(texts, min_size=len(OPEN_ITEM_COLUMNS), max_size=len(OPEN_ITEM_COLUMNS)),
                          st.lists(amounts, min_size=3, max_size=3), st.lists(counts, min_size=2, max_size=2),
                          st.integers(-3, 2)), max_size=12),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_iter_csv_reads_what_dict_reader_and_typed_read(tmp_path_factory, rows, newline, bom):
    header = list(OPEN_ITEM_COLUMNS)
    money_at = [header.index(c) for c in OPEN_ITEM_MONEY]
    ints_at = [header.index(c) for c in INT_COLUMNS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    for fields, money, ints, width in rows:
        fields = [re.sub("[\x00\ud800-\udfff]", "", f) for f in fields]  # NUL: csv refuses it; lone surrogates: UTF-8
        for i, a in zip(money_at, money):
            fields[i] = a
        for i, n in zip(ints_at, ints):
            fields[i] = n
        # width < 0: a short row (missing fields), > 0: a long one (extra fields), 2: a blank line
        if width == 2:
            out.write(newline)
            continue
        writer.writerow(fields[:len(fields) + width] if width < 0 else fields + ["extra"] * width)
    data = ("\ufeff" if bom else "").encode("utf-8") + out.getvalue().encode("utf-8")
    fast, plain = read_both_ways(tmp_path_factory.mktemp("csv"), data, OPEN_ITEM_MONEY, INT_COLUMNS)
    assert same_rows(fast, plain)


def test_iter_csv_with_odd_headers(tmp_path):
    cases = [
        b"",                                              # no header at all
        b"date,note,note,local_amount\n2026-11-20,a 4111111111111111,b,1.00\n",  # a column twice
        b"date,local_amount,age_days,local_amount,age_days\n2026-11-20,1.00,1,2.00,2\n",
        b"date,local_amount,local_amount\n2026-11-20,1.00,x\n",
        b"\n2026-11-20,x\n",                              # a blank header line
        b"date,payer_id,local_amount,age_days\n2026-11-20,o12345678901234567890123456a,,\n,,,\n\n",
        b"note\n\"multi\nline 4111 1111 1111 1111\"\n",
    ]
    for data in cases:
        fast, plain = read_both_ways(tmp_path, data, DISCREPANCY_MONEY, INT_COLUMNS)
        assert same_rows(fast, plain), data


# -- the writer: template rows against cell-by-cell rows ---------------------------------------------------------

STYLES = [None, Style(bold=True), Style(num_format="0.000", fill="FFEEDD"), Style(size=13, valign="top")]
cell_values = st.one_of(texts, st.none(), st.just(""), decimals, st.integers(), st.integers(0, 10**6))


def written(rows, append) -> tuple[bytes, list]:
    """The workbook holding ``rows`` (values, style index) appended by ``append``, and the errors raised."""
    out, errors = io.BytesIO(), []
    with Workbook(number_formats={Decimal: "#,##0.00", int: "0"}) as book:
        sheet = book.add_sheet("S", widths={1: 12}, freeze_rows=1)
        for row, style in rows:
            try:
                append(sheet, row, STYLES[style])
            except (TypeError, ValueError) as exc:
                errors.append((type(exc), str(exc)))
        book.save(out)
    return out.getvalue(), errors


def assert_written_alike(rows):
    fast = written(rows, lambda sheet, row, style: sheet.append(row, style))
    plain = written(rows, lambda sheet, row, style: sheet._append_cells(row, style))
    assert fast == plain


@settings(max_examples=250, deadline=None)
@given(st.lists(st.tuples(st.lists(cell_values, max_size=8), st.integers(0, len(STYLES) - 1)), max_size=10),
       st.lists(cell_values, min_size=4, max_size=4))
def test_template_rows_are_the_cells_rows(rows, shaped):
    # rows of one shape several times over (the second and later use its template), and then anything
    repeated = [([v if type(v) is not str else v + str(k) for v in shaped], 0) for k in range(3)]
    assert_written_alike(repeated + rows + repeated)


def test_template_rows_are_the_cells_rows_for_each_hostile_value():
    odd = [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN"), True, 1.5, b"x", object()]
    rows = []
    for v in HOSTILE + odd + [None, 0, -7, 10**30, Decimal("-0.00"), Decimal("1E+2")]:
        rows += [(["ok", v, Decimal("1.00"), 3], 0), ([v, "", None, v], 1), (["ok", "x", Decimal("2.00"), 4], 0),
                 ([v], 2), ([None, v, Decimal("3.00")], 3)]  # and a text alone in its row
    rows += [([f"w{k}" for k in range(300)], 0), ([Decimal(k) for k in range(300)], 0)]  # too wide for a template
    assert_written_alike(rows)


def test_a_full_sheet_refuses_the_row_both_ways(monkeypatch):
    monkeypatch.setattr(xlsxstream, "MAX_ROWS", 3)
    rows = [(["a", Decimal("1.00")], 0)] * 5
    fast, plain = (written(rows, lambda s, r, st_: s.append(r, st_)),
                   written(rows, lambda s, r, st_: s._append_cells(r, st_)))
    assert fast == plain and len(fast[1]) == 2


# -- the report sheets: a row as it is against _value per value --------------------------------------------------

def report_row(columns, fields: list, money_columns, k: int) -> dict:
    """A row of ``columns`` holding ``fields``; its amounts a Decimal or None, its counts an int or None."""
    row = dict(zip(columns, fields))
    for c in money_columns:
        row[c] = Decimal(f"{k}.0{k % 10}") if k % 3 else None
    for c in INT_COLUMNS:
        row[c] = k if k % 4 else None
    return row


def assert_report_rows_alike(rows: list[list]):
    breaks = [dict(report_row(DISCREPANCY_COLUMNS, r, DISCREPANCY_MONEY, k), category="AMOUNT_MISMATCH")
              for k, r in enumerate(rows)]
    items = [report_row(OPEN_ITEM_COLUMNS, r, OPEN_ITEM_MONEY, k) for k, r in enumerate(rows)]
    fast = written_book(breaks, items)
    with pytest.MonkeyPatch.context() as mp:  # every row through _value and the writer's cells, as before
        mp.setattr(xlsxstream.Sheet, "append_plain", lambda self, values, style=None, accept=None: False)
        plain = written_book(breaks, items)
    assert fast == plain


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.one_of(texts, st.none()), min_size=len(OPEN_ITEM_COLUMNS),
                         max_size=len(OPEN_ITEM_COLUMNS)), min_size=1, max_size=6))
def test_report_rows_as_they_are_equal_value_per_value(rows):
    assert_report_rows_alike(rows)


def test_report_rows_with_each_hostile_text():
    rows = [[text] * len(OPEN_ITEM_COLUMNS) for text in HOSTILE + [c + "x" for c in FORMULA_START]]
    rows += [["ok"] * 5 + [text] + ["ok"] * (len(OPEN_ITEM_COLUMNS) - 6) for text in HOSTILE]
    assert_report_rows_alike(rows)
