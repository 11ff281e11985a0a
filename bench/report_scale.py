"""Time the report step alone at scale: write_reports on a generated day of N discrepancy rows.

    python -m bench.report_scale [--rows 200000] [--open-items 20000] [--repeat 1] [--keep DIR]

Generates, in a temporary folder (or ``--keep DIR``, recreated), the files
the reconcile job leaves in its staging folder: ``discrepancies.csv`` (N
rows, DISCREPANCY_COLUMNS, every listed category over three channels, sorted
as jobs/reconcile.py DISCREPANCY_ORDER writes it), ``open_items.csv``
(OPEN_ITEM_COLUMNS, pending items and open breaks) and a ``summary.json``
whose counts and amounts agree with them. Rows are written as they are
generated, so the generator itself holds no rows. Then it runs
``reports.build.write_reports`` once and prints the wall seconds and the
process's peak resident memory (``ru_maxrss``) before and after the call,
and the CPU seconds it used (user + system: less disturbed than wall time
when other work shares the machine). ``--repeat N`` runs it N times on the
same files and reports each run and the fastest (peak RSS covers them all).

No Spark and one process: it measures only the driver's report step (what
the reconcile job runs after its CSVs are written). Output is a pure function
of (N, open items, seed).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from schemas.money import format_money
from schemas.outputs import CATEGORIES, DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS, RESOLUTIONS

DAY = dt.date(2026, 11, 20)
CHANNELS = ("alipay", "unionpay", "wechatpay")
# Listed categories with a rough weight (one-sided breaks and auto-fixes dominate a real day).
WEIGHTS = {"LOCAL_ONLY": 20, "CHANNEL_ONLY": 20, "LOCAL_UNPAID_CHANNEL_PAID": 15, "PENDING_CUTOFF": 10,
           "AMOUNT_MISMATCH": 6, "FEE_MISMATCH": 6, "STATUS_MISMATCH": 4, "CLEARED_LATE": 4,
           "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED": 3, "REFUND_LOCAL_ONLY": 3, "REFUND_CHANNEL_ONLY": 3,
           "REFUND_AMOUNT_MISMATCH": 2, "DUPLICATE_CHANNEL": 2, "CURRENCY_MISMATCH": 1,
           "DUPLICATE_ACROSS_CHANNELS": 1, "REFUND_EXCEEDS_PAYMENT": 1}
LOCAL_ONLY = {"LOCAL_ONLY", "REFUND_LOCAL_ONLY"}
CHANNEL_ONLY = {"CHANNEL_ONLY", "REFUND_CHANNEL_ONLY", "DUPLICATE_ACROSS_CHANNELS"}


def _split(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` rows shared out by weight (the remainder to the first categories), exact sum."""
    whole = sum(weights.values())
    out = {k: total * w // whole for k, w in weights.items()}
    for k in list(out)[:total - sum(out.values())]:
        out[k] += 1
    return out


def _money(fen: int) -> str:
    return format_money(Decimal(fen).scaleb(-2))


def _side() -> dict:
    return {"records": 0, "amount": Decimal("0.00")}


def _time(rng: random.Random) -> str:
    return f"{DAY} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


def write_discrepancies(path: Path, rows: int, rng: random.Random) -> dict:
    """discrepancies.csv of ``rows`` rows; returns the summary's per-channel category figures."""
    plan = {ch: _split(n, WEIGHTS) for ch, n in _split(rows, {ch: 1 for ch in CHANNELS}).items()}
    figures: dict = {}
    seq = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(DISCREPANCY_COLUMNS)
        for ch in CHANNELS:
            for cat in sorted(plan[ch]):  # file order: channel, category, order_no, refund_no
                fig = figures.setdefault(ch, {}).setdefault(cat, {"local": _side(), "channel": _side(), "rows": 0})
                for _ in range(plan[ch][cat]):
                    seq += 1
                    w.writerow(_discrepancy(ch, cat, seq, rng, fig))
    return figures


def _discrepancy(ch: str, cat: str, seq: int, rng: random.Random, fig: dict) -> list:
    fen = rng.randrange(100, 500_000)
    local = None if cat in CHANNEL_ONLY else fen
    channel = None if cat in LOCAL_ONLY else fen + (rng.randrange(-500, 500) if "AMOUNT" in cat else 0)
    refund = f"R{seq:012d}" if cat.startswith("REFUND") or "REFUNDED" in cat else ""
    for side, value in (("local", local), ("channel", channel)):
        if value is not None:
            fig[side]["records"] += 1
            fig[side]["amount"] += Decimal(value).scaleb(-2)
    fig["rows"] += 1
    note = ("no local record" if local is None else "no channel record" if channel is None
            else f"local {_money(local)}, channel {_money(channel)}, difference {_money(channel - local)}")
    return [DAY.isoformat(), ch, cat, RESOLUTIONS[cat], f"S{DAY:%Y%m%d}{seq:09d}", refund,
            "" if local is None else _money(local), "" if channel is None else _money(channel),
            "" if local is None else "PAID", "" if channel is None else "SUCCESS", "CNY",
            "" if channel is None else f"4200000925{DAY:%Y%m%d}{seq:09d}",
            "" if local is None else _time(rng), "" if channel is None else _time(rng),
            rng.choice((0, 0, 0, 1, 2)), "" if channel is None else f"{ch}_all_{DAY:%Y%m%d}.csv",
            "" if channel is None else seq + 1, note]


def write_open_items(path: Path, rows: int, rng: random.Random) -> dict:
    """open_items.csv of ``rows`` rows (pending items and open breaks); returns their records and amount."""
    total = _side()
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(OPEN_ITEM_COLUMNS)
        for i in range(rows):
            ch = CHANNELS[i * len(CHANNELS) // max(rows, 1)]
            side = "CHANNEL" if i % 2 else "LOCAL"
            age = rng.randrange(0, 6)
            fen = rng.randrange(100, 500_000)
            total["records"] += 1
            total["amount"] += Decimal(fen).scaleb(-2)
            values = {"side": side, "first_seen": (DAY - dt.timedelta(days=age)).isoformat(), "age_days": age,
                      "carried_as": ("CHANNEL_ONLY" if side == "CHANNEL" else "LOCAL_ONLY") if age else "",
                      "channel": ch,
                      "merchant_id": "1601959334", "txn_type": "PAYMENT", "order_no": f"S{DAY:%Y%m%d}{i:09d}",
                      "status": "SUCCESS" if side == "CHANNEL" else "PAID", "currency": "CNY",
                      "amount": _money(fen), "fee": _money(fen * 6 // 1000) if side == "CHANNEL" else "",
                      "coupon_amount": "0.00" if side == "CHANNEL" else "",
                      "txn_time": _time(rng) if side == "CHANNEL" else "",
                      "channel_txn_id": f"4200000925{DAY:%Y%m%d}{i:09d}" if side == "CHANNEL" else "",
                      "payer_id": f"o{i:027d}" if side == "CHANNEL" else "",
                      "bank": "OTHERS" if side == "CHANNEL" else "",
                      "source_file": f"{ch}_all_{DAY:%Y%m%d}.csv" if side == "CHANNEL" else "",
                      "source_line": i + 2 if side == "CHANNEL" else "",
                      "created_at": _time(rng) if side == "LOCAL" else "",
                      "paid_at": _time(rng) if side == "LOCAL" else ""}
            w.writerow([values.get(c, "") for c in OPEN_ITEM_COLUMNS])
    return total


def summary_json(figures: dict, closing: dict, matched_per_channel: int) -> dict:
    """A summary.json agreeing with the generated files (MATCHED figures invented, roll-forward consistent)."""
    channels = {}
    for ch in CHANNELS:
        cats = {cat: {"rows": v["rows"], "local": v["local"], "channel": v["channel"]}
                for cat, v in figures.get(ch, {}).items()}
        matched = {"records": matched_per_channel, "amount": Decimal(matched_per_channel) * Decimal("123.45")}
        cats["MATCHED"] = {"rows": 0, "local": dict(matched), "channel": dict(matched)}
        local = {"records": sum(c["local"]["records"] for c in cats.values()),
                 "amount": sum((c["local"]["amount"] for c in cats.values()), Decimal("0.00"))}
        chan = {"records": sum(c["channel"]["records"] for c in cats.values()),
                "amount": sum((c["channel"]["amount"] for c in cats.values()), Decimal("0.00"))}
        channels[ch] = {"categories": cats, "local": local, "channel": chan, "fees": Decimal("-1234.56"),
                        "rejects": 0, "discrepancy_rows": sum(c["rows"] for c in cats.values()),
                        "corrections": sum(c["rows"] for k, c in cats.items() if RESOLUTIONS[k] == "AUTO_FIXED")}
    opening = {"records": closing["records"], "amount": closing["amount"]}
    roll = {"opening": opening, "new": _side(), "cleared": _side(), "closing": closing}
    return _plain({"date": DAY.isoformat(), "run_id": f"{DAY}-bench", "channels": channels,
                   "channels_reconciled": list(CHANNELS), "channels_not_available": [], "roll_forward": roll,
                   "carried_from": (DAY - dt.timedelta(days=1)).isoformat(), "inputs": []})


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, Decimal):
        return format_money(obj)
    return obj


def generate(folder: Path, rows: int, open_items: int, seed: int) -> None:
    rng = random.Random(seed)
    figures = write_discrepancies(folder / "discrepancies.csv", rows, rng)
    closing = write_open_items(folder / "open_items.csv", open_items, rng)
    summary = summary_json(figures, closing, matched_per_channel=10_000_000 // len(CHANNELS))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="discrepancy rows (default 200000)")
    ap.add_argument("--open-items", type=int, default=20_000, help="open item rows (default 20000)")
    ap.add_argument("--seed", type=int, default=20261120)
    ap.add_argument("--repeat", type=int, default=1, help="runs of write_reports on the same files (default 1)")
    ap.add_argument("--keep", type=Path, help="generate into this folder (recreated) and keep it")
    args = ap.parse_args(argv)
    assert set(WEIGHTS) == {c for c in CATEGORIES if c != "MATCHED"}, "every listed category is generated"

    from core.storage import Storage
    from reports.build import write_reports

    base = args.keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    if args.keep:
        shutil.rmtree(base, ignore_errors=True)
    folder = base / "recon" / DAY.isoformat()
    folder.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        generate(folder, args.rows, args.open_items, args.seed)
        generated = time.perf_counter() - t0
        before = peak_rss_mb()
        runs = []
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), cpu_seconds()
            write_reports(Storage(base.resolve().as_uri()), f"recon/{DAY}", DAY)
            runs.append((time.perf_counter() - t0, cpu_seconds() - c0))
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        after = peak_rss_mb()
        sizes = {n: (folder / n).stat().st_size / 1e6 for n in ("discrepancies.csv", "report.html", "report.xlsx")}
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"rows {args.rows:,} discrepancies, {args.open_items:,} open items (generated in {generated:.1f} s)")
    if len(runs) > 1:
        print("runs: " + ", ".join(f"{w:.1f} s wall / {c:.1f} s CPU" for w, c in runs))
    fastest = f" (fastest of {len(runs)})" if len(runs) > 1 else ""
    print(f"write_reports: {wall:.1f} s wall, {cpu:.1f} s CPU{fastest}")
    print(f"peak RSS: {before:.0f} MB before write_reports, {after:.0f} MB after (growth {after - before:.0f} MB)")
    print("sizes: " + ", ".join(f"{n} {mb:.1f} MB" for n, mb in sizes.items()))
    print(f"python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
