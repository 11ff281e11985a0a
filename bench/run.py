"""`make bench`: time pipeline stages as whole processes on generated data; print a Markdown table.

    python -m bench.run --rows 1000000 [--rows 10000000] [--runs 3] [--stages normalize]

Each measurement is a fresh `python` process (as cron would run it): wall
time, peak resident memory of the process tree (ru_maxrss of children),
and records per second. The median of ``--runs`` is reported. Generated
inputs are cached under ``--work`` so repeated runs measure the stage only.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.wechat_bill import write_bill

DAY = "2026-11-20"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _normalize_setup(work: Path, rows: int) -> tuple[list[str], int, int]:
    """A root with the bill landed for DAY; returns the command that normalizes it, rows and raw bytes."""
    root = work / f"normalize-{rows}"
    conf = root / "conf"
    bill = root / "inbox" / f"wechatpay_all_{DAY.replace('-', '')}.csv"
    if not bill.exists():
        bill.parent.mkdir(parents=True, exist_ok=True)
        write_bill(str(bill), rows, day=DAY)
    (conf / "channels").mkdir(parents=True, exist_ok=True)
    (conf / "pipeline.toml").write_text('[pipeline]\nroot = "../data"\n', encoding="utf-8")
    (conf / "channels" / "wechatpay.toml").write_text(
        '[channel]\nname = "wechatpay"\nnormalizer = "wechatpay"\n[download]\ntype = "localdir"\n'
        'path = "../../inbox"\nfilename = "wechatpay_all_{date:%Y%m%d}.csv"\nmax_attempts = 1\n', encoding="utf-8")
    cli = [sys.executable, "-m", "recon.cli"]
    subprocess.run(cli + ["download", "--conf", str(conf / "pipeline.toml"), "--date", DAY], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cli + ["normalize", "--conf", str(conf / "pipeline.toml"), "--date", DAY], rows, bill.stat().st_size


STAGES = {"normalize": _normalize_setup}


def measure(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one run of ``cmd`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="records per channel (repeatable); default 1M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--work", type=Path, default=Path("bench-data"))
    args = parser.parse_args(argv)
    sizes = args.rows or [1_000_000]
    print(f"Machine: {machine()}")
    print(f"Command: python -m bench.run {' '.join(sys.argv[1:]) if argv is None else ' '.join(argv)}\n")
    print("| stage | records | raw MB | median s | runs (s) | peak RSS MiB | records/s | MB/s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for stage in args.stages:
        for rows in sizes:
            cmd, records, raw_bytes = STAGES[stage](args.work, rows)
            results = [measure(cmd) for _ in range(args.runs)]
            times = [t for t, _ in results]
            med = statistics.median(times)
            peak = max(m for _, m in results)
            print(f"| {stage} | {records:,} | {raw_bytes / 1e6:,.0f} | {med:.1f} | "
                  f"{', '.join(f'{t:.1f}' for t in times)} | {peak:,.0f} | {records / med:,.0f} | "
                  f"{raw_bytes / 1e6 / med:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
