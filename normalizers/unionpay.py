"""UnionPay online (银联全渠道) ZM reconciliation detail file.

Layout (../shared/reference/channel-formats.md): ``INN{yyMMdd}{NN}ZM_{merId}.txt``,
GBK, one transaction a line, 42 fixed-width fields separated by one space
byte, 607 bytes a line (line end not counted). Widths are counted in BYTES:
a GBK Chinese character takes two bytes, so every field is sliced from the
raw bytes first and decoded afterwards. There is no header and no summary
line.

Mapping decisions (also in DECISIONS.md):
- 交易代码 S22 (purchase) -> PAYMENT, S30 (退货) -> REFUND. Any other code
  (撤销, 预授权, …) is rejected: it is not an order payment or a refund the
  order system knows, and guessing its direction would hide it.
- amount: 交易金额, fen, zero padded -> Decimal yuan.
- fee: 商户手续费 (13 wide). ``D`` + 12 digits = debited from the merchant
  (a positive fee); ``C`` + 12 digits = credited back (a negative fee, e.g.
  a refund returning its fee); 13 plain digits are read as a fee charged
  (positive); blank is 0.00.
- coupon_amount: 优惠金额 (13 wide, same sign forms; its magnitude is used);
  blank is 0.00.
- payments: order_no = 商户订单号, channel_txn_id = 查询流水号.
- refunds: refund_no = 商户订单号 of the refund line, order_no = 原始交易订单号,
  channel_refund_id = 查询流水号, channel_txn_id = 原交易查询流水号 (the
  original payment's id, as for WeChat) or 查询流水号 when blank. A refund
  without 原始交易订单号 is rejected: its order cannot be identified.
- txn_time: 交易传输时间 MMDDhhmmss, Beijing time. The year is the one that puts
  the date closest to the settlement date D (a 1231 line in a January file
  belongs to the previous year). Converted to the business time zone
  (normalizer option ``timezone``, default Asia/Shanghai).
- payer_id: 帐号 masked to at most its first 6 and last 4 digits. The full
  number is written nowhere: rejects' raw text is masked too.
- merchant_id: 商户代码; bank: 支付卡类型 (01 DEBIT, 02 CREDIT, 03 SEMI_CREDIT,
  other codes kept as they are); currency CNY; status SUCCESS (the file only
  lists settled transactions).

Control totals: the ZM file has none. Instead every line must be exactly 607
bytes with a space at every field boundary. A line of another length in the
middle of the file is rejected; a short LAST line means the file was cut
(truncated download or extraction) and fails the whole file. An empty file is
a day without transactions (zero records). The ZME error file has another
layout and is refused.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.errors import IntegrityError
from normalizers.base import ControlReport, Normalizer, RawStatement, Sink, read_lines, readable_order_no
from schemas.money import MoneyError, check_money, exact_totals, format_money
from schemas.standard import StandardRecord
from schemas.times import TimeError, parse_time

# (name, width in bytes), in file order: the ZM detail layout.
FIELDS = (
    ("交易代码", 3), ("代理机构标识码", 11), ("发送机构标识码", 11), ("系统跟踪号", 6), ("交易传输时间", 10),
    ("帐号", 19), ("交易金额", 12), ("商户类别", 4), ("终端类型", 2), ("查询流水号", 21), ("支付方式(旧)", 2),
    ("商户订单号", 32), ("支付卡类型", 2), ("原始交易的系统跟踪号", 6), ("原始交易日期时间", 10), ("商户手续费", 13),
    ("结算金额", 13), ("支付方式", 4), ("集团商户代码", 15), ("交易类型", 2), ("交易子类", 2), ("业务类型", 6),
    ("帐号类型", 2), ("账单类型", 4), ("账单号码", 32), ("交互方式", 1), ("原交易查询流水号", 21), ("商户代码", 15),
    ("分账入账方式", 1), ("二级商户代码", 15), ("二级商户简称", 32), ("二级商户分账入账金额", 13), ("清算净额", 13),
    ("终端号", 8), ("商户自定义域", 32), ("优惠金额", 13), ("发票金额", 13), ("分期付款附加手续费", 12),
    ("分期付款期数", 2), ("交易介质", 1), ("原始交易订单号", 32), ("保留使用", 98),
)
SLICES: dict[str, slice] = {}
SEPARATORS: list[tuple[int, str]] = []  # (byte offset of a separator, name of the field before it)
_pos = 0
for _name, _width in FIELDS:
    SLICES[_name] = slice(_pos, _pos + _width)
    _pos += _width
    if len(SLICES) < len(FIELDS):
        SEPARATORS.append((_pos, _name))
        _pos += 1
LINE_BYTES = _pos
assert LINE_BYTES == 607 and len(FIELDS) == 42  # the documented layout; a wrong width shifts every later field

TXN_CODES = {"S22": "PAYMENT", "S30": "REFUND"}
CARD_TYPES = {"01": "DEBIT", "02": "CREDIT", "03": "SEMI_CREDIT"}
SOURCE_ZONE = ZoneInfo("Asia/Shanghai")  # UnionPay stamps times in Beijing time
TRANSMIT_TIME = re.compile(rb"^\d{10}$")
FILE_NAME = re.compile(r"INN\d{8}ZM_(\d+)\.txt$", re.IGNORECASE)
LONG_DIGITS = re.compile(r"(?<!\d)\d{13,19}(?!\d)")  # anything shaped like a card number
# Real files carry a GBK superset now and then (rare characters in names): GB18030 decodes all of GBK identically.
ENCODING = "gb18030"


class RowError(ValueError):
    """A ZM line that cannot become a standard record."""


def mask_card(value: str) -> str:
    """A card number with at most its first 6 and last 4 characters visible (622588******1234)."""
    value = value.strip()
    n = len(value)
    if n > 10:
        return value[:6] + "*" * (n - 10) + value[-4:]
    if n > 4:
        return "*" * (n - 4) + value[-4:]
    return "*" * n


def mask_line(data: bytes, merchant_ids: frozenset[str] = frozenset()) -> str:
    """The raw line as text for a reject, with the 帐号 slot and any card-shaped digit run masked.

    ``merchant_ids`` (the file's merId) stay readable: merchant codes are 15 digits, card-shaped but public.
    """
    card = SLICES["帐号"]
    keep = set(merchant_ids)
    for name in ("商户代码", "二级商户代码", "集团商户代码"):
        if len(data) >= SLICES[name].stop:
            keep.add(data[SLICES[name]].decode(ENCODING, "replace").strip())
    if len(data) >= card.stop:
        slot = data[card].decode("ascii", "replace")
        masked = mask_card(slot)
        data = data[:card.start] + masked.ljust(card.stop - card.start).encode("ascii", "replace") + data[card.stop:]
    text = data.decode(ENCODING, "replace")
    # A malformed line may have its card anywhere: mask every card-shaped run that is not a merchant code,
    # at the cost of now and then masking a long number that was not a card.
    return LONG_DIGITS.sub(lambda m: m.group() if m.group() in keep else mask_card(m.group()), text)


def order_no_at(data: bytes) -> str:
    """The order a rejected line names (原始交易订单号 for an S30 refund, else 商户订单号), or "".

    Only a field still in its place is read: on a line with a byte missing or extra before it, its slot
    starts or ends inside a value instead of at a separator space, and it is not trusted.
    """
    code = data[SLICES["交易代码"]]
    slot = SLICES["原始交易订单号" if code == b"S30" else "商户订单号"]
    if len(data) < slot.stop + 1 or data[slot.start - 1:slot.start] != b" " or data[slot.stop:slot.stop + 1] != b" ":
        return ""
    value = data[slot]
    if value[:1] == b" ":  # left-aligned, padded with spaces: a leading space means a shifted slot
        return ""
    return readable_order_no(value.decode("ascii", "replace"))


def fen_to_yuan(text: str, name: str, *, signed: bool, blank_is_zero: bool) -> Decimal:
    """Fen digits (optionally after a C/D sign) as Decimal yuan; C is a credit to the merchant (negative)."""
    value = text.strip()
    if not value:
        if blank_is_zero:
            return Decimal("0.00")
        raise RowError(f"{name} is blank")
    sign = 1
    if signed and value[0] in "CD":
        sign = -1 if value[0] == "C" else 1
        value = value[1:]
    if not (value.isascii() and value.isdigit()):
        raise RowError(f"{name} {text.strip()!r} is not " + ("[C|D]+digits in fen" if signed else "digits in fen"))
    return check_money((sign * Decimal(int(value))).scaleb(-2), name)  # the one amount range, as for major units


def year_for(month: int, day: int, settlement: dt.date) -> int:
    """The year that puts MMDD closest to the settlement date (the ZM file omits the year)."""
    best = None
    for year in (settlement.year - 1, settlement.year, settlement.year + 1):
        try:
            candidate = dt.date(year, month, day)
        except ValueError:
            continue  # 0229 in a non-leap year
        if best is None or abs(candidate - settlement) < abs(best - settlement):
            best = candidate
    if best is None:
        raise TimeError(f"交易传输时间 {month:02d}{day:02d}…: no year has this date (MMDD), it is not a valid time")
    return best.year


class UnionPayNormalizer(Normalizer):
    """The UnionPay online ZM detail file (fixed width in GBK bytes)."""

    @exact_totals
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        if re.search(r"ZME_", raw.name):
            raise IntegrityError("this is the ZME error file, not the ZM detail file", line=1, **where,
                                 hint="land only INN…ZM_{merId}.txt for this channel; ZME lines need manual review")
        zone = ZoneInfo(self.options.get("timezone", "Asia/Shanghai"))
        report = ControlReport()
        sums = {"PAYMENT": Decimal(0), "REFUND": Decimal(0)}
        fee_total = Decimal(0)
        pending = None  # the last non-blank line: held back until we know whether it is the file's last
        for number, data in self._lines(raw, where):
            if pending is not None:
                fee_total += self._line(pending, raw, sink, report, sums, zone)
            pending = (number, data)
        if pending is not None:
            number, data = pending
            if len(data) < LINE_BYTES:
                raise IntegrityError(f"the last line is {len(data)} bytes, a ZM line is {LINE_BYTES}: "
                                     "the file is truncated", line=number, **where,
                                     hint="nothing was published for this channel and date; download the "
                                          "statement again (check the zip extracted completely)")
            fee_total += self._line(pending, raw, sink, report, sums, zone)
        report.computed = {"lines": str(report.data_rows), "payment_amount": format_money(sums["PAYMENT"]),
                           "refund_amount": format_money(sums["REFUND"]), "fee": format_money(fee_total)}
        return report

    @staticmethod
    def _merchant_ids(name: str) -> frozenset[str]:
        """The merId in the file name INN{yyMMdd}{NN}ZM_{merId}.txt, if the name has that form."""
        m = FILE_NAME.search(name)
        return frozenset([m.group(1)]) if m else frozenset()

    def _lines(self, raw: RawStatement, where: dict):
        """(line number, bytes) of each non-blank line, line end removed. GBK never uses 0x0A/0x0D in a character.
        Read within the statement limits (a line is 607 bytes; anything near max_line_bytes is not a ZM file)."""
        for number, data in read_lines(raw.stream, self.limits, where):
            data = data.rstrip(b"\r\n")
            if data.strip():
                yield number, data

    def _line(self, item, raw: RawStatement, sink: Sink, report: ControlReport, sums: dict, zone) -> Decimal:
        """Send one line to the sink; returns its fee for the computed total (0 when rejected)."""
        number, data = item
        report.data_rows += 1
        try:
            rec = self._record(data, raw, number, zone)
        except (RowError, MoneyError, TimeError, ValueError) as exc:
            sink.reject(number, str(exc), mask_line(data, self._merchant_ids(raw.name)), order_no_at(data))
            return Decimal(0)
        sink.record(rec)
        sums[rec.txn_type] += rec.amount
        return rec.fee

    def _record(self, data: bytes, raw: RawStatement, number: int, zone) -> StandardRecord:
        if len(data) != LINE_BYTES:
            raise RowError(f"line is {len(data)} bytes, a ZM detail line is {LINE_BYTES} (42 fixed-width fields)")
        for offset, before in SEPARATORS:
            if data[offset:offset + 1] != b" ":
                raise RowError(f"no space separator after {before} (byte {offset}): the fields are misaligned")

        def field(name: str) -> str:
            try:
                return data[SLICES[name]].decode(ENCODING).strip()
            except UnicodeDecodeError as exc:
                raise RowError(f"{name} is not valid GBK (byte {SLICES[name].start + exc.start})") from None

        code = field("交易代码")
        txn_type = TXN_CODES.get(code)
        if txn_type is None:
            raise RowError(f"交易代码 {code!r} is neither S22 (purchase) nor S30 (refund); review it by hand")
        stamp = data[SLICES["交易传输时间"]]
        if not TRANSMIT_TIME.match(stamp):
            raise RowError(f"交易传输时间 {stamp.decode(ENCODING, 'replace')!r} is not MMDDhhmmss")
        s = stamp.decode("ascii")
        year = year_for(int(s[0:2]), int(s[2:4]), raw.day)
        moment = parse_time(f"{year:04d}{s}", "%Y%m%d%H%M%S", what="交易传输时间 (with the year of the settlement date)")
        local = moment.replace(tzinfo=SOURCE_ZONE)
        txn_time = local.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        amount = fen_to_yuan(field("交易金额"), "交易金额", signed=False, blank_is_zero=False)
        fee = fen_to_yuan(field("商户手续费"), "商户手续费", signed=True, blank_is_zero=True)
        coupon = abs(fen_to_yuan(field("优惠金额"), "优惠金额", signed=True, blank_is_zero=True))
        query_id = field("查询流水号")
        own_order = field("商户订单号")
        card_type = field("支付卡类型")
        common = dict(
            channel=self.channel.name, merchant_id=field("商户代码"), txn_type=txn_type, status="SUCCESS",
            currency="CNY", amount=amount, fee=fee, coupon_amount=coupon, txn_time=txn_time,
            payer_id=mask_card(field("帐号")), bank=CARD_TYPES.get(card_type, card_type),
            source_file=raw.name, source_line=number,
        )
        if txn_type == "PAYMENT":
            return StandardRecord(order_no=own_order, refund_no="", channel_txn_id=query_id, channel_refund_id="",
                                  **common)
        original = field("原始交易订单号")
        if not original:
            raise RowError("refund (S30) without 原始交易订单号: its order cannot be identified; match it by hand "
                           f"through 原交易查询流水号 {field('原交易查询流水号')!r}")
        if not own_order:
            raise RowError("refund (S30) without 商户订单号 (the merchant refund number)")
        return StandardRecord(order_no=original, refund_no=own_order,
                              channel_txn_id=field("原交易查询流水号") or query_id, channel_refund_id=query_id, **common)


NORMALIZER = UnionPayNormalizer
