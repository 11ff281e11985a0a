"""A three-day scenario of four channels, written as the channels and the order system write their files.

    FourChannels().write(folder)

writes, for 2026-11-20..22:

- ``inbox/<channel>/<YYYY-MM-DD>/<file>``: the statements as the channels publish them
  - ``wechatpay``: a WeChat Pay ALL bill, new column set (merchant 1601959334, fee 0.60%);
  - ``wechatpay_old``: a second WeChat Pay merchant (10000100, fee 0.38%) still served the old column set;
  - ``alipay``: the Alipay bill zip, GBK entries with GBK names (业务明细 and its 汇总), fee 0.60%;
  - ``unionpay``: the UnionPay ZM detail file, 607 GBK bytes a line, fee 0.60%;
  WeChat bills and ZM files have CRLF line ends (channel-formats.md; the ZM sample);
- ``root/local/<D>/orders.csv``: the order system's export, written with Python's ``csv`` module and its
  defaults (CRLF); the export of the 21st starts with a UTF-8 BOM and has its columns in another order;
- ``conf/pipeline.toml`` and ``conf/channels/*.toml`` (localdir connectors on dated folders).

Every case is written out by hand below (no randomness), with readable order numbers: the first letter
names the channel (W wechatpay, V wechatpay_old, A alipay, U unionpay), then MMDD of the day it starts,
then what it is. ``tests/test_four_channels.py`` holds the outcomes a finance person expects of them.

Three switches exist only to check the rest of the scenario on code that lacks the parts being built
concurrently: ``realistic_exports=False`` writes LF exports in DESIGN's column order, ``dated_inbox=False``
flat inbox folders (``path`` without ``{date}``), ``rejected_rows=False`` leaves the broken statement rows
out (and ``max_rejected_rows`` out of the channel files).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

DAYS = (dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22))
D1, D2, D3 = DAYS
CHANNELS = ("alipay", "unionpay", "wechatpay", "wechatpay_old")
MAX_CARRY_DAYS = 2
RATES = {"wechatpay": Decimal("0.006"), "wechatpay_old": Decimal("0.0038"), "alipay": Decimal("0.006"),
         "unionpay": Decimal("0.006")}
LOCAL_COLUMNS = ("order_no", "refund_no", "txn_type", "channel", "currency", "amount", "status", "created_at",
                 "paid_at")
# the export of D2 as another order system version writes it: other column order, and a BOM
SHUFFLED_COLUMNS = ("channel", "txn_type", "order_no", "refund_no", "status", "amount", "currency", "paid_at",
                    "created_at")
SHUFFLED_DAY = D2

WECHAT_NEW_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
                     "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
                     "手续费,费率,订单金额,申请退款金额,费率备注")
WECHAT_NEW_SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
WECHAT_OLD_HEADER = ("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
                     "总金额,企业红包金额,微信退款单号,商户退款单号,退款金额,企业红包退款金额,退款类型,退款状态,商品名称,商户数据包,"
                     "手续费,费率")
WECHAT_OLD_SUMMARY = "总交易单数,总交易额,总退款金额,总企业红包退款金额,手续费总金额"
WECHAT = {"wechatpay": ("wx81be3101902f7cb2", "1601959334", "0.60%"),
          "wechatpay_old": ("wx2421b1c4370ec43b", "10000100", "0.38%")}
ALIPAY_PID = "20880000000001560156"
ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
                 "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                 "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
ALIPAY_SUMMARY_HEADER = ("门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
                         "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）")
UNIONPAY_MER_ID = "777290058110097"
ZM_FIELDS = (
    ("交易代码", 3), ("代理机构标识码", 11), ("发送机构标识码", 11), ("系统跟踪号", 6), ("交易传输时间", 10),
    ("帐号", 19), ("交易金额", 12), ("商户类别", 4), ("终端类型", 2), ("查询流水号", 21), ("支付方式(旧)", 2),
    ("商户订单号", 32), ("支付卡类型", 2), ("原始交易的系统跟踪号", 6), ("原始交易日期时间", 10), ("商户手续费", 13),
    ("结算金额", 13), ("支付方式", 4), ("集团商户代码", 15), ("交易类型", 2), ("交易子类", 2), ("业务类型", 6),
    ("帐号类型", 2), ("账单类型", 4), ("账单号码", 32), ("交互方式", 1), ("原交易查询流水号", 21), ("商户代码", 15),
    ("分账入账方式", 1), ("二级商户代码", 15), ("二级商户简称", 32), ("二级商户分账入账金额", 13), ("清算净额", 13),
    ("终端号", 8), ("商户自定义域", 32), ("优惠金额", 13), ("发票金额", 13), ("分期付款附加手续费", 12),
    ("分期付款期数", 2), ("交易介质", 1), ("原始交易订单号", 32), ("保留使用", 98),
)
ZM_LINE_BYTES = sum(w for _, w in ZM_FIELDS) + len(ZM_FIELDS) - 1
assert ZM_LINE_BYTES == 607


def statement_name(channel: str, day: dt.date) -> str:
    """The file name the channel's conf pattern gives for D."""
    return {"wechatpay": f"1601959334_ALL_{day:%Y%m%d}.csv", "wechatpay_old": f"10000100_ALL_{day:%Y%m%d}.csv",
            "alipay": f"{ALIPAY_PID}_{day:%Y%m%d}.csv.zip",
            "unionpay": f"INN{day:%y%m%d}01ZM_{UNIONPAY_MER_ID}.txt"}[channel]


FILENAME_PATTERNS = {"wechatpay": "1601959334_ALL_{date:%Y%m%d}.csv", "wechatpay_old": "10000100_ALL_{date:%Y%m%d}.csv",
                     "alipay": ALIPAY_PID + "_{date:%Y%m%d}.csv.zip",
                     "unionpay": "INN{date:%y%m%d}01ZM_" + UNIONPAY_MER_ID + ".txt"}


def _fee(channel: str, amount: Decimal) -> Decimal:
    return (amount * RATES[channel]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _m(text: str) -> Decimal:
    return Decimal(text)


@dataclass
class Txn:
    """One statement row, in the channel's terms; ``reject`` = how the channel's file garbles it."""

    time: str                       # the channel's time (payment time, or the refund's)
    order_no: str
    amount: Decimal                 # order amount, or refund amount (positive)
    refund_no: str = ""
    status: str = "SUCCESS"         # WeChat 交易状态 of a payment (SUCCESS / REVOKED), or 退款状态 of a refund
    fee: Decimal | None = None      # None: the contracted rate
    coupon: Decimal = Decimal("0.00")
    currency: str = "CNY"
    txn_id: str = ""
    reject: str = ""                # "short" (fields missing / a byte missing) or "amount" (a garbled amount)

    @property
    def refund(self) -> bool:
        return bool(self.refund_no)


@dataclass
class Scenario:
    """What each side holds, per channel and day; filled by ``build``."""

    statements: dict = field(default_factory=dict)   # (channel, day) -> [Txn]
    local: dict = field(default_factory=dict)        # day -> [dict of LOCAL_COLUMNS]
    # filled by write(): (channel, day) -> {"file", "data_rows", "rejects": {order_no: line}}
    written: dict = field(default_factory=dict)

    def txn(self, channel: str, day: dt.date, t: Txn) -> None:
        seq = sum(len(v) for v in self.statements.values()) + 1
        if not t.txn_id:
            t.txn_id = {"wechatpay": f"4200000925{day:%Y%m%d}{seq:08d}",
                        "wechatpay_old": f"1004400740{day:%Y%m%d}{seq:08d}",
                        "alipay": f"{day:%Y%m%d}22001400{seq:012d}", "unionpay": f"79{day:%m%d}{seq:015d}"}[channel]
        if t.fee is None:
            base = _fee(channel, t.amount - t.coupon)
            t.fee = -base if t.refund else base
        self.statements.setdefault((channel, day), []).append(t)

    def order(self, day: dt.date, channel: str, order_no: str, amount: str, status: str, created: str,
              paid: str = "", *, refund_no: str = "", currency: str = "CNY") -> None:
        """A local record in the export of ``day`` (the date of its paid_at, else of its created_at)."""
        self.local.setdefault(day, []).append(dict(
            order_no=order_no, refund_no=refund_no, txn_type="REFUND" if refund_no else "PAYMENT", channel=channel,
            currency=currency, amount=amount, status=status, created_at=created, paid_at=paid))


def _t(day: dt.date, hms: str) -> str:
    return f"{day.isoformat()} {hms}"


def build() -> Scenario:
    s = Scenario()
    ordinary = {"wechatpay": 8, "wechatpay_old": 6, "alipay": 6, "unionpay": 5}
    for day in DAYS:
        for channel, n in ordinary.items():
            letter = {"wechatpay": "W", "wechatpay_old": "V", "alipay": "A", "unionpay": "U"}[channel]
            for i in range(n):
                hms = f"{9 + i:02d}:{(7 * i) % 60:02d}:{(13 * i) % 60:02d}"
                amount = f"{10 + 17 * i + day.day}.{(11 * i) % 100:02d}"
                s.order(day, channel, f"{letter}{day:%m%d}M{i:02d}", amount, "PAID", _t(day, hms), _t(day, hms))
                s.txn(channel, day, Txn(_t(day, hms), f"{letter}{day:%m%d}M{i:02d}", _m(amount)))

    # ---- wechatpay (new columns) --------------------------------------------------------------------------
    w = "wechatpay"
    # a voucher-paid order both sides agree on: the fee is on what WeChat settles (100.00 - 3.00)
    s.order(D1, w, "W1120VC", "100.00", "PAID", _t(D1, "08:10:00"), _t(D1, "08:10:05"))
    s.txn(w, D1, Txn(_t(D1, "08:10:05"), "W1120VC", _m("100.00"), coupon=_m("3.00")))
    # the payment callback never arrived: local UNPAID, WeChat SUCCESS -> MARK_PAID 45.00
    s.order(D1, w, "W1120UP", "45.00", "UNPAID", _t(D1, "10:00:00"))
    s.txn(w, D1, Txn(_t(D1, "10:00:30"), "W1120UP", _m("45.00")))
    # the order system says 88.00, WeChat charged 87.00
    s.order(D1, w, "W1120AM", "88.00", "PAID", _t(D1, "10:20:00"), _t(D1, "10:20:10"))
    s.txn(w, D1, Txn(_t(D1, "10:20:10"), "W1120AM", _m("87.00")))
    # a cross-border payment settled in HKD, exported as CNY
    s.order(D1, w, "W1120CU", "50.00", "PAID", _t(D1, "10:40:00"), _t(D1, "10:40:08"))
    s.txn(w, D1, Txn(_t(D1, "10:40:08"), "W1120CU", _m("50.00"), currency="HKD"))
    # paid locally, revoked at WeChat
    s.order(D1, w, "W1120ST", "66.60", "PAID", _t(D1, "11:00:00"), _t(D1, "11:00:09"))
    s.txn(w, D1, Txn(_t(D1, "11:00:09"), "W1120ST", _m("66.60"), status="REVOKED", fee=_m("0")))
    # charged twice for one order
    s.order(D1, w, "W1120DU", "20.00", "PAID", _t(D1, "11:30:00"), _t(D1, "11:30:04"))
    s.txn(w, D1, Txn(_t(D1, "11:30:04"), "W1120DU", _m("20.00")))
    s.txn(w, D1, Txn(_t(D1, "11:31:40"), "W1120DU", _m("20.00")))
    # the fee charged at twice the contracted rate: 2.40 instead of 1.20
    s.order(D1, w, "W1120FE", "200.00", "PAID", _t(D1, "12:00:00"), _t(D1, "12:00:07"))
    s.txn(w, D1, Txn(_t(D1, "12:00:07"), "W1120FE", _m("200.00"), fee=_m("2.40")))
    # paid locally at noon, nothing at WeChat
    s.order(D1, w, "W1120LO", "33.00", "PAID", _t(D1, "12:10:00"), _t(D1, "12:10:05"))
    # at WeChat only
    s.txn(w, D1, Txn(_t(D1, "13:00:00"), "W1120CO", _m("77.00")))
    # nothing happened on either side (not listed)
    s.order(D1, w, "W1120NP", "15.00", "UNPAID", _t(D1, "14:00:00"))
    # refunds of orders paid on the 17th
    s.order(D1, w, "W1117R1", "25.00", "PROCESSING", _t(D1, "15:00:00"), refund_no="W1117R1-1")
    s.txn(w, D1, Txn(_t(D1, "15:00:40"), "W1117R1", _m("25.00"), refund_no="W1117R1-1"))
    s.order(D1, w, "W1117R2", "30.00", "SUCCESS", _t(D1, "15:10:00"), _t(D1, "15:10:30"), refund_no="W1117R2-1")
    s.txn(w, D1, Txn(_t(D1, "15:10:30"), "W1117R2", _m("29.50"), refund_no="W1117R2-1"))
    s.order(D1, w, "W1117R3", "12.00", "SUCCESS", _t(D1, "15:20:00"), _t(D1, "15:20:30"), refund_no="W1117R3-1")
    s.txn(w, D1, Txn(_t(D1, "15:30:30"), "W1117R4", _m("18.00"), refund_no="W1117R4-1"))
    s.order(D1, w, "W1117R5", "40.00", "SUCCESS", _t(D1, "15:40:00"), _t(D1, "15:40:30"), refund_no="W1117R5-1")
    s.txn(w, D1, Txn(_t(D1, "15:40:30"), "W1117R5", _m("40.00"), refund_no="W1117R5-1"))
    # paid locally at 23:58 on the 20th; WeChat stamps 00:03 on the 21st
    s.order(D1, w, "W1120CL", "58.00", "PAID", _t(D1, "23:57:41"), _t(D1, "23:58:00"))
    s.txn(w, D2, Txn(_t(D2, "00:03:00"), "W1120CL", _m("58.00")))
    # the 21st: a row WeChat's file cuts short (fields missing); the order was paid locally
    s.order(D2, w, "W1121RJ", "19.90", "PAID", _t(D2, "16:00:00"), _t(D2, "16:00:06"))
    s.txn(w, D2, Txn(_t(D2, "16:00:06"), "W1121RJ", _m("19.90"), reject="short"))
    # WeChat stamps 23:59:50 on the 21st; the local callback arrives at 00:00:20 on the 22nd
    s.txn(w, D2, Txn(_t(D2, "23:59:50"), "W1121CC", _m("36.80")))
    s.order(D3, w, "W1121CC", "36.80", "PAID", _t(D2, "23:59:31"), _t(D3, "00:00:20"))

    # ---- wechatpay_old (old columns, another merchant, 0.38%) ------------------------------------------------
    v = "wechatpay_old"
    s.txn(v, D1, Txn(_t(D1, "16:00:00"), "V1118R0", _m("22.00"), refund_no="V1118R0-1"))
    s.order(D1, v, "V1118R0", "22.00", "SUCCESS", _t(D1, "15:59:00"), _t(D1, "16:00:00"), refund_no="V1118R0-1")
    # paid locally at 23:50 on the 20th and never seen at WeChat: carried, and a break after max_carry_days
    s.order(D1, v, "V1120PX", "64.00", "PAID", _t(D1, "23:49:50"), _t(D1, "23:50:00"))
    # the 21st: the fee at 0.60% where this merchant's contract says 0.38% (0.76 instead of 0.48)
    s.order(D2, v, "V1121FE", "126.00", "PAID", _t(D2, "13:00:00"), _t(D2, "13:00:05"))
    s.txn(v, D2, Txn(_t(D2, "13:00:05"), "V1121FE", _m("126.00"), fee=_m("0.76")))
    # a refund the order system books as done while WeChat still processes it
    s.order(D2, v, "V1118R1", "10.00", "SUCCESS", _t(D2, "14:00:00"), _t(D2, "14:00:20"), refund_no="V1118R1-1")
    s.txn(v, D2, Txn(_t(D2, "14:00:20"), "V1118R1", _m("10.00"), refund_no="V1118R1-1", status="PROCESSING"))
    # the 22nd: the callback never arrived -> MARK_PAID 72.50
    s.order(D3, v, "V1122UP", "72.50", "UNPAID", _t(D3, "11:00:00"))
    s.txn(v, D3, Txn(_t(D3, "11:00:40"), "V1122UP", _m("72.50")))

    # ---- alipay -------------------------------------------------------------------------------------------
    a = "alipay"
    s.order(D1, a, "A1118R1", "16.00", "SUCCESS", _t(D1, "09:30:00"), _t(D1, "09:30:20"), refund_no="A1118R1-1")
    s.txn(a, D1, Txn(_t(D1, "09:30:20"), "A1118R1", _m("16.00"), refund_no="A1118R1-1"))
    # the order system says 120.00, Alipay 102.00
    s.order(D1, a, "A1120AM", "120.00", "PAID", _t(D1, "14:00:00"), _t(D1, "14:00:12"))
    s.txn(a, D1, Txn(_t(D1, "14:00:12"), "A1120AM", _m("102.00")))
    # a row whose 订单金额 Alipay's file garbles; the order was paid locally
    s.order(D1, a, "A1120RJ", "58.00", "PAID", _t(D1, "15:00:00"), _t(D1, "15:00:09"))
    s.txn(a, D1, Txn(_t(D1, "15:00:09"), "A1120RJ", _m("58.00"), reject="amount"))
    # Alipay completes at 23:59:50 on the 20th; the local callback arrives at 00:00:20 on the 21st
    s.txn(a, D1, Txn(_t(D1, "23:59:50"), "A1120CC", _m("47.00")))
    s.order(D2, a, "A1120CC", "47.00", "PAID", _t(D1, "23:59:30"), _t(D2, "00:00:20"))
    # the 21st: the callback never arrived -> MARK_PAID 31.00
    s.order(D2, a, "A1121UP", "31.00", "CLOSED", _t(D2, "10:00:00"))
    s.txn(a, D2, Txn(_t(D2, "10:01:00"), "A1121UP", _m("31.00")))
    # the 22nd: a refund the order system still shows PROCESSING, refunded at Alipay -> MARK_REFUNDED 27.00
    s.order(D3, a, "A1119R2", "27.00", "PROCESSING", _t(D3, "12:00:00"), refund_no="A1119R2-1")
    s.txn(a, D3, Txn(_t(D3, "12:00:30"), "A1119R2", _m("27.00"), refund_no="A1119R2-1"))

    # ---- unionpay -----------------------------------------------------------------------------------------
    u = "unionpay"
    s.order(D1, u, "U1118R1", "19.99", "SUCCESS", _t(D1, "16:30:00"), _t(D1, "16:30:30"), refund_no="U1118R1-1")
    s.txn(u, D1, Txn(_t(D1, "16:30:30"), "U1118R1", _m("19.99"), refund_no="U1118R1-1"))
    # the fee debited at twice the contract (1.50 instead of 0.75)
    s.order(D1, u, "U1120FE", "125.00", "PAID", _t(D1, "17:00:00"), _t(D1, "17:00:03"))
    s.txn(u, D1, Txn(_t(D1, "17:00:03"), "U1120FE", _m("125.00"), fee=_m("1.50")))
    # the 21st: a refund in the ZM file the order system does not know
    s.txn(u, D2, Txn(_t(D2, "15:00:00"), "U1119R2", _m("9.00"), refund_no="U1119R2-1"))
    # paid locally at 23:55 on the 21st; UnionPay stamps 00:05 on the 22nd
    s.order(D2, u, "U1121CL", "88.80", "PAID", _t(D2, "23:54:40"), _t(D2, "23:55:00"))
    s.txn(u, D3, Txn(_t(D3, "00:05:00"), "U1121CL", _m("88.80")))
    # the 22nd: a ZM line one byte short in the middle of the file; the order was paid locally
    s.order(D3, u, "U1122RJ", "43.00", "PAID", _t(D3, "12:30:00"), _t(D3, "12:30:02"))
    s.txn(u, D3, Txn(_t(D3, "12:30:02"), "U1122RJ", _m("43.00"), reject="short"))
    return s


# -- the channels' files ----------------------------------------------------------------------------------------

def _ticks(values) -> str:
    return ",".join("`" + v for v in values)


def wechat_bill(channel: str, day: dt.date, txns: list[Txn], rejected_rows: bool) -> tuple[bytes, dict]:
    """The ALL bill (new or old column set) and {order_no: line} of the rows it garbles."""
    appid, mch, rate = WECHAT[channel]
    old = channel == "wechatpay_old"
    z = Decimal("0.00")
    lines = [WECHAT_OLD_HEADER if old else WECHAT_NEW_HEADER]
    rejects = {}
    sums = dict(n=0, settle=z, refund=z, refund_coupon=z, fee=Decimal("0.00000"), order=z, refund_applied=z)
    for i, t in enumerate(sorted(txns, key=lambda t: (t.time, t.txn_id))):
        if t.reject and not rejected_rows:
            continue
        r = t.refund
        refund_id = f"50300{day:%Y%m%d}{i:010d}" if r else "0"
        settle = z if r else t.amount - t.coupon
        pay_amount = z if r else t.amount
        refund_amount = t.amount if r else z
        status = "REFUND" if r else t.status
        refund_status = t.status if r else ""
        fee = f"{t.fee:.5f}"
        head = [t.time, appid, mch, "0", "", t.txn_id, t.order_no, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "JSAPI", status,
                "CMB_DEBIT", t.currency]
        if old:
            values = head + [f"{pay_amount:.2f}", f"{z if r else t.coupon:.2f}", refund_id, t.refund_no or "0",
                             f"{refund_amount:.2f}", "0.00", "ORIGINAL" if r else "", refund_status, "测试商品", "",
                             fee, rate]
        else:
            values = head + [f"{settle:.2f}", f"{z if r else t.coupon:.2f}", refund_id, t.refund_no or "0",
                             f"{refund_amount:.2f}", "0.00", "ORIGINAL" if r else "", refund_status, "测试商品", "",
                             fee, rate, f"{pay_amount:.2f}", f"{refund_amount:.2f}", ""]
        if t.reject:  # the line is cut after 手续费: WeChat still counts and sums the row
            values = values[:23]
            rejects[t.order_no] = len(lines) + 1
        lines.append(_ticks(values))
        sums["n"] += 1
        sums["settle"] += settle
        sums["refund"] += refund_amount
        sums["fee"] += t.fee
        sums["order"] += pay_amount
        sums["refund_applied"] += refund_amount
    if old:
        lines += [WECHAT_OLD_SUMMARY, _ticks([str(sums["n"]), f"{sums['order']:.2f}", f"{sums['refund']:.2f}", "0.00",
                                              f"{sums['fee']:.5f}"])]
    else:
        lines += [WECHAT_NEW_SUMMARY, _ticks([str(sums["n"]), f"{sums['settle']:.2f}", f"{sums['refund']:.2f}",
                                              "0.00", f"{sums['fee']:.5f}", f"{sums['order']:.2f}",
                                              f"{sums['refund_applied']:.2f}"])]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8"), rejects


class _GbkName(zipfile.ZipInfo):
    """Alipay writes entry names as GBK bytes without the UTF-8 flag."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def alipay_zip(day: dt.date, txns: list[Txn], rejected_rows: bool) -> tuple[bytes, dict]:
    """The bill zip (业务明细 with its '#' footer totals, and the 汇总) and {order_no: line} of garbled rows."""
    nxt = day + dt.timedelta(days=1)
    head = ["#支付宝业务明细查询", f"#账号：[{ALIPAY_PID}]",
            f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{nxt:%Y年%m月%d日} 00:00:00]"]
    lines = head + ["#-----------------------------------------业务明细列表----------------------------------------",
                    ALIPAY_HEADER]
    z = Decimal("0.00")
    totals = {"交易": [0, z], "退款": [0, z]}
    fees = z
    rejects = {}
    for t in sorted(txns, key=lambda t: (t.time, t.txn_id)):
        if t.reject and not rejected_rows:
            continue
        kind = "退款" if t.refund else "交易"
        sign = -1 if t.refund else 1
        totals[kind][0] += 1
        totals[kind][1] += sign * t.amount
        fees += -t.fee
        order_amount = f"{sign * t.amount:.2f}"
        if t.reject == "amount":  # the letter O for a zero in 订单金额; 商家实收 is intact
            order_amount = order_amount[:-1] + "O"
            rejects[t.order_no] = len(lines) + 1
        created = t.time if not t.refund else f"{day - dt.timedelta(days=2)} 12:00:00"
        lines.append(",".join([f"{t.txn_id}\t", f"{t.order_no}\t", f"{kind}\t", "年货礼盒", created, t.time,
                               "store_01\t", "旗舰店\t", "op\t", "\t", "*明(138***@163.com)\t",
                               order_amount, f"{sign * t.amount:.2f}", "0.00", "0.00", "0.00", "0.00",
                               "0.00", "", "0.00\t", "0.00", f"{t.refund_no}\t", f"{-t.fee:.2f}", "0.00", ""]))
    exported = f"#导出时间：[{nxt:%Y年%m月%d日} 05:46:49]"
    lines += ["#-----------------------------------------业务明细列表结束------------------------------------",
              f"#交易合计：{totals['交易'][0]}笔，商家实收共{totals['交易'][1]:.2f}元，商家优惠共0.00元",
              f"#退款合计：{totals['退款'][0]}笔，商家实收退款共{totals['退款'][1]:.2f}元，商家优惠退款共0.00元", exported]
    net = totals["交易"][1] + totals["退款"][1]
    summary = [head[0].replace("明细", "汇总"), *head[1:],
               "#-----------------------------------------业务汇总列表----------------------------------------",
               ALIPAY_SUMMARY_HEADER,
               f"合计,,{totals['交易'][0]},{totals['退款'][0]},{net:.2f},{net:.2f},0.00,0.00,0.00,{fees:.2f},0.00,"
               f"{net + fees:.2f}",
               "#-----------------------------------------业务汇总列表结束------------------------------------", exported]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in ((f"{ALIPAY_PID}_{day:%Y%m%d}_业务明细.csv", lines),
                           (f"{ALIPAY_PID}_{day:%Y%m%d}_业务明细(汇总).csv", summary)):
            entry = _GbkName(name, date_time=(nxt.year, nxt.month, nxt.day, 5, 46, 48))
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, ("\r\n".join(text) + "\r\n").encode("gbk"))
    return buf.getvalue(), rejects


def _fen(amount: Decimal, width: int) -> str:
    return str(int((amount * 100).to_integral_value())).zfill(width)


def _signed_fen(amount: Decimal) -> str:
    """A 13-wide money field: D (debit to the merchant) or C (credit) and 12 digits of fen."""
    return ("C" if amount < 0 else "D") + _fen(abs(amount), 12)


def zm_line(t: Txn, trace: int, original: dict) -> bytes:
    """One 607-byte ZM detail line (GBK)."""
    mmdd = t.time[5:7] + t.time[8:10]
    stamp = mmdd + t.time[11:13] + t.time[14:16] + t.time[17:19]
    query_id = f"79{stamp}{trace:06d}".ljust(21, "0")[:21]
    card = "6225880212341234"
    f = {name: "" for name, _ in ZM_FIELDS}
    f.update({"交易代码": "S30" if t.refund else "S22", "代理机构标识码": "00049992", "发送机构标识码": "01020000",
              "系统跟踪号": f"{trace:06d}", "交易传输时间": stamp, "帐号": card, "交易金额": _fen(t.amount, 12),
              "商户类别": "5411", "终端类型": "07", "查询流水号": query_id, "支付方式(旧)": "00",
              "商户订单号": t.refund_no if t.refund else t.order_no, "支付卡类型": "01",
              "商户手续费": _signed_fen(t.fee), "结算金额": "C" + _fen(t.amount - t.fee, 12) if not t.refund else "",
              "支付方式": "0001", "交易类型": "04" if t.refund else "01", "交易子类": "00" if t.refund else "01",
              "业务类型": "000201", "帐号类型": "01", "交互方式": "0", "商户代码": UNIONPAY_MER_ID,
              "二级商户简称": "上海测试商户（旗舰店）", "清算净额": "C" + _fen(t.amount - t.fee, 12) if not t.refund else "",
              "商户自定义域": "会员充值", "分期付款附加手续费": "000000000000", "分期付款期数": "00", "交易介质": "0"})
    if t.refund:
        pay = original[t.order_no]
        f.update({"原始交易的系统跟踪号": pay["trace"], "原始交易日期时间": pay["stamp"],
                  "原交易查询流水号": pay["query_id"], "原始交易订单号": t.order_no})
    else:
        original[t.order_no] = {"trace": f"{trace:06d}", "stamp": stamp, "query_id": query_id}
    parts = []
    for name, width in ZM_FIELDS:
        raw = f[name].encode("gbk")
        assert len(raw) <= width, (name, f[name])
        parts.append(raw.ljust(width, b" "))
    line = b" ".join(parts)
    assert len(line) == ZM_LINE_BYTES
    if t.reject == "short":  # one byte of the reserved field lost
        line = line[:-1]
    return line


def zm_file(day: dt.date, txns: list[Txn], rejected_rows: bool, known: dict) -> tuple[bytes, dict]:
    lines, rejects = [], {}
    rows = [t for t in sorted(txns, key=lambda t: (t.time, t.txn_id)) if rejected_rows or not t.reject]
    for i, t in enumerate(rows):
        if t.refund and t.order_no not in known:  # a refund of an earlier day's payment: its original line
            known[t.order_no] = {"trace": "100231", "stamp": f"{(day - dt.timedelta(days=2)):%m%d}093000",
                                 "query_id": f"79{(day - dt.timedelta(days=2)):%m%d}09300000100231"}
        lines.append(zm_line(t, 100200 + 17 * i + day.day, known))
        if t.reject:
            rejects[t.order_no] = len(lines)
    assert not rows or not rows[-1].reject, "a short LAST line means a cut file: keep the broken line inside"
    return b"".join(line + b"\r\n" for line in lines), rejects


# -- writing it all -----------------------------------------------------------------------------------------------

def write(out: Path, *, realistic_exports: bool = True, dated_inbox: bool = True,
          rejected_rows: bool = True) -> Scenario:
    """Write the scenario under ``out`` (inbox/, root/local/, conf/); returns it with ``written`` filled."""
    s = build()
    known: dict = {}
    for day in DAYS:
        for channel in CHANNELS:
            txns = s.statements.get((channel, day), [])
            if channel.startswith("wechatpay"):
                data, rejects = wechat_bill(channel, day, txns, rejected_rows)
            elif channel == "alipay":
                data, rejects = alipay_zip(day, txns, rejected_rows)
            else:
                data, rejects = zm_file(day, txns, rejected_rows, known)
            folder = out / "inbox" / channel / (day.isoformat() if dated_inbox else "")
            folder.mkdir(parents=True, exist_ok=True)
            name = statement_name(channel, day)
            (folder / name).write_bytes(data)
            rows = [t for t in txns if rejected_rows or not t.reject]
            s.written[(channel, day)] = {"file": name, "data_rows": len(rows), "rejects": rejects,
                                         "local_rows": sum(1 for r in s.local.get(day, []) if r["channel"] == channel)}
        local = out / "root" / "local" / day.isoformat()
        local.mkdir(parents=True)
        rows = sorted(s.local.get(day, []), key=lambda r: (r["channel"], r["order_no"], r["refund_no"]))
        shuffled = realistic_exports and day == SHUFFLED_DAY
        columns = SHUFFLED_COLUMNS if shuffled else LOCAL_COLUMNS
        encoding = "utf-8-sig" if shuffled else "utf-8"
        with (local / "orders.csv").open("w", encoding=encoding, newline="") as fh:
            w = csv.writer(fh) if realistic_exports else csv.writer(fh, lineterminator="\n")
            w.writerow(columns)
            for r in rows:
                w.writerow([r[c] for c in columns])
    write_conf(out, dated_inbox=dated_inbox, rejected_rows=rejected_rows)
    return s


MAX_REJECTED = {"wechatpay": 1, "alipay": 1, "unionpay": 1}  # wechatpay_old keeps the default 0


def write_conf(out: Path, *, dated_inbox: bool = True, rejected_rows: bool = True) -> None:
    conf = out / "conf"
    (conf / "channels").mkdir(parents=True, exist_ok=True)
    (conf / "pipeline.toml").write_text(
        '[pipeline]\nroot = "../root"\ntimezone = "Asia/Shanghai"\n'
        f'max_carry_days = {MAX_CARRY_DAYS}\n\n'
        '[spark]\n"spark.master" = "local[2]"\n"spark.sql.shuffle.partitions" = "2"\n', encoding="utf-8")
    inbox = out / "inbox"
    for channel in CHANNELS:
        normalizer = "wechatpay" if channel.startswith("wechatpay") else channel
        path = f"{inbox / channel}/{{date:%Y-%m-%d}}" if dated_inbox else str(inbox / channel)
        limit = f"max_rejected_rows = {MAX_REJECTED[channel]}\n" if rejected_rows and channel in MAX_REJECTED else ""
        (conf / "channels" / f"{channel}.toml").write_text(
            f'[channel]\nname = "{channel}"\nnormalizer = "{normalizer}"\ncutoff_minutes = 30\n{limit}\n'
            f'[fees]\nrate = "{RATES[channel]}"\ntolerance = "0.01"\n\n'
            f'[download]\ntype = "localdir"\npath = "{path}"\nfilename = "{FILENAME_PATTERNS[channel]}"\n'
            '# the statements are all there: do not wait for one that is not\nmax_attempts = 1\n',
            encoding="utf-8")
