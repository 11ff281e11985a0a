"""Benchmark data for one date D at scale N: local orders, a WeChat Pay ALL bill, a pipeline configuration.

    python -m bench.dataset --rows 1000000 --out bench-data/rows-1000000 [--day 2026-11-20] [--jobs 2]
        [--gzip-bill] [--duckdb-memory-limit 16GB]

writes (the folder is recreated)::

    {out}/inbox/wechatpay_all_YYYYMMDD.csv   the bill the channel publishes (new column set, correct summary;
                                             --gzip-bill: .csv.gz as tar_type=GZIP sends it, a third of the disk)
    {out}/root/local/{D}/orders.csv          the order system's export (schemas/local.py columns)
    {out}/conf/pipeline.toml                 root = ../root, [spark] sized for this machine and N (and [engine])
    {out}/conf/channels/wechatpay.toml       localdir download of ../../inbox, max_attempts = 1, fee rate 0.006
    {out}/dataset.json                       what was generated (written last: a folder without it is unfinished)

N is the number of order keys of the day. About 95% are ordinary payments
(some paid partly with a coupon), refunds of earlier orders and unpaid or
closed orders that nothing happened to; about 1% are breaks spread over
every single-channel outcome category of DESIGN.md (amount and currency
mismatch, local unpaid / channel paid, REVOKED at the channel, a duplicate
charge, a fee off the contracted rate, one-sided payments and refunds, the
refund categories, and one-sided records near midnight that are carried as
PENDING_CUTOFF). Every chunk of keys holds at least one key of each kind, so
even a tiny N shows every category. ``dataset.json`` lists how many
discrepancy rows of each category the reconciliation must report.

Amounts are integer fen (fee: integer 1e-5 yuan, as the bill writes it) and
are formatted as exact decimal strings; no float touches money. The output is
a pure function of (N, D, seed): chunks of keys have their own seeded random
generator and are written in order, whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gzip
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import time
from pathlib import Path

FORMAT_VERSION = 1
CHANNEL = "wechatpay"
APPID = "wx81be3101902f7cb2"
MCH_ID = "1601959334"
CHUNK = 100_000          # keys per chunk (one seeded generator, one unit of work for a worker)
FEE_PER_FEN = 6          # 0.6%: fee in 1e-5 yuan = settled fen x 6, exactly
BILL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
               "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
               "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
LOCAL_HEADER = "order_no,refund_no,txn_type,channel,currency,amount,status,created_at,paid_at"
GOODS = ("年货礼盒", "会员月卡", "咖啡豆 500g", "机械键盘", "电影票", "高铁餐食", "充电宝租借", "外卖订单")
BANKS = ("OTHERS", "CMB_DEBIT", "ICBC_DEBIT", "CCB_CREDIT", "ABC_DEBIT", "BOC_CREDIT", "CFT")
OPENID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
OPENIDS = 200_003        # distinct payers (customers come back)

# Kinds of key: (name, share of keys, category it must end in, discrepancy rows per key).
# The ordinary kinds make up the rest of the keys.
BREAKS = (
    ("unpaid_channel_paid", 0.0012, "LOCAL_UNPAID_CHANNEL_PAID", 1),
    ("amount_mismatch", 0.0010, "AMOUNT_MISMATCH", 1),
    ("currency_mismatch", 0.0005, "CURRENCY_MISMATCH", 1),
    ("status_mismatch", 0.0008, "STATUS_MISMATCH", 1),
    ("duplicate_channel", 0.0005, "DUPLICATE_CHANNEL", 2),   # the pair's row and the extra charge's row
    ("fee_mismatch", 0.0010, "FEE_MISMATCH", 1),
    ("local_only", 0.0012, "LOCAL_ONLY", 1),
    ("channel_only", 0.0012, "CHANNEL_ONLY", 1),
    ("refund_not_refunded", 0.0006, "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED", 1),
    ("refund_amount_mismatch", 0.0004, "REFUND_AMOUNT_MISMATCH", 1),
    ("refund_local_only", 0.0004, "REFUND_LOCAL_ONLY", 1),
    ("refund_channel_only", 0.0004, "REFUND_CHANNEL_ONLY", 1),
    ("refund_exceeds", 0.0002, "REFUND_EXCEEDS_PAYMENT", 1),   # the second partial refund's row
    ("cutoff_local", 0.0002, "PENDING_CUTOFF", 1),             # paid 23:45+ locally, channel stamps D+1
    ("cutoff_channel", 0.0002, "PENDING_CUTOFF", 1),           # channel 23:45+, local callback on D+1
)
ORDINARY = (
    ("coupon", 0.03),            # paid partly with a channel-funded coupon; agrees
    ("refund", 0.04),            # refund of an earlier order; agrees
    ("unpaid", 0.015),           # local UNPAID, nothing at the channel: counted as MATCHED
    ("closed", 0.005),           # local CLOSED, nothing at the channel
    ("refund_failed", 0.001),    # local refund FAILED, nothing at the channel
)
KINDS = tuple(k for k, *_ in BREAKS) + tuple(k for k, _ in ORDINARY) + ("payment",)
_SHARES = [s for _, s, *_ in BREAKS] + [s for _, s in ORDINARY]
_CUMULATIVE = [sum(_SHARES[:i + 1]) for i in range(len(_SHARES))]
HMS = [f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}" for s in range(86400)]
LAST_SAFE_SECOND = 23 * 3600        # one-sided breaks happen before 23:00 (outside a 30-minute cut-off window)
CUTOFF_FIRST_SECOND = 23 * 3600 + 45 * 60


def _perm(i: int, mult: int, add: int) -> int:
    """A bijection of [0, 10**10): realistic-looking, unique 10-digit numbers from a key index."""
    return (i * mult + add) % 10_000_000_000


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}" if fen >= 0 else f"-{-fen // 100}.{-fen % 100:02d}"


def _fee5(units: int) -> str:
    """A fee in 1e-5 yuan as the bill writes it (5 decimals, sign in front)."""
    return f"{units // 100000}.{units % 100000:05d}" if units >= 0 else f"-{-units // 100000}.{-units % 100000:05d}"


def _openids(seed: int) -> list[str]:
    rng = random.Random(f"{seed}-openids")
    return ["o" + "".join(rng.choices(OPENID_CHARS, k=27)) for _ in range(OPENIDS)]


_POOL: list[str] = []


def _chunk(args) -> tuple[bytes, bytes, dict]:
    """Keys [k * CHUNK, min(rows, (k + 1) * CHUNK)) as (bill lines, local lines, counts and sums)."""
    k, rows, day_text, seed, gzip_bill = args
    global _POOL
    if not _POOL:
        _POOL = _openids(seed)
    pool = _POOL
    rng = random.Random(f"{seed}-{day_text}-{k}")
    rand, randrange, choice = rng.random, rng.randrange, rng.choice
    day = dt.date.fromisoformat(day_text)
    ymd = f"{day:%Y%m%d}"
    earlier = f"{day - dt.timedelta(days=3):%Y%m%d}"
    d = day_text + " "
    bill: list[str] = []
    local: list[str] = []
    kinds = dict.fromkeys(KINDS, 0)
    settle = coupon_total = refund_total = fee_total = order_total = 0

    def pay(sec, txn, order, openid, fen, *, coupon=0, status="SUCCESS", fee=None):
        nonlocal settle, coupon_total, fee_total, order_total
        s = fen - coupon
        units = s * FEE_PER_FEN if fee is None else fee
        bill.append(f"`{d}{HMS[sec]},`{APPID},`{MCH_ID},`0,`,`{txn},`{order},`{openid},`JSAPI,`{status},"
                    f"`{choice(BANKS)},`CNY,`{_yuan(s)},`{_yuan(coupon)},`0,`0,`0.00,`0.00,`,`,`{choice(GOODS)},`,"
                    f"`{_fee5(units)},`0.60%,`{_yuan(fen)},`0.00,`")
        settle += s
        coupon_total += coupon
        fee_total += units
        order_total += fen

    def refund(sec, txn, order, openid, refund_id, refund_no, fen):
        nonlocal refund_total, fee_total
        units = -fen * FEE_PER_FEN
        amount = _yuan(fen)
        bill.append(f"`{d}{HMS[sec]},`{APPID},`{MCH_ID},`0,`,`{txn},`{order},`{openid},`JSAPI,`REFUND,"
                    f"`{choice(BANKS)},`CNY,`0.00,`0.00,`{refund_id},`{refund_no},`{amount},`0.00,`ORIGINAL,"
                    f"`SUCCESS,`{choice(GOODS)},`,`{_fee5(units)},`0.60%,`0.00,`{amount},`")
        refund_total += fen
        fee_total += units

    def loc(order, refund_no, txn_type, fen, status, created, paid, currency="CNY"):
        local.append(f"{order},{refund_no},{txn_type},{CHANNEL},{currency},{_yuan(fen)},{status},{created},{paid}")

    def times(sec):
        """(created_at, paid_at) of a local record whose payment callback came at ``sec``."""
        return d + HMS[max(0, sec - 5 - randrange(115))], d + HMS[sec]

    first, last = k * CHUNK, min(rows, (k + 1) * CHUNK)
    for i in range(first, last):
        j = i - first
        if j < len(BREAKS):          # every chunk shows every break
            kind = BREAKS[j][0]
        else:
            at = bisect.bisect_right(_CUMULATIVE, rand())
            kind = KINDS[at] if at < len(_SHARES) else "payment"
        kinds[kind] += 1
        p = _perm(i, 2654435761, 4807526976)
        order = f"T{ymd}{p:010d}"
        txn = f"420000{(i * 7919) % 10000:04d}{ymd}{_perm(i, 1140071481, 7777777777):010d}"
        openid = pool[randrange(OPENIDS)]
        r = rand()
        fen = randrange(100, 20000) if r < 0.7 else randrange(20000, 200000) if r < 0.97 else randrange(1, 100)
        sec = randrange(LAST_SAFE_SECOND) if kind != "payment" else randrange(86400)
        created, paid = times(sec)

        if kind == "payment":
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen)
        elif kind == "coupon":
            fen += 1000
            coupon = randrange(1, 10) * 100
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen, coupon=coupon)
        elif kind in ("unpaid", "closed"):
            loc(order, "", "PAYMENT", fen, kind.upper(), created, "")
        elif kind == "unpaid_channel_paid":      # the payment callback never arrived
            loc(order, "", "PAYMENT", fen, "UNPAID", created, "")
            pay(sec, txn, order, openid, fen)
        elif kind == "amount_mismatch":
            fen += 200
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen - 100)
        elif kind == "currency_mismatch":
            loc(order, "", "PAYMENT", fen, "PAID", created, paid, currency="HKD")
            pay(sec, txn, order, openid, fen)
        elif kind == "status_mismatch":          # paid locally, revoked at the channel
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen, status="REVOKED")
        elif kind == "duplicate_channel":        # charged twice
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen)
            pay(min(sec + 7, 86399), f"420001{txn[6:]}", order, openid, fen)
        elif kind == "fee_mismatch":             # fee at twice the contracted rate
            fen += 10000
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
            pay(sec, txn, order, openid, fen, fee=2 * fen * FEE_PER_FEN)
        elif kind == "local_only":
            loc(order, "", "PAYMENT", fen, "PAID", created, paid)
        elif kind == "channel_only":
            pay(sec, txn, order, openid, fen)
        elif kind == "cutoff_local":             # paid at 23:45+; the channel stamps it on D+1
            sec = CUTOFF_FIRST_SECOND + randrange(86400 - CUTOFF_FIRST_SECOND)
            loc(order, "", "PAYMENT", fen, "PAID", *times(sec))
        elif kind == "cutoff_channel":           # the channel at 23:45+; the local callback on D+1
            pay(CUTOFF_FIRST_SECOND + randrange(86400 - CUTOFF_FIRST_SECOND), txn, order, openid, fen)
        elif kind == "refund_exceeds":           # paid 100.00, refunded 60.00 + 50.00, on both sides
            loc(order, "", "PAYMENT", 10000, "PAID", created, paid)
            pay(sec, txn, order, openid, 10000)
            for n, (part, rsec) in enumerate(((6000, 21 * 3600 + sec % 1800), (5000, 22 * 3600 + sec % 1800))):
                refund_no = f"R{order[1:]}{n + 1:02d}"
                loc(order, refund_no, "REFUND", part, "SUCCESS", *times(rsec))
                refund(rsec, txn, order, openid, f"50300{(i * 31) % 10000:04d}{ymd}{p:010d}{n + 1:02d}",
                       refund_no, part)
        else:                                    # refunds of an order paid three days earlier
            order = f"T{earlier}{p:010d}"
            txn = f"420000{(i * 7919) % 10000:04d}{earlier}{_perm(i, 1140071481, 7777777777):010d}"
            refund_no = f"R{order[1:]}01"
            refund_id = f"50300{(i * 31) % 10000:04d}{ymd}{p:010d}01"
            if kind == "refund":
                loc(order, refund_no, "REFUND", fen, "SUCCESS", created, paid)
                refund(sec, txn, order, openid, refund_id, refund_no, fen)
            elif kind == "refund_failed":
                loc(order, refund_no, "REFUND", fen, "FAILED", created, "")
            elif kind == "refund_not_refunded":
                loc(order, refund_no, "REFUND", fen, "PROCESSING", created, "")
                refund(sec, txn, order, openid, refund_id, refund_no, fen)
            elif kind == "refund_amount_mismatch":
                fen += 100
                loc(order, refund_no, "REFUND", fen, "SUCCESS", created, paid)
                refund(sec, txn, order, openid, refund_id, refund_no, fen - 50)
            elif kind == "refund_local_only":
                loc(order, refund_no, "REFUND", fen, "SUCCESS", created, paid)
            elif kind == "refund_channel_only":
                refund(sec, txn, order, openid, refund_id, refund_no, fen)
            else:
                raise AssertionError(kind)
    stats = {"kinds": kinds, "bill_rows": len(bill), "local_rows": len(local),
             "sums": [settle, coupon_total, refund_total, fee_total, order_total]}
    bill_bytes = ("\r\n".join(bill) + "\r\n").encode("utf-8") if bill else b""
    stats["bill_text_bytes"] = len(bill_bytes)
    if gzip_bill:  # one gzip member per chunk: members one after another are one gzip stream (RFC 1952)
        bill_bytes = gzip.compress(bill_bytes, compresslevel=1, mtime=0)
    local_bytes = ("\n".join(local) + "\n").encode("utf-8") if local else b""
    return bill_bytes, local_bytes, stats


def bill_name(day: dt.date, gzip_bill: bool = False) -> str:
    return f"wechatpay_all_{day:%Y%m%d}.csv" + (".gz" if gzip_bill else "")


def paths(out: Path, day: dt.date, gzip_bill: bool = False) -> dict[str, Path]:
    return {"bill": out / "inbox" / bill_name(day, gzip_bill), "local": out / "root" / "local" / day.isoformat() / "orders.csv",
            "conf": out / "conf" / "pipeline.toml", "meta": out / "dataset.json", "root": out / "root"}


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def spark_settings(rows: int, *, driver_memory: str | None = None) -> dict[str, str]:
    """[spark] for one machine in local mode.

    The driver heap is the same at every N (the job must not need more memory
    for more rows: that is what the benchmark's peak RSS column checks), sized
    for 20M keys: 8 GiB, or 40% of the RAM on a smaller machine, at least 2 GiB.
    Shuffle partitions are left to the job, which sizes them to its input.
    """
    if driver_memory is None:
        gib = max(2, min(8, int(physical_memory() * 0.4 / 2**30)))
        driver_memory = f"{gib}g"
    return {"spark.master": "local[*]", "spark.driver.memory": driver_memory, "spark.local.dir": "../spark-tmp"}


BILL_TEXT_BYTES_PER_KEY = 300  # about 260 a row: past 8 GiB (about 30M keys) the channel file raises the limit


def write_conf(out: Path, rows: int, spark: dict[str, str], *, gzip_bill: bool = False,
               duckdb_memory_limit: str | None = None) -> None:
    conf = out / "conf"
    (conf / "channels").mkdir(parents=True, exist_ok=True)
    lines = ["# Generated by `python -m bench.dataset`: the benchmark's pipeline, Spark in local mode.",
             "[pipeline]", 'root = "../root"', 'timezone = "Asia/Shanghai"', "max_carry_days = 3", "",
             f"[spark]  # sized for {rows:,} keys on this machine (bench/dataset.py spark_settings)"]
    lines += [f'"{k}" = "{v}"' for k, v in spark.items()]
    if duckdb_memory_limit:
        lines += ["", "[engine]  # the DuckDB engine's cap; it spills to {work_dir}/duckdb past it",
                  f'memory_limit = "{duckdb_memory_limit}"']
    (conf / "pipeline.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from normalizers.base import MAX_STATEMENT_BYTES

    limit = rows * BILL_TEXT_BYTES_PER_KEY
    normalizer = (f"\n[normalizer]  # the bill of {rows:,} keys is larger than the default 8 GiB\n"
                  f"max_statement_bytes = {limit}\n") if limit > MAX_STATEMENT_BYTES else ""
    (conf / "channels" / f"{CHANNEL}.toml").write_text(
        '[channel]\nname = "wechatpay"\nnormalizer = "wechatpay"\ncutoff_minutes = 30\n\n'
        '[fees]\nrate = "0.006"\ntolerance = "0.01"\n\n'
        f'[download]\ntype = "localdir"\npath = "../../inbox"\nfilename = "wechatpay_all_{{date:%Y%m%d}}.csv'
        f'{".gz" if gzip_bill else ""}"\nmax_attempts = 1\n{normalizer}', encoding="utf-8")


def _resolve_spark_paths(spark: dict[str, str], conf_dir: Path) -> dict[str, str]:
    """spark.local.dir is given to Spark as is: make it absolute (relative to the conf folder)."""
    out = dict(spark)
    if "spark.local.dir" in out and not os.path.isabs(out["spark.local.dir"]):
        out["spark.local.dir"] = str((conf_dir / out["spark.local.dir"]).resolve())
    return out


def generate(out: Path, rows: int, *, day: dt.date = dt.date(2026, 11, 20), seed: int = 20261120,
             jobs: int | None = None, driver_memory: str | None = None, quiet: bool = False,
             gzip_bill: bool = False, duckdb_memory_limit: str | None = None) -> dict:
    """Write the dataset (see the module docstring); returns what dataset.json records."""
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    p = paths(out, day, gzip_bill)
    for key in ("bill", "local"):
        p[key].parent.mkdir(parents=True)
    spark = _resolve_spark_paths(spark_settings(rows, driver_memory=driver_memory), out / "conf")
    write_conf(out, rows, spark, gzip_bill=gzip_bill, duckdb_memory_limit=duckdb_memory_limit)
    kinds = dict.fromkeys(KINDS, 0)
    bill_rows = local_rows = bill_text_bytes = 0
    sums = [0, 0, 0, 0, 0]
    work = [(k, rows, day.isoformat(), seed, gzip_bill) for k in range(math.ceil(rows / CHUNK))]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(work)))

    def text(line: str) -> bytes:  # a line of the bill outside the chunks (header, summary)
        nonlocal bill_text_bytes
        data = (line + "\r\n").encode("utf-8")
        bill_text_bytes += len(data)
        return gzip.compress(data, compresslevel=1, mtime=0) if gzip_bill else data

    with p["bill"].open("wb") as bill, p["local"].open("wb") as local:
        bill.write(text(BILL_HEADER))
        local.write((LOCAL_HEADER + "\n").encode("utf-8"))
        if jobs == 1:
            results = map(_chunk, work)
            pool = None
        else:
            pool = multiprocessing.get_context("fork").Pool(jobs)
            results = pool.imap(_chunk, work)
        try:
            for n, (b, loc, stats) in enumerate(results, start=1):
                bill.write(b)
                local.write(loc)
                bill_rows += stats["bill_rows"]
                bill_text_bytes += stats["bill_text_bytes"]
                local_rows += stats["local_rows"]
                sums = [a + x for a, x in zip(sums, stats["sums"])]
                for kind, count in stats["kinds"].items():
                    kinds[kind] += count
                if not quiet and (n % 20 == 0 or n == len(work)):
                    print(f"  {min(n * CHUNK, rows):,} / {rows:,} keys", file=sys.stderr, flush=True)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        settle, coupon, refund, fee, order_total = sums
        bill.write(text(SUMMARY_HEADER))
        bill.write(text(f"`{bill_rows},`{_yuan(settle)},`{_yuan(refund)},`0.00,`{_fee5(fee)},`{_yuan(order_total)},"
                        f"`{_yuan(refund)}"))
    expected: dict[str, int] = {}
    for name, _, category, per_key in BREAKS:
        expected[category] = expected.get(category, 0) + kinds[name] * per_key
    meta = {
        "format_version": FORMAT_VERSION, "rows": rows, "day": day.isoformat(), "seed": seed,
        "bill": str(p["bill"].relative_to(out)), "bill_rows": bill_rows, "bill_bytes": p["bill"].stat().st_size,
        "bill_gzip": gzip_bill, "bill_text_bytes": bill_text_bytes,
        "duckdb_memory_limit": duckdb_memory_limit,
        "local": str(p["local"].relative_to(out)), "local_rows": local_rows,
        "local_bytes": p["local"].stat().st_size, "kinds": kinds, "expected_discrepancy_rows": expected,
        "breaks_share": round(sum(kinds[n] for n, *_ in BREAKS) / rows, 5) if rows else 0,
        "spark": spark, "generate_seconds": round(time.perf_counter() - started, 1),
    }
    p["meta"].write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def load(out: Path) -> dict | None:
    """dataset.json of a finished dataset, or None."""
    try:
        meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if meta.get("format_version") == FORMAT_VERSION else None


def ensure(out: Path, rows: int, *, day: dt.date, seed: int = 20261120, driver_memory: str | None = None,
           jobs: int | None = None, gzip_bill: bool = False, duckdb_memory_limit: str | None = None) -> dict:
    """The dataset in ``out``: generated unless a finished one with the same N, D, seed and bill form is there.

    The configuration is rewritten when its settings change (cheap), so a different
    ``driver_memory`` or ``duckdb_memory_limit`` does not regenerate the data.
    """
    meta = load(out)
    if (meta is None or meta["rows"] != rows or meta["day"] != day.isoformat() or meta["seed"] != seed
            or meta.get("bill_gzip", False) != gzip_bill):
        return generate(out, rows, day=day, seed=seed, jobs=jobs, driver_memory=driver_memory, gzip_bill=gzip_bill,
                        duckdb_memory_limit=duckdb_memory_limit)
    spark = _resolve_spark_paths(spark_settings(rows, driver_memory=driver_memory), out / "conf")
    if spark != meta["spark"] or duckdb_memory_limit != meta.get("duckdb_memory_limit"):
        write_conf(out, rows, spark, gzip_bill=gzip_bill, duckdb_memory_limit=duckdb_memory_limit)
        meta["spark"], meta["duckdb_memory_limit"] = spark, duckdb_memory_limit
        (out / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="order keys of the day (default 1M)")
    parser.add_argument("--out", type=Path, required=True, help="folder to (re)create")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--driver-memory", help="spark.driver.memory of the generated conf (default: see "
                                                "spark_settings)")
    parser.add_argument("--gzip-bill", action="store_true", help="write the bill gzipped (.csv.gz)")
    parser.add_argument("--duckdb-memory-limit", help="[engine] memory_limit of the generated conf (e.g. 16GB)")
    args = parser.parse_args(argv)
    meta = generate(args.out, args.rows, day=args.day, seed=args.seed, jobs=args.jobs,
                    driver_memory=args.driver_memory, gzip_bill=args.gzip_bill,
                    duckdb_memory_limit=args.duckdb_memory_limit)
    print(f"{args.out}: {meta['rows']:,} keys, bill {meta['bill_rows']:,} rows ({meta['bill_bytes'] / 1e6:,.1f} MB), "
          f"local {meta['local_rows']:,} rows ({meta['local_bytes'] / 1e6:,.1f} MB), breaks {meta['breaks_share']:.2%}, "
          f"{meta['generate_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
