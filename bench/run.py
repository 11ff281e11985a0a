"""`make bench`: time pipeline stages as whole processes on generated data; print a Markdown table.

    python -m bench.run --rows 1000000 [--rows 10000000] [--runs 3] [--stages normalize reconcile ...]

``--rows`` is the number of order keys of the day (bench/dataset.py: local
orders and a WeChat Pay ALL bill, about 1% breaks over every category).
Stages, each measured as a fresh process as cron would run it (JVM start
included):

- ``normalize``: ``recon download --force-download`` then ``recon normalize``
  (land the bill from the inbox, parse it, check its control totals, publish
  the standard CSV);
- ``reconcile`` / ``reconcile-duckdb``: ``recon reconcile --engine spark|duckdb``
  on the published standard records and the local export;
- ``night`` / ``night-duckdb``: the whole night, ``recon run --force-download
  --engine spark|duckdb`` (download, normalize, reconcile and the reports);
  after each engine's stage its data files are kept, and the two engines'
  results are compared byte for byte at the end ("Engines");
- ``report``: ``recon report --date D``;
- ``spark-join`` / ``pandas-merge`` / ``duckdb-join``: the baselines
  bench/baseline_spark.py, bench/baseline_pandas.py and bench/baseline_duckdb.py
  on the same standard CSV and local export (the three must label the same
  rows: the sanity lines print their counts side by side).

For each: wall time (median of ``--runs``), peak resident memory of the
process tree (sampled from /proc every 0.2 s, summed over the processes, and
at least the largest single process's ru_maxrss), split into the JVM and the
Python driver, and records per second. Generated data is cached under
``--work`` (one folder per scale), so repeated runs measure the stages only.

Size: a command-line harness, not pipeline code: the stages, their timing and the Markdown table
read best top to bottom in one file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import dataset

DAY = "2026-11-20"
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


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
    java = "unknown Java"
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr
        java = out.splitlines()[0].replace('"', "") if out else java
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import pyspark
        spark = f"PySpark {pyspark.__version__}"
    except ImportError:
        spark = "no PySpark"
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {spark}, {java}")


# -- measuring ---------------------------------------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, str, int, tuple]]:
    """pid -> (ppid, comm, rss bytes, address-space key) of every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        head, _, rest = data.rpartition(b")")
        comm = head.split(b"(", 1)[1].decode("utf-8", "replace")
        f = rest.split()  # f[0] is field 3 (state): ppid field 4, vsize 23, rss 24, startcode 26, startstack 28
        rss = int(f[21]) * PAGE
        table[int(name)] = (int(f[1]), comm, rss, (f[20], f[21], f[23], f[25]))
    return table


def _tree(root: int, table: dict) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _hwm(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory (VmHWM), bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak memory of a process tree, sampled every ``interval``.

    ``total``: the largest sum of resident memory over the tree's processes at
    one moment. A child between fork/vfork and exec (the JVM and Python both
    spawn helpers) shares its parent's address space and would count it twice:
    processes with the same address-space key (vsize, rss, code and stack
    addresses) are counted once. ``jvm`` / ``python``: the largest VmHWM (exact
    per-process high-water mark) of a ``java`` / ``python*`` process.
    """

    def __init__(self, root: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.total = self.jvm = self.python = 0
        self.seen: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            table = _proc_table()
            total, spaces = 0, set()
            for pid in _tree(self.root, table):
                _, comm, rss, space = table[pid]
                self.seen[pid] = comm
                if space not in spaces:
                    spaces.add(space)
                    total += rss
                if comm == "java":
                    self.jvm = max(self.jvm, _hwm(pid))
                elif comm.startswith("python"):
                    self.python = max(self.python, _hwm(pid))
            self.total = max(self.total, total)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


@dataclass
class Measurement:
    seconds: float
    peak_mib: float
    jvm_mib: float
    python_mib: float
    exit_code: int


def _wait_gone(pids: dict[int, str], limit: float = 60.0) -> None:
    """Wait (untimed) for processes the measured one left behind (a JVM still shutting down)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        alive = []
        for pid, comm in pids.items():
            try:
                with open(f"/proc/{pid}/comm") as fh:
                    if fh.read().strip() == comm:
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(0.2)


def measure(cmd: list[str], log: Path) -> Measurement:
    """One run of ``cmd`` in a fresh process: wall time and peak memory of its process tree."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    _wait_gone({pid: comm for pid, comm in sampler.seen.items() if pid != proc.pid})
    # ru_maxrss (KiB): the largest process among the measured one and those it waited for (Python's, not the
    # JVM, which PySpark does not wait for); a lower bound of both the total and the Python figure
    largest = usage.ru_maxrss * 1024
    return Measurement(elapsed, max(sampler.total, largest) / MIB, sampler.jvm / MIB,
                       max(sampler.python, largest if sampler.jvm == 0 else 0) / MIB, proc.returncode)


# -- stages ------------------------------------------------------------------------------------------------------

@dataclass
class Case:
    cmd: list[str]
    records: int
    raw_bytes: int


class Scale:
    """One scale's dataset folder and the commands that run the pipeline on it."""

    def __init__(self, work: Path, rows: int, args):
        self.rows = rows
        self.out = work / f"rows-{rows}"
        self.day = dt.date.fromisoformat(DAY)
        self.meta = dataset.ensure(self.out, rows, day=self.day, driver_memory=args.driver_memory, jobs=args.jobs,
                                   gzip_bill=args.gzip_bill, duckdb_memory_limit=args.duckdb_memory_limit)
        self.conf = self.out / "conf" / "pipeline.toml"
        self.root = self.out / "root"
        self.logs = work / "logs"

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "recon.cli", *args, "--conf", str(self.conf), "--date", DAY]

    @property
    def standard_dir(self) -> Path:
        return self.root / "standard" / dataset.CHANNEL / DAY

    @property
    def recon_dir(self) -> Path:
        return self.root / "recon" / DAY

    @property
    def local_csv(self) -> Path:
        return self.out / self.meta["local"]

    def standard_files(self) -> list[Path]:
        return sorted(p for p in self.standard_dir.glob("*.csv") if not p.name.startswith("_"))

    def _untimed(self, name: str, *cmds: list[str]) -> None:
        log = self.logs / f"setup-{name}-{self.rows}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            for cmd in cmds:
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise SystemExit(f"bench: setup step failed: {shlex.join(cmd)} (log: {log})")

    def ensure_normalized(self) -> None:
        if not (self.standard_dir / "_SUCCESS").exists():
            self._untimed("normalize", self.cli("download"), self.cli("normalize"))

    def ensure_reconciled(self) -> None:
        self.ensure_normalized()
        if not (self.recon_dir / "_SUCCESS").exists():
            self._untimed("reconcile", self.cli("reconcile"))

    @property
    def input_records(self) -> int:
        return self.meta["local_rows"] + self.meta["bill_rows"]

    def input_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.standard_files()) + self.meta["local_bytes"]


def _normalize(s: Scale) -> Case:
    chain = " && ".join(shlex.join(c) for c in (s.cli("download", "--force-download"), s.cli("normalize")))
    return Case(["sh", "-c", chain], s.meta["bill_rows"], s.meta["bill_bytes"])


def _reconcile(s: Scale) -> Case:
    s.ensure_normalized()
    return Case(s.cli("reconcile", "--engine", "spark"), s.input_records, s.input_bytes())


def _reconcile_duckdb(s: Scale) -> Case:
    s.ensure_normalized()
    return Case(s.cli("reconcile", "--engine", "duckdb"), s.input_records, s.input_bytes())


def _night(engine: str):
    def setup(s: Scale) -> Case:
        """The whole night as cron runs it: download (again), normalize, reconcile and the reports."""
        return Case(s.cli("run", "--force-download", "--engine", engine), s.input_records,
                    s.meta["bill_bytes"] + s.meta["local_bytes"])
    return setup


def _report(s: Scale) -> Case:
    s.ensure_reconciled()
    return Case([sys.executable, "-m", "recon.cli", "report", "--conf", str(s.conf), "--date", DAY],
                s.input_records, s.input_bytes())


def _spark_join(s: Scale) -> Case:
    s.ensure_normalized()
    cmd = [sys.executable, "-m", "bench.baseline_spark", "--standard", str(s.standard_dir),
           "--local", str(s.local_csv.parent), "--out", str(s.out / "baseline" / "spark"), "--conf", str(s.conf)]
    return Case(cmd, s.input_records, s.input_bytes())


def _pandas_merge(s: Scale) -> Case:
    s.ensure_normalized()
    (s.out / "baseline").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "bench.baseline_pandas", "--standard", *map(str, s.standard_files()),
           "--local", str(s.local_csv), "--out", str(s.out / "baseline" / "pandas.csv")]
    return Case(cmd, s.input_records, s.input_bytes())


def _duckdb_join(s: Scale) -> Case:
    s.ensure_normalized()
    (s.out / "baseline").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "bench.baseline_duckdb", "--standard", *map(str, s.standard_files()),
           "--local", str(s.local_csv), "--out", str(s.out / "baseline" / "duckdb.csv"),
           "--temp-dir", str(s.out / "baseline" / "duckdb-spill")]
    return Case(cmd, s.input_records, s.input_bytes())


# name -> (label in the table, setup)
STAGES = {
    "normalize": ("normalize (download + normalize)", _normalize),
    "reconcile": ("reconcile (Spark engine)", _reconcile),
    "reconcile-duckdb": ("reconcile (DuckDB engine)", _reconcile_duckdb),
    "night": ("whole night, Spark engine (recon run)", _night("spark")),
    "night-duckdb": ("whole night, DuckDB engine (recon run)", _night("duckdb")),
    "report": ("report", _report),
    "spark-join": ("baseline: plain Spark join", _spark_join),
    "pandas-merge": ("baseline: pandas merge", _pandas_merge),
    "duckdb-join": ("baseline: plain DuckDB join", _duckdb_join),
}


# -- output ------------------------------------------------------------------------------------------------------

def _label_counts(files: list[Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files:
        with f.open(encoding="utf-8") as fh:
            next(fh, None)
            for line in fh:
                label = line.split(",", 1)[0]
                counts[label] = counts.get(label, 0) + 1
    return counts


def sanity(s: Scale) -> list[str]:
    """Lines checking the reconcile stage's output against what the generator planted."""
    lines = []
    summary_file = s.recon_dir / "summary.json"
    if (s.recon_dir / "_SUCCESS").exists() and summary_file.exists():
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        cats = summary["channels"][dataset.CHANNEL]["categories"]
        got = {c: v["rows"] for c, v in cats.items() if c != "MATCHED"}
        want = s.meta["expected_discrepancy_rows"]
        missing = outputs_missing(s)
        bad = [f"{c} {got.get(c, 0):,} (expected {n:,})" for c, n in sorted(want.items()) if got.get(c, 0) != n]
        extra = [f"{c} {n:,} (not planted)" for c, n in sorted(got.items()) if c not in want and n]
        matched = cats.get("MATCHED", {})
        verdict = "all as planted" if not bad and not extra else "DIFFERS: " + "; ".join(bad + extra)
        lines.append(
            f"- {s.rows:,} keys: {s.recon_dir.relative_to(s.out)}/_SUCCESS present"
            + (f", MISSING outputs: {', '.join(missing)}" if missing else "")
            + f"; MATCHED local {matched.get('local', {}).get('records', 0):,} / channel "
              f"{matched.get('channel', {}).get('records', 0):,} records; discrepancy rows: "
            + ", ".join(f"{c} {n:,}" for c, n in sorted(got.items()))
            + f" -- {verdict}")
    else:
        lines.append(f"- {s.rows:,} keys: no reconcile result ({s.recon_dir}/_SUCCESS missing)")
    spark_parts = sorted((s.out / "baseline" / "spark").glob("part-*.csv"))
    single = {name: s.out / "baseline" / file for name, file in (("pandas merge", "pandas.csv"),
                                                                  ("plain DuckDB join", "duckdb.csv"))}
    for name, files in (("plain Spark join", spark_parts),
                        *((name, [path] if path.exists() else []) for name, path in single.items())):
        if files:
            counts = _label_counts(files)
            lines.append(f"  - {name} labelled: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    return lines


ENGINE_STAGES = {"reconcile": "spark", "night": "spark", "reconcile-duckdb": "duckdb", "night-duckdb": "duckdb"}
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv", "summary.json")


def snapshot(s: Scale, engine: str) -> None:
    """Keep the data files an engine published (``engines/{engine}/``), for ``agreement``."""
    import shutil

    keep = s.out / "engines" / engine
    keep.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(s.recon_dir / name, keep / name)


def agreement(s: Scale) -> str | None:
    """Whether both engines' last results of this scale are byte-identical (summary.json: apart from the run's
    id, timings and engine); None unless both ran."""
    from jobs.engines import comparable

    a, b = s.out / "engines" / "spark", s.out / "engines" / "duckdb"
    if not (a / "summary.json").exists() or not (b / "summary.json").exists():
        return None
    off = [n for n in DATA_FILES[:3] if (a / n).read_bytes() != (b / n).read_bytes()]
    if comparable(json.loads((a / "summary.json").read_text("utf-8"))) != \
            comparable(json.loads((b / "summary.json").read_text("utf-8"))):
        off.append("summary.json")
    sizes = ", ".join(f"{n} {(a / n).stat().st_size / 1e6:,.1f} MB" for n in DATA_FILES[:3])
    return (f"- {s.rows:,} keys: Spark and DuckDB engines " +
            (f"DIFFER in {', '.join(off)}" if off else f"byte-identical ({sizes}; summary.json equal)"))


def outputs_missing(s: Scale) -> list[str]:
    """Expected files of recon/{D}/ that are missing."""
    names = ("discrepancies.csv", "corrections.csv", "open_items.csv", "summary.json", "_SUCCESS")
    return [n for n in names if not (s.recon_dir / n).exists()]


REPORTS_LOGGED = re.compile(r"wrote report\.html and report\.xlsx in ([0-9.]+) s")


def reports_seconds(log: Path) -> float | None:
    """What a reconcile's log says its reports took (report.html and report.xlsx: the same Python after either
    engine); None when it does not say."""
    found = REPORTS_LOGGED.findall(log.read_text("utf-8", errors="replace"))
    return float(found[-1]) if found else None


def _fmt_s(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append",
                        help="order keys of the day (repeatable: one table row per scale); default 1M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--work", type=Path, default=Path("bench-data"))
    parser.add_argument("--driver-memory", help="spark.driver.memory for every scale (default: 8g, or 40%% of "
                                                "the RAM on a smaller machine)")
    parser.add_argument("--jobs", type=int, help="processes generating the data (default: all cores)")
    parser.add_argument("--gzip-bill", action="store_true",
                        help="the bill gzipped, as WeChat's tar_type=GZIP sends it (for disks too small for 100M keys)")
    parser.add_argument("--duckdb-memory-limit", help="[engine] memory_limit of the DuckDB engine (e.g. 16GB; "
                                                      "default: DuckDB's, 80%% of the RAM)")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.rows or [1_000_000]))
    work = args.work.resolve()
    command = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)

    scales = {}
    for rows in sizes:  # generate first: the table prints undisturbed
        print(f"bench: data for {rows:,} keys under {work / f'rows-{rows}'}", file=sys.stderr, flush=True)
        scales[rows] = Scale(work, rows, args)

    load = os.getloadavg()
    print(f"Machine: {machine()}")
    print(f"Load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for rows, s in scales.items():
        sp = s.meta["spark"]
        print(f"Data at {rows:,} keys: local {s.meta['local_rows']:,} rows ({s.meta['local_bytes'] / 1e6:,.0f} MB), "
              f"WeChat Pay bill {s.meta['bill_rows']:,} rows ({s.meta['bill_bytes'] / 1e6:,.0f} MB), "
              f"{s.meta['breaks_share']:.2%} breaks; Spark {sp['spark.master']}, driver memory "
              f"{sp['spark.driver.memory']}, shuffle partitions sized by the job to its input")
    print(f"Command: python -m bench.run {command}\n")
    print("| stage | records | raw MB | median s | runs (s) | peak RSS MiB | JVM / Python MiB | records/s | MB/s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    medians: dict[tuple[str, int], tuple[float, int]] = {}
    engines: dict[tuple[str, int], list[tuple[float, float]]] = {}  # reconcile runs: (the command's s, reports' s)
    for stage in args.stages:
        label, setup = STAGES[stage]
        for rows, s in scales.items():
            case = setup(s)
            results = []
            for n in range(args.runs):
                m = measure(case.cmd, s.logs / f"{stage}-{rows}-run{n + 1}.log")
                if m.exit_code != 0:
                    print(f"| {label} | {case.records:,} | {case.raw_bytes / 1e6:,.0f} | failed | exit {m.exit_code} "
                          f"after {m.seconds:.1f} s: {s.logs / f'{stage}-{rows}-run{n + 1}.log'} | | | | |",
                          flush=True)
                    results = []
                    break
                results.append(m)
                if stage in ("reconcile", "reconcile-duckdb"):
                    reports = reports_seconds(s.logs / f"{stage}-{rows}-run{n + 1}.log")
                    if reports is not None:
                        engines.setdefault((stage, rows), []).append((m.seconds, reports))
            if not results:
                continue
            if stage in ENGINE_STAGES:
                snapshot(s, ENGINE_STAGES[stage])
            times = [m.seconds for m in results]
            med = statistics.median(times)
            medians[(stage, rows)] = (med, case.records)
            peak = max(results, key=lambda m: m.peak_mib)
            print(f"| {label} | {case.records:,} | {case.raw_bytes / 1e6:,.0f} | {_fmt_s(med)} | "
                  f"{', '.join(_fmt_s(t) for t in times)} | {peak.peak_mib:,.0f} | "
                  f"{peak.jvm_mib:,.0f} / {peak.python_mib:,.0f} | {case.records / med:,.0f} | "
                  f"{case.raw_bytes / 1e6 / med:.1f} |", flush=True)

    print("\n`records`: input records (bill rows for normalize; local + channel rows otherwise). Peak RSS: the "
          "whole process tree (JVM included), the largest of the runs.")
    for stage in ("reconcile", "reconcile-duckdb"):
        for base, name in (("spark-join", "plain Spark join"), ("pandas-merge", "pandas merge"),
                           ("duckdb-join", "plain DuckDB join")):
            ratios = [f"{medians[(stage, r)][0] / medians[(base, r)][0]:.1f}x at {r:,} keys"
                      for r in sizes if (stage, r) in medians and (base, r) in medians]
            if ratios:
                print(f"Ratio {STAGES[stage][0]} / {name}: {'; '.join(ratios)}")
    for stage in ("reconcile", "reconcile-duckdb"):
        for r in sizes:
            runs = engines.get((stage, r), [])
            if len(runs) != args.runs or ("duckdb-join", r) not in medians:
                continue
            engine = statistics.median(t - rep for t, rep in runs)
            join = medians[("duckdb-join", r)][0]
            print(f"- {STAGES[stage][0]} at {r:,} keys without its reports (the command less what its log gives "
                  f"report.html and report.xlsx, the same Python after either engine): median {_fmt_s(engine)} s "
                  f"(runs {', '.join(_fmt_s(t - rep) for t, rep in runs)}; reports "
                  f"{', '.join(_fmt_s(rep) for _, rep in runs)} s), {engine / join:.2f}x the plain DuckDB join")
    print("\nSeconds per million records (linear growth keeps this flat across scales):")
    for stage in args.stages:
        points = [(r, *medians[(stage, r)]) for r in sizes if (stage, r) in medians]
        if not points:
            continue
        per = "; ".join(f"{sec / (rec / 1e6):.2f} s/M at {r:,} keys" for r, sec, rec in points)
        steps = [f"{r0:,} -> {r1:,} keys: {n1 / n0:.1f}x the records took {t1 / t0:.1f}x the time"
                 for (r0, t0, n0), (r1, t1, n1) in zip(points, points[1:])]
        note = f" -- {'; '.join(steps)}" if steps else ""
        print(f"- {STAGES[stage][0]}: {per}{note}")
    print("\nSanity (reconcile output against the planted breaks):")
    for s in scales.values():
        for line in sanity(s):
            print(line)
    lines = [line for line in (agreement(s) for s in scales.values()) if line]
    if lines:
        print("\nEngines (the data files each engine published on the same inputs):")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
