"""Generate a large, realistic WeChat Pay ALL bill (new column set) quickly, with a correct summary.

    python -m bench.wechat_bill --rows 1000000 --out /tmp/bill.csv
"""

from __future__ import annotations

import argparse
import random
from decimal import Decimal

HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
          "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
          "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def write_bill(path: str, rows: int, day: str = "2026-11-20", seed: int = 7, refund_share: float = 0.05) -> int:
    """Write ``rows`` detail rows; returns the file size in bytes. Amounts are exact (integer fen)."""
    rng = random.Random(seed)
    settle = refund = fee_total = order_total = 0  # fen; fee in 1e-5 yuan
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\r\n")
        buf = []
        for i in range(rows):
            sec = rng.randrange(86400)
            t = f"{day} {sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
            fen = rng.randrange(1, 200000)
            fee = fen * 6 // 10  # 0.6% in 1e-5 yuan units (fen * 0.006 * 1000)
            if rng.random() < refund_share:
                buf.append(f"`{t},`wx81be3101902f7cb2,`1601959334,`0,`,`42000009252026111{i:011d},`S{i:012d},"
                           f"`ofyak5qR_1wYsC99CsWA6R9M{i % 10000:04d},`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,"
                           f"`5030000{i:013d},`RF{i:012d},`{fen // 100}.{fen % 100:02d},`0.00,`ORIGINAL,`SUCCESS,"
                           f"`年货礼盒,`,`-{fee // 100000}.{fee % 100000:05d},`0.60%,`0.00,`{fen // 100}.{fen % 100:02d},`")
                refund += fen
                fee_total -= fee
            else:
                buf.append(f"`{t},`wx81be3101902f7cb2,`1601959334,`0,`,`42000009252026112{i:011d},`S{i:012d},"
                           f"`ofyak5qR_1wYsC99CsWA6R9M{i % 10000:04d},`JSAPI,`SUCCESS,`CMB_DEBIT,`CNY,"
                           f"`{fen // 100}.{fen % 100:02d},`0.00,`0,`0,`0.00,`0.00,`,`,`咖啡豆 500g,`,"
                           f"`{fee // 100000}.{fee % 100000:05d},`0.60%,`{fen // 100}.{fen % 100:02d},`0.00,`")
                settle += fen
                order_total += fen
                fee_total += fee
            if len(buf) >= 10000:
                out.write("\r\n".join(buf) + "\r\n")
                buf.clear()
        if buf:
            out.write("\r\n".join(buf) + "\r\n")
        money = lambda fen: f"{Decimal(fen) / 100:.2f}"  # noqa: E731
        out.write(SUMMARY + "\r\n")
        out.write(f"`{rows},`{money(settle)},`{money(refund)},`0.00,`{Decimal(fee_total) / 100000:.5f},"
                  f"`{money(order_total)},`{money(refund)}\r\n")
        return out.tell()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    size = write_bill(args.out, args.rows)
    print(f"{args.out}: {args.rows} rows, {size / 1e6:.1f} MB")
