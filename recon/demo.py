"""A realistic demo: local orders, WeChat Pay ALL bills (new column set) and Alipay bill zips for consecutive days.

Every outcome category of DESIGN.md is present at least once. The cut-off
cases: an order paid locally at 23:58 on day 1 whose channel record is
stamped 00:03 on day 2, and a channel record at 23:59:50 on day 1 whose
local callback is stamped 00:00:20 on day 2.

    python -m recon.demo --out demo --first-day 2026-11-20 --days 2

writes ``demo/inbox/{wechatpay,alipay}/`` (the statements the channels would publish),
``demo/root/local/{D}/orders.csv`` (the order system's export) and
``demo/conf/`` (a configuration that reads them). The folder is recreated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from schemas import csvio
from schemas.local import COLUMNS as LOCAL_COLUMNS
from schemas.money import round_money

CHANNEL = "wechatpay"
APPID = "wx81be3101902f7cb2"
MCH_ID = "1601959334"
FEE_RATE = Decimal("0.006")
BILL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
               "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
               "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
GOODS = ("年货礼盒", "会员月卡", "咖啡豆 500g", "机械键盘", "电影票", "高铁餐食", "for testing")
BANKS = ("OTHERS", "CMB_DEBIT", "ICBC_DEBIT", "CCB_CREDIT", "CFT")


ALIPAY_PID = "20880000000001560156"
ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
                 "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                 "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


def bill_name(day: dt.date) -> str:
    return f"wechatpay_all_{day:%Y%m%d}.csv"


def alipay_bill_name(day: dt.date) -> str:
    return f"alipay_trade_{day:%Y%m%d}.zip"


class _GbkName(zipfile.ZipInfo):
    """Alipay writes entry names as GBK bytes without the UTF-8 flag."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


@dataclass
class BillRow:
    time: str
    txn_id: str
    order_no: str
    openid: str
    status: str              # SUCCESS / REVOKED / REFUND
    amount: Decimal          # 订单金额 (payments) or 申请退款金额 (refunds)
    fee: Decimal             # 5 decimals, negative on refunds
    coupon: Decimal = Decimal("0.00")
    refund_id: str = "0"
    refund_no: str = "0"
    refund_status: str = ""
    goods: str = "for testing"
    bank: str = "OTHERS"
    cut: bool = False        # the channel's export lost the row's last fields (the normalizer rejects it)

    def values(self) -> list[str]:
        refund = self.status == "REFUND"
        zero = Decimal("0.00")
        settle = zero if refund else self.amount - self.coupon
        return self._all_values(refund, zero, settle)[:-3 if self.cut else None]

    def _all_values(self, refund: bool, zero: Decimal, settle: Decimal) -> list[str]:
        return [self.time, APPID, MCH_ID, "0", "", self.txn_id, self.order_no, self.openid,
                "JSAPI", self.status, self.bank, "CNY", f"{settle:.2f}", f"{zero if refund else self.coupon:.2f}",
                self.refund_id, self.refund_no, f"{self.amount if refund else zero:.2f}", "0.00",
                "ORIGINAL" if refund else "", self.refund_status, self.goods, "", f"{self.fee:.5f}", "0.60%",
                f"{zero if refund else self.amount:.2f}", f"{self.amount if refund else zero:.2f}", ""]


@dataclass
class Demo:
    first_day: dt.date
    days: int
    orders_per_day: int = 300
    seed: int = 20261120
    local: dict[dt.date, list[list[str]]] = field(default_factory=dict)
    bills: dict[dt.date, list[BillRow]] = field(default_factory=dict)
    alipay: dict[dt.date, list[tuple]] = field(default_factory=dict)

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.seq = 0
        self.all_days = [self.first_day + dt.timedelta(days=i) for i in range(self.days)]
        for d in self.all_days + [self.all_days[-1] + dt.timedelta(days=1)]:
            self.local[d] = []
            self.bills[d] = []
            self.alipay[d] = []

    # -- building blocks -------------------------------------------------------------------------
    def _ids(self, day: dt.date) -> tuple[str, str, str]:
        self.seq += 1
        order_no = f"S{day:%Y%m%d}{self.seq:06d}"
        txn_id = f"4200000925{day:%Y%m%d}{self.rng.randrange(10**9):09d}"
        openid = "ofyak5q" + "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz0123456789")
                                     for _ in range(21))
        return order_no, txn_id, openid

    def _amount(self) -> Decimal:
        return Decimal(self.rng.randrange(100, 99999)) / 100

    @staticmethod
    def _fee(amount: Decimal) -> Decimal:
        return round_money(amount * FEE_RATE).quantize(Decimal("0.00001"))

    @staticmethod
    def _ts(day: dt.date, hh: int, mm: int, ss: int) -> str:
        return f"{day.isoformat()} {hh:02d}:{mm:02d}:{ss:02d}"

    def _random_time(self, day: dt.date) -> tuple[str, str]:
        """A created/paid pair well inside the day (outside any cut-off window)."""
        secs = self.rng.randrange(30 * 60, 23 * 3600)
        created = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=secs)
        paid = created + dt.timedelta(seconds=self.rng.randrange(5, 90))
        return created.strftime("%Y-%m-%d %H:%M:%S"), paid.strftime("%Y-%m-%d %H:%M:%S")

    def local_payment(self, day, order_no, amount, status, created, paid, currency="CNY", channel=CHANNEL):
        self.local[day].append([order_no, "", "PAYMENT", channel, currency, f"{amount:.2f}", status, created, paid])

    def alipay_payment(self, day, time, order_no, amount, *, refund_no=""):
        """One 业务明细 row: (trade no, order no, type, time, amount, fee, refund no)."""
        trade_no = f"{day:%Y%m%d}2200140{self.rng.randrange(10**13):013d}"
        kind = "退款" if refund_no else "交易"
        fee = round_money(amount * FEE_RATE)
        self.alipay[day].append((trade_no, order_no, kind, time, amount, fee, refund_no))

    def local_refund(self, day, order_no, refund_no, amount, status, created, paid):
        self.local[day].append([order_no, refund_no, "REFUND", CHANNEL, "CNY", f"{amount:.2f}", status, created,
                                paid])

    def bill_payment(self, day, time, txn_id, order_no, openid, amount, *, status="SUCCESS", fee=None,
                     coupon=Decimal("0.00"), cut=False):
        self.bills[day].append(BillRow(time, txn_id, order_no, openid, status, amount,
                                       self._fee(amount - coupon) if fee is None else fee, coupon=coupon,
                                       goods=self.rng.choice(GOODS), bank=self.rng.choice(BANKS), cut=cut))

    def bill_refund(self, day, time, txn_id, order_no, openid, refund_no, amount, status="SUCCESS"):
        self.bills[day].append(BillRow(time, txn_id, order_no, openid, "REFUND", amount, -self._fee(amount),
                                       refund_id=f"50300{self.rng.randrange(10**14):014d}", refund_no=refund_no,
                                       refund_status=status, goods=self.rng.choice(GOODS),
                                       bank=self.rng.choice(BANKS)))

    # -- a day ------------------------------------------------------------------------------------
    def build(self) -> "Demo":
        for day in self.all_days:
            self._ordinary(day)
            self._every_category(day)
            self._cutoff(day)
            self._alipay(day)
        return self

    def _alipay(self, day: dt.date) -> None:
        """A second channel: ordinary Alipay orders, and an order paid at both channels."""
        for _ in range(max(2, self.orders_per_day // 5)):
            order_no, _, _ = self._ids(day)
            amount = self._amount()
            created, paid = self._random_time(day)
            self.local_payment(day, order_no, amount, "PAID", created, paid, channel="alipay")
            self.alipay_payment(day, paid, order_no, amount)
        # DUPLICATE_ACROSS_CHANNELS: the customer paid the WeChat order again with Alipay
        order_no, txn_id, openid = self._ids(day)
        amount = self._amount()
        created, paid = self._random_time(day)
        self.local_payment(day, order_no, amount, "PAID", created, paid)
        self.bill_payment(day, paid, txn_id, order_no, openid, amount)
        self.alipay_payment(day, paid, order_no, amount)

    def _ordinary(self, day: dt.date) -> None:
        for _ in range(self.orders_per_day):
            order_no, txn_id, openid = self._ids(day)
            amount = self._amount()
            created, paid = self._random_time(day)
            self.local_payment(day, order_no, amount, "PAID", created, paid)
            self.bill_payment(day, paid, txn_id, order_no, openid, amount)
        for i in range(max(1, self.orders_per_day // 20)):  # refunds of earlier orders, all agreeing
            order_no, txn_id, openid = self._ids(day - dt.timedelta(days=3))
            amount = self._amount()
            created, paid = self._random_time(day)
            refund_no = f"RF{order_no[1:]}{i:02d}"
            self.local_refund(day, order_no, refund_no, amount, "SUCCESS", created, paid)
            self.bill_refund(day, paid, txn_id, order_no, openid, refund_no, amount)

    def _every_category(self, day: dt.date) -> None:
        def new():
            order_no, txn_id, openid = self._ids(day)
            created, paid = self._random_time(day)
            return order_no, txn_id, openid, self._amount(), created, paid

        # a voucher-paid order that agrees (coupon_amount is carried through)
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a + 3, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a + 3, coupon=Decimal("3.00"))
        # LOCAL_UNPAID_CHANNEL_PAID: the payment callback never arrived
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "UNPAID", c, "")
        self.bill_payment(day, p, t, o, u, a)
        # AMOUNT_MISMATCH
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a - Decimal("1.00"))
        # CURRENCY_MISMATCH
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p, currency="HKD")
        self.bill_payment(day, p, t, o, u, a)
        # STATUS_MISMATCH: paid locally, revoked at the channel
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a, status="REVOKED")
        # DUPLICATE_CHANNEL: charged twice
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a)
        self.bill_payment(day, p, f"4200000925{day:%Y%m%d}{self.rng.randrange(10**9):09d}", o, u, a)
        # FEE_MISMATCH: fee charged at twice the contracted rate
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a + 100, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a + 100, fee=self._fee(a + 100) * 2)
        # LOCAL_ONLY
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p)
        # CHANNEL_ONLY
        o, t, u, a, c, p = new()
        self.bill_payment(day, p, t, o, u, a)
        # CHANNEL_ROW_REJECTED: the bill's row of a paid order is short; the order is LOCAL_ONLY, its note
        # naming the rejected line
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "PAID", c, p)
        self.bill_payment(day, p, t, o, u, a, cut=True)
        # nothing happened on either side: counted as MATCHED, not listed
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "UNPAID", c, "")
        o, t, u, a, c, p = new()
        self.local_payment(day, o, a, "CLOSED", c, "")
        # REFUND_EXCEEDS_PAYMENT: two partial refunds that together return more than was paid
        o, t, u, a, c, p = new()
        self.local_payment(day, o, Decimal("100.00"), "PAID", c, p)
        self.bill_payment(day, p, t, o, u, Decimal("100.00"))
        for tag, part, hour in (("X1", Decimal("60.00"), 21), ("X2", Decimal("50.00"), 22)):
            when = self._ts(day, hour, 0, 0)
            self.local_refund(day, o, f"RF{o[1:]}{tag}", part, "SUCCESS", when, when)
            self.bill_refund(day, when, t, o, u, f"RF{o[1:]}{tag}", part)
        # refunds of earlier orders
        earlier = day - dt.timedelta(days=2)

        def new_refund(tag):
            order_no, txn_id, openid = self._ids(earlier)
            created, paid = self._random_time(day)
            return order_no, f"RF{order_no[1:]}{tag}", txn_id, openid, self._amount(), created, paid

        # LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED
        o, r, t, u, a, c, p = new_refund("A")
        self.local_refund(day, o, r, a, "PROCESSING", c, "")
        self.bill_refund(day, p, t, o, u, r, a)
        # REFUND_AMOUNT_MISMATCH
        o, r, t, u, a, c, p = new_refund("B")
        self.local_refund(day, o, r, a, "SUCCESS", c, p)
        self.bill_refund(day, p, t, o, u, r, a - Decimal("0.50"))
        # REFUND_LOCAL_ONLY
        o, r, t, u, a, c, p = new_refund("C")
        self.local_refund(day, o, r, a, "SUCCESS", c, p)
        # REFUND_CHANNEL_ONLY
        o, r, t, u, a, c, p = new_refund("D")
        self.bill_refund(day, p, t, o, u, r, a)
        # a refund that failed on both sides' books: nothing to do
        o, r, t, u, a, c, p = new_refund("E")
        self.local_refund(day, o, r, a, "FAILED", c, "")

    def _cutoff(self, day: dt.date) -> None:
        nxt = day + dt.timedelta(days=1)
        # paid locally at 23:58; the channel stamps 00:03 the next day
        o, t, u = self._ids(day)
        a = self._amount()
        self.local_payment(day, o, a, "PAID", self._ts(day, 23, 57, 41), self._ts(day, 23, 58, 0))
        self.bill_payment(nxt, self._ts(nxt, 0, 3, 0), t, o, u, a)
        # the channel stamps 23:59:50; the local callback arrives at 00:00:20 the next day
        o, t, u = self._ids(day)
        a = self._amount()
        self.bill_payment(day, self._ts(day, 23, 59, 50), t, o, u, a)
        self.local_payment(nxt, o, a, "PAID", self._ts(day, 23, 59, 31), self._ts(nxt, 0, 0, 20))

    # -- files ------------------------------------------------------------------------------------
    def bill_text(self, day: dt.date) -> bytes:
        rows = sorted(self.bills[day], key=lambda r: (r.time, r.txn_id))
        lines = [BILL_HEADER]
        lines += [",".join("`" + v for v in r.values()) for r in rows]
        refunds = [r for r in rows if r.status == "REFUND"]
        pays = [r for r in rows if r.status != "REFUND"]
        settle = sum((r.amount - r.coupon for r in pays), Decimal("0.00"))
        refund_total = sum((r.amount for r in refunds), Decimal("0.00"))
        fee_total = sum((r.fee for r in rows), Decimal("0.00000"))
        order_total = sum((r.amount for r in pays), Decimal("0.00"))
        lines.append(SUMMARY_HEADER)
        lines.append(",".join("`" + v for v in [str(len(rows)), f"{settle:.2f}", f"{refund_total:.2f}", "0.00",
                                                f"{fee_total:.5f}", f"{order_total:.2f}", f"{refund_total:.2f}"]))
        text = "\r\n".join(lines) + "\r\n"
        bom = b"\xef\xbb\xbf" if day == self.first_day else b""  # real bills sometimes carry one
        return bom + text.encode("utf-8")

    def alipay_zip(self, day: dt.date) -> bytes:
        """The day's Alipay bill: a zip of the GBK 业务明细 with its '#' footer totals, and its 汇总."""
        rows = sorted(self.alipay[day], key=lambda r: (r[3], r[0]))
        lines = ["#支付宝业务明细查询", f"#账号：[{ALIPAY_PID}]",
                 f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{day + dt.timedelta(days=1):%Y年%m月%d日} 00:00:00]",
                 "#-----------------------------------------业务明细列表----------------------------------------",
                 ALIPAY_HEADER]
        totals = {"交易": [0, Decimal("0.00")], "退款": [0, Decimal("0.00")]}
        for trade_no, order_no, kind, time, amount, fee, refund_no in rows:
            sign = -1 if kind == "退款" else 1
            totals[kind][0] += 1
            totals[kind][1] += sign * amount
            lines.append(",".join([f"{trade_no}\t", f"{order_no}\t", f"{kind}\t", self.rng.choice(GOODS), time, time,
                                   "store_01\t", "旗舰店\t", "op\t", "\t", "*明(138***@163.com)\t",
                                   f"{sign * amount:.2f}", f"{sign * amount:.2f}", "0.00", "0.00", "0.00", "0.00",
                                   "0.00", "", "0.00\t", "0.00", f"{refund_no}\t", f"{-sign * fee:.2f}", "0.00", ""]))
        lines += ["#-----------------------------------------业务明细列表结束------------------------------------",
                  f"#交易合计：{totals['交易'][0]}笔，商家实收共{totals['交易'][1]:.2f}元，商家优惠共0.00元",
                  f"#退款合计：{totals['退款'][0]}笔，商家实收退款共{totals['退款'][1]:.2f}元，商家优惠退款共0.00元",
                  f"#导出时间：[{day + dt.timedelta(days=1):%Y年%m月%d日} 05:46:49]"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            entry = _GbkName(f"{ALIPAY_PID}_{day:%Y%m%d}_业务明细.csv", date_time=(2026, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, ("\r\n".join(lines) + "\r\n").encode("gbk"))
        return buf.getvalue()

    def write(self, out: Path) -> None:
        if out.exists():
            shutil.rmtree(out)
        inbox = out / "inbox" / CHANNEL
        inbox.mkdir(parents=True)
        (out / "inbox" / "alipay").mkdir(parents=True)
        for day in self.all_days:
            (inbox / bill_name(day)).write_bytes(self.bill_text(day))
            (out / "inbox" / "alipay" / alipay_bill_name(day)).write_bytes(self.alipay_zip(day))
            local_dir = out / "root" / "local" / day.isoformat()
            local_dir.mkdir(parents=True)
            with (local_dir / "orders.csv").open("w", encoding="utf-8", newline="") as fh:
                csvio.write_rows(fh, LOCAL_COLUMNS, sorted(self.local[day]))
        write_conf(out)


def write_conf(out: Path) -> None:
    """The demo's configuration: paths relative to the conf folder, Spark on local mode."""
    conf = out / "conf"
    (conf / "channels").mkdir(parents=True, exist_ok=True)
    (conf / "pipeline.toml").write_text(
        '# Generated by `python -m recon.demo`: the demo pipeline on the embedded Spark local mode.\n'
        '[pipeline]\nroot = "../root"\ntimezone = "Asia/Shanghai"\nmax_carry_days = 3\n\n'
        '[spark]\n"spark.master" = "local[2]"\n"spark.sql.shuffle.partitions" = "4"\n', encoding="utf-8")
    (conf / "channels" / f"{CHANNEL}.toml").write_text(
        '[channel]\nname = "wechatpay"\nnormalizer = "wechatpay"\ncutoff_minutes = 30\n'
        '# each demo bill has one short row: listed as CHANNEL_ROW_REJECTED instead of failing the bill\n'
        'max_rejected_rows = 1\n\n'
        '[fees]\nrate = "0.006"\ntolerance = "0.01"\n\n'
        '[download]\ntype = "localdir"\npath = "../../inbox/wechatpay"\nfilename = "wechatpay_all_{date:%Y%m%d}.csv"\n'
        '# a local folder is looked at once: a missing statement is exit 3 at once\n',
        encoding="utf-8")
    (conf / "channels" / "alipay.toml").write_text(
        '[channel]\nname = "alipay"\nnormalizer = "alipay"\ncutoff_minutes = 30\n\n'
        '[fees]\nrate = "0.006"\ntolerance = "0.01"\n\n'
        '[download]\ntype = "localdir"\npath = "../../inbox/alipay"\nfilename = "alipay_trade_{date:%Y%m%d}.zip"\n',
        encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo", type=Path)
    parser.add_argument("--first-day", default="2026-11-20", type=dt.date.fromisoformat)
    parser.add_argument("--days", default=2, type=int)
    parser.add_argument("--orders-per-day", default=300, type=int)
    args = parser.parse_args(argv)
    Demo(args.first_day, args.days, orders_per_day=args.orders_per_day).build().write(args.out)
    print(f"demo data for {args.days} day(s) from {args.first_day} written to {args.out}/ "
          f"(configuration: {args.out}/conf/pipeline.toml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
