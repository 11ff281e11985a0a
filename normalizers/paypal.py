"""PayPal settlement report (STL-yyyymmdd.NN.VVV.CSV) from the SFTP ``/ppreports/outgoing`` folder.

Layout (../shared/reference/channel-formats.md): CSV, text quoted, numbers
not. UTF-8, sometimes with a BOM; old files UTF-16 (told apart by their BOM).
Every row starts with its record type:

    RH report header   "RH",generated,window,"account id",version
    FH file header     "FH",file number
    SH section header  "SH",start,end,"account id","partner account id"
    CH column names    selected by name, never by position
    SB one transaction
    SF section footer  "SF","currency",gross CR,gross DR,fee CR,fee DR,(balances…)
    SC section count   "SC",number of SB rows in the section
    RF report footer   same leading fields as SF, over the whole report
    RC report count    "RC",number of SB rows in the report
    FF file footer     "FF",… (its number is recorded, not checked: see below)

Amounts are unsigned integers in hundredths of the currency unit (PayPal's
note: "100,00 yen and $100.00 USD are both represented as 10000"), the
direction in the matching "Debit or Credit" column.

Mapping decisions (also in DECISIONS.md):
- PAYMENT: event code T00xx with gross CR (payments received). REFUND: T1107
  with gross DR. Every other SB row (withdrawals, holds, conversions,
  chargebacks, fees billed alone, …) is a reject naming its event code: it is
  money movement, but not an order payment or refund the order system knows.
- order_no = Invoice ID (the merchant's order number). Refunds: order_no =
  Invoice ID (PayPal carries the original payment's invoice onto its refund),
  refund_no = Custom Field (where our checkout puts the merchant refund
  number). Both columns can be changed with the normalizer options
  ``refund_order_column`` / ``refund_no_column``. A refund with no refund
  number is rejected.
- channel_txn_id = Transaction ID; for a refund, the original payment's id
  (PayPal Reference ID, when its type is TXN), channel_refund_id = the
  refund's own Transaction ID.
- amount: Gross Transaction Amount / 100, positive. fee: Fee Amount / 100,
  positive when Fee Debit or Credit is DR (charged), negative when CR
  (returned with a refund); a fee in a currency other than the gross is
  rejected. currency = Gross Transaction Currency. coupon_amount 0.00.
- txn_time: Transaction Completion Date (Initiation Date when empty),
  converted from its UTC offset to the business time zone (normalizer option
  ``timezone``, default Asia/Shanghai). status SUCCESS (the report lists
  settled money movements). payer_id = Consumer ID. merchant_id = the
  section's account id.

Control totals (IntegrityError naming the footer's line when they disagree):
SC and RC must equal the number of SB rows (records + rejects) of the section
and of the report; SF and RF gross/fee credit and debit totals must equal the
sums of the SB rows, per currency. A currency whose amounts a rejected row
made unreadable is listed as unverified instead. A file without FF, or a
section without its SC, is truncated. The FF number is not checked: PayPal
documents FF but we could not confirm whether it counts SB rows or files.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

from normalizers.base import (ControlReport, Normalizer, RawStatement, Sink, decoded_lines, read_lines,
                              readable_order_no)
from core.errors import IntegrityError
from schemas.money import check_money, exact_totals
from schemas.standard import StandardRecord
from schemas.times import format_time, parse_time

REQUIRED_COLUMNS = (
    "Transaction ID", "Invoice ID", "PayPal Reference ID", "PayPal Reference ID Type", "Transaction Event Code",
    "Transaction Initiation Date", "Transaction Completion Date", "Transaction Debit or Credit",
    "Gross Transaction Amount", "Gross Transaction Currency", "Fee Debit or Credit", "Fee Amount", "Fee Currency",
    "Custom Field", "Consumer ID",
)
TOTALS = ("gross CR", "gross DR", "fee CR", "fee DR")  # order of the amounts after the currency in SF and RF
KNOWN_TYPES = {"RH", "FH", "SH", "CH", "SB", "SF", "SC", "RF", "RC", "FF"}
TIME_FORMAT = "%Y/%m/%d %H:%M:%S %z"
CURRENCY = re.compile(r"^[A-Z]{3}$")
REFUND_CODE = "T1107"
EVENT_NAMES = {"T0400": "withdrawal", "T1106": "payment reversal", "T1201": "chargeback", "T1108": "fee reversal",
               "T1110": "hold for dispute", "T1111": "hold released", "T0200": "currency conversion",
               "T1503": "hold on available balance", "T1105": "reversal of general account hold"}


class RowError(ValueError):
    """An SB row that cannot become a standard record."""


def _column_key(name: str) -> str:
    """Column names compared without case or repeated blanks (PayPal's own samples vary)."""
    return " ".join(name.split()).casefold()


def minor_units(text: str, name: str, *, blank_is_zero: bool = False) -> int:
    """An unsigned amount in hundredths, as an integer."""
    value = text.strip()
    if not value and blank_is_zero:
        return 0
    if not (value.isascii() and value.isdigit()):
        raise RowError(f"{name} {text!r} is not an unsigned whole number of hundredths")
    return int(value)


def to_money(minor: int, name: str = "amount") -> Decimal:
    """Hundredths as Decimal major units (exact: no float on the way), within the one amount range
    (``check_money``): a 20-digit amount is a rejected row, not an ArrowInvalid in the Parquet copy."""
    return check_money(Decimal(minor).scaleb(-2), name)


class _Section:
    """Running counts and sums of one section (or of the whole report)."""

    def __init__(self):
        self.rows = 0
        self.sums: dict[str, dict[str, int]] = {}  # currency -> TOTALS label -> hundredths
        self.blind: set[str] = set()  # currencies a rejected row left unsummable
        self.footed: set[str] = set()  # currencies with an SF/RF row

    def add(self, currency: str, label: str, minor: int) -> None:
        self.sums.setdefault(currency, dict.fromkeys(TOTALS, 0))[label] += minor


class PayPalNormalizer(Normalizer):
    """The PayPal settlement report (STL), version 009 columns, selected by name."""

    @exact_totals
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        zone = ZoneInfo(self.options.get("timezone", "Asia/Shanghai"))
        refund_order = _column_key(self.options.get("refund_order_column", "Invoice ID"))
        refund_no = _column_key(self.options.get("refund_no_column", "Custom Field"))
        report = ControlReport()
        whole = _Section()
        section: _Section | None = None
        section_no = 0
        columns: dict[str, int] | None = None
        account = ""
        seen_rh = seen_ff = False
        last = 0

        def fail(message: str, line: int, hint: str = "download the report again; if it repeats, ask PayPal "
                                                         "to re-issue it") -> IntegrityError:
            return IntegrityError(message, line=line, **where, hint=hint)

        for number, text, bad in self._lines(raw, where):
            last = number
            if not text.strip():
                continue
            try:
                row = next(csv.reader([text], delimiter=",", quotechar='"', doublequote=True, strict=False))
            except csv.Error as exc:  # a field past the csv module's 128 KiB limit: not a report row
                raise fail(f"the line is not valid CSV ({exc}): not a PayPal settlement report row", number) from None
            rtype = row[0].strip() if row else ""
            if seen_ff:
                raise fail("content after the FF file footer", number)
            if rtype not in KNOWN_TYPES:  # the line is not a report row: none of it is quoted
                raise fail("the first field is not a record type (RH, FH, SH, CH, SB, SF, SC, RF, RC, FF): not a "
                           "PayPal settlement report row", number,
                           hint="check that the file is an STL report; a normalizer update may be needed")
            if not seen_rh and rtype != "RH":
                raise fail(f"the report starts with {rtype}, not the RH report header", number)
            if rtype == "SB":
                if section is None or columns is None:
                    raise fail("transaction row (SB) outside a section with its CH column names", number)
                report.data_rows += 1
                section.rows += 1
                whole.rows += 1
                at = columns.get(_column_key("Invoice ID"))
                order_no = readable_order_no(row[at]) if at is not None and at < len(row) else ""
                if bad:
                    sink.reject(number, bad, text, order_no)
                    section.blind.add("*")
                    whole.blind.add("*")
                    continue
                self._add_to_sums(row, columns, (section, whole))
                try:
                    sink.record(self._record(row, columns, raw, number, account, zone, refund_order, refund_no))
                except ValueError as exc:
                    sink.reject(number, str(exc), text, order_no)
                continue
            if bad:
                raise fail(f"{rtype} row: {bad}", number)
            if rtype == "RH":
                if seen_rh:
                    raise fail("a second RH report header", number)
                seen_rh = True
                account = row[3].strip() if len(row) > 3 else ""
                report.declared["RH report version"] = row[4].strip() if len(row) > 4 else ""
            elif rtype == "SH":
                if section is not None:
                    raise fail("a new section (SH) starts before the previous one ended with SC", number)
                section, section_no, columns = _Section(), section_no + 1, None
                if len(row) > 3 and row[3].strip():
                    account = row[3].strip()
            elif rtype == "CH":
                if section is None:
                    raise fail("column names (CH) outside a section", number)
                columns = self._columns(row, number, fail)
            elif rtype in ("SF", "RF"):
                scope = section if rtype == "SF" else whole
                if scope is None:
                    raise fail("section footer (SF) outside a section", number)
                label = f"section {section_no}" if rtype == "SF" else "report"
                self._check_footer(row, scope, label, report, number, fail)
            elif rtype in ("SC", "RC"):
                scope = section if rtype == "SC" else whole
                if scope is None:
                    raise fail("section count (SC) outside a section", number)
                label = f"section {section_no}" if rtype == "SC" else "report"
                self._check_count(row, scope, label, report, number, fail)
                if rtype == "SC":
                    section, columns = None, None
            elif rtype == "FF":
                if section is not None:
                    raise fail("the file footer (FF) comes before the open section's SC count", number)
                seen_ff = True
                report.declared["FF"] = row[1].strip() if len(row) > 1 else ""
        if not seen_rh:
            raise fail("the report is empty", 1, hint="the download was probably cut short; download it again")
        if not seen_ff:
            raise fail("the file footer (FF) is missing: the file is truncated", last,
                       hint="nothing was published for this channel and date; download the report again")
        report.unverified = sorted(report.unverified)
        return report

    # -- pieces ----------------------------------------------------------------
    def _lines(self, raw: RawStatement, where: dict):
        """(line number, text, decoding problem or '') of each physical line; BOM and line end removed.

        Streamed within the statement limits (``read_lines``), UTF-16 included."""
        stream = raw.stream if hasattr(raw.stream, "peek") else io.BufferedReader(raw.stream)
        if stream.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            yield from self._utf16_lines(stream, where)
            return
        for number, data in read_lines(stream, self.limits, where):
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                data = data[3:]
            data = data.rstrip(b"\r\n")
            try:
                yield number, data.decode("utf-8"), ""
            except UnicodeDecodeError as exc:
                yield number, data.decode("utf-8", "replace"), f"not valid UTF-8 at byte {exc.start}"

    def _utf16_lines(self, stream, where: dict):
        """Old reports, UTF-16 (told by their BOM): decoded as a stream within the statement limits."""
        for number, text in decoded_lines(stream, "utf-16", self.limits, where,
                                          hint="download the report again in binary mode"):
            yield number, text.rstrip("\r"), ""

    @staticmethod
    def _columns(row: list[str], number: int, fail) -> dict[str, int]:
        index = {_column_key(name): i for i, name in enumerate(row) if i > 0}
        missing = [c for c in REQUIRED_COLUMNS if _column_key(c) not in index]
        if missing:
            raise fail(f"unknown column set: CH lacks {', '.join(missing)}", number,
                       hint="PayPal changed the report version; a normalizer update is needed")
        index["__width__"] = len(row)
        return index

    @staticmethod
    def _add_to_sums(row: list[str], columns: dict, scopes) -> None:
        def col(name: str) -> str:
            i = columns[_column_key(name)]
            return row[i].strip() if i < len(row) else ""

        for amount, direction, currency, kind in (
                ("Gross Transaction Amount", "Transaction Debit or Credit", "Gross Transaction Currency", "gross"),
                ("Fee Amount", "Fee Debit or Credit", "Fee Currency", "fee")):
            cur, dc = col(currency), col(direction)
            try:
                minor = minor_units(col(amount), amount, blank_is_zero=(kind == "fee"))
            except RowError:
                minor = None
            if minor == 0 and not dc:
                continue  # no fee on this row
            if minor is None or dc not in ("CR", "DR") or not CURRENCY.match(cur):
                for scope in scopes:
                    scope.blind.add(cur if CURRENCY.match(cur) else "*")
                continue
            for scope in scopes:
                scope.add(cur, f"{kind} {dc}", minor)

    def _record(self, row, columns, raw: RawStatement, number: int, account: str, zone, refund_order: str,
                refund_no: str) -> StandardRecord:
        if len(row) != columns["__width__"]:
            raise RowError(f"expected {columns['__width__']} fields as in CH, found {len(row)}")

        def col(name: str) -> str:
            return row[columns[_column_key(name)]].strip()

        code, dc = col("Transaction Event Code"), col("Transaction Debit or Credit")
        if code == REFUND_CODE:
            if dc != "DR":
                raise RowError(f"refund {code} with gross {dc or 'blank'}, expected DR")
            txn_type = "REFUND"
        elif code.startswith("T00") and dc == "CR":
            txn_type = "PAYMENT"
        else:
            name = EVENT_NAMES.get(code, "")
            raise RowError(f"event code {code}{' (' + name + ')' if name else ''} with gross {dc or 'blank'} is not "
                           "a payment received (T00xx CR) or a payment refund (T1107 DR): not reconciled against "
                           "orders")
        currency = col("Gross Transaction Currency")
        if not CURRENCY.match(currency):
            raise RowError(f"Gross Transaction Currency {currency!r} is not an ISO 4217 code")
        amount = to_money(minor_units(col("Gross Transaction Amount"), "Gross Transaction Amount"),
                          "Gross Transaction Amount")
        fee_minor = minor_units(col("Fee Amount"), "Fee Amount", blank_is_zero=True)
        fee_dc = col("Fee Debit or Credit")
        if fee_minor and fee_dc not in ("CR", "DR"):
            raise RowError(f"Fee Debit or Credit {fee_dc!r} is neither CR nor DR")
        if fee_minor and col("Fee Currency") != currency:
            raise RowError(f"fee in {col('Fee Currency')!r}, gross in {currency}: review it by hand")
        fee = to_money(-fee_minor if fee_dc == "CR" else fee_minor, "Fee Amount")
        moments = {}
        for name in ("Transaction Completion Date", "Transaction Initiation Date"):  # both real times, when given
            if col(name) or (name == "Transaction Initiation Date" and not moments):
                moments[name] = parse_time(col(name), TIME_FORMAT, what=name)
        moment = moments.get("Transaction Completion Date") or moments["Transaction Initiation Date"]
        txn_time = format_time(moment.astimezone(zone))
        txn_id = col("Transaction ID")
        common = dict(channel=self.channel.name, merchant_id=account, txn_type=txn_type, status="SUCCESS",
                      currency=currency, amount=amount, fee=fee, coupon_amount=Decimal("0.00"), txn_time=txn_time,
                      payer_id=col("Consumer ID"), bank="", source_file=raw.name, source_line=number)
        if txn_type == "PAYMENT":
            if not col("Invoice ID"):
                raise RowError("payment without Invoice ID (the merchant order number)")
            return StandardRecord(order_no=col("Invoice ID"), refund_no="", channel_txn_id=txn_id,
                                  channel_refund_id="", **common)
        order_no = row[columns[refund_order]].strip() if refund_order in columns else ""
        number_text = row[columns[refund_no]].strip() if refund_no in columns else ""
        if not order_no:
            raise RowError("refund without its order number (Invoice ID)")
        if not number_text:
            raise RowError("refund without a merchant refund number (Custom Field); refunds made on the PayPal site "
                           "carry none: match it by hand through PayPal Reference ID "
                           f"{col('PayPal Reference ID')!r}")
        original = col("PayPal Reference ID") if col("PayPal Reference ID Type") == "TXN" else ""
        return StandardRecord(order_no=order_no, refund_no=number_text, channel_txn_id=original or txn_id,
                              channel_refund_id=txn_id, **common)

    @staticmethod
    def _check_footer(row, scope: _Section, label: str, report: ControlReport, number: int, fail) -> None:
        if len(row) < 6:
            raise fail(f"{row[0]} row has {len(row)} fields, expected a currency and four totals", number)
        currency = row[1].strip()
        try:
            declared = {t: minor_units(v, t) for t, v in zip(TOTALS, row[2:6])}
        except RowError as exc:
            raise fail(f"{row[0]} row: {exc}", number) from None
        scope.footed.add(currency)
        computed = scope.sums.get(currency, dict.fromkeys(TOTALS, 0))
        unverified = currency in scope.blind or "*" in scope.blind
        problems = []
        for t in TOTALS:
            key = f"{label} {currency} {t}"
            report.declared[key], report.computed[key] = str(declared[t]), str(computed[t])
            if unverified:
                report.unverified.append(key)
            elif declared[t] != computed[t]:
                problems.append(f"{row[0]} {currency} {t} says {declared[t]}, the SB rows add up to {computed[t]}")
        if problems:
            raise fail(f"{label} totals disagree with the rows (hundredths): " + "; ".join(problems), number,
                       hint="nothing was published for this channel and date; ask PayPal to re-issue the report "
                            "or download it again")

    @staticmethod
    def _check_count(row, scope: _Section, label: str, report: ControlReport, number: int, fail) -> None:
        declared = row[1].strip() if len(row) > 1 else ""
        key = f"{label} {row[0]}"
        report.declared[key], report.computed[key] = declared, str(scope.rows)
        if declared != str(scope.rows):
            raise fail(f"{row[0]} says {declared or 'nothing'} rows, the {label} has {scope.rows} SB rows", number,
                       hint="nothing was published for this channel and date; the file is incomplete or damaged: "
                            "download the report again")
        unfooted = sorted(c for c in scope.sums if c not in scope.footed)
        footer = "SF" if row[0] == "SC" else "RF"
        if unfooted:
            raise fail(f"{label} has rows in {', '.join(unfooted)} but no {footer} totals for them", number,
                       hint="download the report again")


NORMALIZER = PayPalNormalizer
