"""Bank statements described by a spec in the channel file: CSV-shaped, fixed width or XML.

Adding a bank is configuration, not code. The channel file says
``normalizer = "bankspec"`` and describes the statement in its
``[normalizer]`` table (reference: EXTENDING.md, "Bank statements by spec";
examples: conf/channels/bank_icbc_csv.toml, conf/channels/bank_camt053.toml).

How it is built (one module per step): ``BankSpec`` (``normalizers.bankspec_spec``) validates the table once, when the normalizer
is constructed (a wrong spec is a ConfigError naming the channel file and the
key). Three readers (``normalizers.bankspec_read``) turn the raw bytes into rows ``(line, fields, raw text)``
and collect the statement's declared control totals; one ``RowMapper`` (here) turns a
row's fields into a ``StandardRecord``. Every data row becomes one record or
one reject; the declared totals are compared with what the rows add up to.

Control totals (``[normalizer.totals]``): ``count`` (data rows), ``sum``
(absolute amounts of all data rows), ``payment_count``, ``payment_sum``,
``refund_count``, ``refund_sum``. A rejected row still counts: the bank
counted it too. When a rejected row's amount or type cannot be read, the
totals that need it are reported as unverified rather than failed.
"""

from __future__ import annotations

from decimal import Decimal

from core.errors import IntegrityError
from normalizers.bankspec_read import READERS, Declared
from normalizers.bankspec_spec import CHECKS, CURRENCY_CODE, SCALED_DIGITS, BankSpec, RowError
from normalizers.base import ControlReport, Normalizer, RawStatement, Sink, readable_order_no
from schemas.money import CENT, MoneyError, check_money, exact_totals, format_money, parse_money, parse_total
from schemas.standard import StandardRecord
from schemas.times import TimeError, format_time, parse_time


# -- mapper: fields -> standard record ----------------------------------------------------------------------------

class RowMapper:
    """Applies a spec's columns, constants, maps and rules to one row's fields."""

    def __init__(self, spec: BankSpec, channel: str):
        self.spec, self.channel = spec, channel

    def value(self, fields: dict, column: str) -> str:
        """The column's constant, or the first non-empty of its source fields, or ""."""
        if column in self.spec.constants:
            return self.spec.constants[column]
        return next((fields[n] for n in self.spec.columns.get(column, ()) if fields.get(n)), "")

    def money(self, text: str, what: str, *, total: bool = False) -> Decimal:
        """An amount in major units; thousands separators removed, minor units scaled. Never float.

        An amount of a row is within DECIMAL(18,2) (``check_money``); a control total (``total``) may be larger:
        rows at the maximum add up past it."""
        text = text.strip()
        if self.spec.thousands_separator:
            text = text.replace(self.spec.thousands_separator, "")
        if self.spec.amount_scale:
            if not SCALED_DIGITS.match(text):
                raise RowError(f"{what} {text!r} is not a whole number of minor units")
            value = Decimal(text).scaleb(-self.spec.amount_scale)
            if value != value.quantize(CENT):
                raise RowError(f"{what} {text!r} has more precision than a cent")
            value = value.quantize(CENT)
            if total:
                return value
            try:
                return check_money(value, what)  # the same range as any amount
            except MoneyError as exc:
                raise RowError(str(exc)) from None
        try:
            return parse_total(text) if total else parse_money(text)
        except MoneyError as exc:
            raise RowError(f"{what}: {exc}") from None

    def type_and_amount(self, fields: dict) -> tuple[str | None, Decimal]:
        """(txn_type, positive amount). The type is None when the row's type cannot be told (amount still read)."""
        amount = self.money(self.value(fields, "amount"), "amount")
        spec = self.spec
        if spec.type_field:
            source = fields.get(spec.type_field, "")
            kind = spec.type_map.get(source)
            if kind is None:
                raise _UnknownType(amount, f"{spec.type_field} {source!r} is not in txn_type.map")
        else:
            kind = spec.type_default
        if amount.is_signed():  # the sign, not the value: "-0.00" is a (zero) refund too
            # A negative amount is a refund only when configured so, and it must not contradict the type column.
            if not spec.negative_is_refund:
                raise _UnknownType(abs(amount), f"negative amount {amount} (txn_type.negative_is_refund is off)")
            if spec.type_field and kind != "REFUND":
                raise _UnknownType(abs(amount), f"negative amount {amount} on a {kind} row")
            kind, amount = "REFUND", -amount
        return kind, amount

    def time(self, text: str) -> str:
        """The source time in the business time zone, as YYYY-MM-DD HH:MM:SS (the one time rule, ``parse_time``)."""
        moment = parse_time(text, self.spec.time_formats, what="txn_time")
        if moment.tzinfo is None and self.spec.time_zone is not None:
            moment = moment.replace(tzinfo=self.spec.time_zone)
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.spec.business_zone)
        return format_time(moment)

    def record(self, fields: dict, kind: str, amount: Decimal, source_file: str, line: int) -> StandardRecord:
        """The standard record of a row whose type and amount are already known."""
        v = lambda column: self.value(fields, column)  # noqa: E731
        if "status" in self.spec.constants:
            status = self.spec.constants["status"]
        else:
            status = self.spec.status_map.get(v("status"))
            if status is None:
                raise RowError(f"status {v('status')!r} is not in status_map")
        currency = v("currency").upper()
        if not CURRENCY_CODE.match(currency):
            raise RowError(f"currency {v('currency')!r} is not an ISO 4217 code")
        refund = kind == "REFUND"
        return StandardRecord(
            channel=self.channel, merchant_id=v("merchant_id"), txn_type=kind, order_no=v("order_no"),
            refund_no=v("refund_no") if refund else "", channel_txn_id=v("channel_txn_id"),
            channel_refund_id=v("channel_refund_id") if refund else "", status=status, currency=currency,
            amount=amount, fee=self.money(v("fee") or "0", "fee"),
            coupon_amount=self.money(v("coupon_amount") or "0", "coupon_amount"), txn_time=self.time(v("txn_time")),
            payer_id=v("payer_id"), bank=v("bank"), source_file=source_file, source_line=line)


class _UnknownType(RowError):
    """The row's type cannot be told, though its amount was read (so ``sum`` can still be checked)."""

    def __init__(self, amount: Decimal, reason: str):
        super().__init__(reason)
        self.amount = amount


# -- totals -------------------------------------------------------------------------------------------------------

class _Tally:
    """What the data rows add up to, and which checks a rejected row left unverifiable."""

    def __init__(self):
        self.totals = {c: (0 if c.endswith("count") else Decimal(0)) for c in CHECKS}
        self.blind: set[str] = set()

    def add(self, kind: str | None, amount: Decimal | None) -> None:
        self.totals["count"] += 1
        if amount is None:
            self.blind.update(c for c in CHECKS if c != "count")
            return
        self.totals["sum"] += amount
        if kind is None:
            self.blind.update(c for c in CHECKS if c.startswith(("payment_", "refund_")))
            return
        prefix = kind.lower()
        self.totals[f"{prefix}_count"] += 1
        self.totals[f"{prefix}_sum"] += amount


# -- the normalizer -----------------------------------------------------------------------------------------------

class BankSpecNormalizer(Normalizer):
    """A bank statement read as its channel file's [normalizer] spec says."""

    def __init__(self, channel):
        super().__init__(channel)
        self.spec = BankSpec.parse(self.options, channel.conf_file, channel.name)
        self.mapper = RowMapper(self.spec, channel.name)

    @exact_totals
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        declared = Declared()
        report, tally = ControlReport(), _Tally()
        for row in READERS[self.spec.format](self.spec, raw.stream, self.limits, declared, where):
            report.data_rows += 1
            # Type and amount first, even for a row that will be rejected: the bank's totals include it.
            kind = amount = None
            try:
                kind, amount = self.mapper.type_and_amount(row.fields)
            except _UnknownType as exc:
                amount, reason = exc.amount, str(exc)
            except (RowError, MoneyError, TimeError) as exc:
                reason = str(exc)
            tally.add(kind, amount)
            order_no = readable_order_no(self.mapper.value(row.fields or {}, "order_no"))
            if row.problem or kind is None:
                sink.reject(row.line, row.problem or reason, row.raw, order_no)
                continue
            try:
                sink.record(self.mapper.record(row.fields, kind, amount, raw.name, row.line))
            except (RowError, MoneyError, TimeError, ValueError) as exc:
                sink.reject(row.line, str(exc), row.raw, order_no)
        self._check_totals(declared, tally, report, where)
        return report

    def _check_totals(self, declared: Declared, tally: _Tally, report: ControlReport, where: dict) -> None:
        """Compare each configured control total with the rows; IntegrityError at the first footer line that differs."""
        problems, line = [], None
        for check, source in self.spec.totals.items():
            # text formats capture footer groups by name; xml stores the values under the check's own name
            text, at = declared.values.get(source if self.spec.format != "xml" else check, ("", None))
            if at is None:
                raise IntegrityError(f"the footer does not give control total {check} (group {source!r})",
                                     line=declared.last_line or None, **where,
                                     hint="the footer changed or the file is truncated; download it again or "
                                          "update footer_patterns")
            computed = tally.totals[check]
            report.declared[check] = text
            report.computed[check] = str(computed) if check.endswith("count") else format_money(computed)
            if check in tally.blind:
                continue  # a rejected row's amount/type is unknown: unverified, not wrong (it is in the rejects)
            try:
                ok = self._declared_value(check, text) == computed
            except (RowError, MoneyError, ValueError):
                ok = False
            if not ok:
                problems.append(f"{check} says {text}, the rows add up to {report.computed[check]}")
                line = line or at
        report.unverified = sorted(c for c in self.spec.totals if c in tally.blind)
        if problems:
            raise IntegrityError("control totals disagree with the rows: " + "; ".join(problems), line=line, **where,
                                 hint="nothing was published for this channel and date; download the statement "
                                      "again or ask the bank to re-issue it")

    def _declared_value(self, check: str, text: str):
        """A declared total as a number; several statements' totals ("a+b") are added up."""
        parts = text.split("+")
        if check.endswith("count"):
            sep = self.spec.thousands_separator
            return sum(int(p.replace(sep, "") if sep else p) for p in parts)
        return sum((self.mapper.money(p, check, total=True) for p in parts), Decimal(0))


NORMALIZER = BankSpecNormalizer
