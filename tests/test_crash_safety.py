"""Kill-and-rerun (reliability.md): SIGKILL `recon run` mid-write, then check what readers see.

Each run is a real `python -m recon.cli run` subprocess in its own session,
so ``os.killpg(SIGKILL)`` takes down the Python driver, the Spark JVM and
its Python workers at once, as a power cut or an OOM kill would. No mocks.

* a first run of a date killed while Spark writes: nothing half-written is
  published, and a re-run publishes the same bytes as a clean run of an
  identical demo in another folder;
* a re-run of an already published date killed while Spark writes: the
  published result is untouched (same bytes, same run id, ``_SUCCESS``).

While a run is going, every poll also checks the reader's invariant: the
date folder is either absent or complete (holds ``_SUCCESS``).

The hidden ``.staging-*`` folder of a killed run is invisible to readers
(names starting with ``.`` are skipped by Spark's reader and by the
pipeline's own date listing) and the next run removes it under the run
lock (``Storage.recover``).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 20)
D = DAY.isoformat()
# Large enough that Spark's three CSV writes take seconds, small enough to keep the runs short; most of a
# write is Spark's per-job overhead, so the window to catch exists at any size (one poll is 20 ms).
ORDERS_PER_DAY = 3000
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")
PUBLISHED = {*DATA_FILES, "summary.json", "report.html", "report.xlsx", "_SUCCESS"}
RUN_TIMEOUT = 600      # one whole run (JVM start included) on a busy 2-core machine
POLL = 0.02


# -- helpers -------------------------------------------------------------------------------------------------
def _make_demo(out: Path) -> Path:
    from recon.demo import Demo

    Demo(DAY, 2, orders_per_day=ORDERS_PER_DAY).build().write(out)
    return out


class Run:
    """One `recon run` subprocess in its own session (process group = the driver, the JVM, its workers)."""

    def __init__(self, demo: Path, log: Path):
        self.demo, self.log_path = demo, log
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recon.cli", "run", "--conf", str(demo / "conf" / "pipeline.toml"),
             "--date", D],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.started = time.monotonic()

    def tail(self, n: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=max(1.0, timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"`recon run` in {self.demo} did not finish within {timeout}s; log tail:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group and wait until none of its processes is left running."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while (alive := _live_members(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"processes of the killed run still running (pids {alive}): a JVM could still write"

    def close(self) -> None:
        if self.proc.poll() is None or _live_members(self.proc.pid):
            self.kill()
        self.log.close()


def _live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _recon(demo: Path) -> Path:
    return demo / "root" / "recon"


def _stagings(demo: Path) -> list[Path]:
    parent = _recon(demo)
    return sorted(parent.glob(f".staging-{D}-*")) if parent.is_dir() else []


def _reader_view(demo: Path, *, must_exist: bool) -> None:
    """What a reader of {root}/recon/{D} sees right now: absent (if allowed) or complete, never partial."""
    folder = _recon(demo) / D
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        assert not must_exist, f"{folder} vanished while a run was going: the published result was withdrawn"
        return
    assert "_SUCCESS" in names, f"a reader sees {folder} without _SUCCESS: {sorted(names)}"


def _kill_when(run: Run, ready, what: str, *, date_must_exist: bool) -> Path:
    """Poll until ``ready(staging)`` holds for the run's staging folder, then SIGKILL the run.

    Returns the staging folder of the killed run. Fails clearly if the run ends, or never gets there.
    """
    deadline = run.started + RUN_TIMEOUT
    while True:
        _reader_view(run.demo, must_exist=date_must_exist)
        if run.proc.poll() is not None:
            pytest.fail(f"the run ended (exit {run.proc.returncode}) before {what}: the write phase was too fast "
                        f"to catch; raise ORDERS_PER_DAY. Log tail:\n{run.tail()}")
        staged = _stagings(run.demo)
        if staged and ready(staged[0]):
            run.kill()
            return staged[0]
        if time.monotonic() > deadline:
            run.kill()
            pytest.fail(f"no {what} within {RUN_TIMEOUT}s (staging folders: {staged}); log tail:\n{run.tail()}")
        time.sleep(POLL)


def _spark_is_writing(staged: Path) -> bool:
    """Spark has started writing into the staging folder (its first _parts_ folder, or a file, is there).

    Once true it stays true until the swap, seconds later, so a 20 ms poll cannot miss it.
    """
    return bool(_listing(staged))


def _first_file_written(staged: Path) -> bool:
    """discrepancies.csv is in place; corrections.csv and open_items.csv are still to be written."""
    return "discrepancies.csv" in {p.name for p in _listing(staged)}


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:  # swapped in (or deleted) between two polls
        return []


def _run_to_completion(run: Run) -> None:
    """Wait for a run while checking the reader's view on every poll; it must exit 0."""
    while run.proc.poll() is None:
        _reader_view(run.demo, must_exist=False)
        if time.monotonic() - run.started > RUN_TIMEOUT:
            run.wait(0)  # fails with the log tail
        time.sleep(POLL)
    assert run.proc.returncode == 0, f"`recon run` exited {run.proc.returncode}; log tail:\n{run.tail()}"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A clean, never-killed run of the demo, started at once so it overlaps the first test's runs.

    Returns a function that waits for it and gives its demo folder.
    """
    base = tmp_path_factory.mktemp("clean")
    run = Run(_make_demo(base / "demo"), base / "run.log")
    done = []

    def finished() -> Path:
        if not done:
            _run_to_completion(run)
            done.append(run.demo)
        return done[0]

    yield finished
    run.close()


@pytest.fixture
def runs():
    """Every Run a test starts; whatever is still running at the end is killed (process group)."""
    started: list[Run] = []
    yield started
    for run in started:
        run.close()


# -- tests ---------------------------------------------------------------------------------------------------
def test_a_run_killed_mid_write_publishes_nothing_and_a_rerun_equals_a_clean_run(tmp_path, clean_run, runs):
    demo = _make_demo(tmp_path / "demo")
    runs.append(killed := Run(demo, tmp_path / "killed.log"))
    staged = _kill_when(killed, _spark_is_writing, "Spark writing into the staging folder", date_must_exist=False)
    assert killed.proc.returncode == -signal.SIGKILL

    # the kill landed mid-write (the staging folder was never swapped in) and readers see no date at all
    assert staged.is_dir() and not (staged / "_SUCCESS").exists(), f"{staged}: the kill came too late"
    _reader_view(demo, must_exist=False)
    assert not (_recon(demo) / D).exists(), "a date folder appeared although the run was killed before its swap"
    visible = [p.name for p in _recon(demo).iterdir() if not p.name.startswith(".")]
    assert visible == [], f"entries visible to readers after the kill: {visible}"

    # the same command again runs to completion, with readers never seeing a partial date
    runs.append(rerun := Run(demo, tmp_path / "rerun.log"))
    _run_to_completion(rerun)

    folder = _recon(demo) / D
    assert set(os.listdir(folder)) == PUBLISHED, "the published folder holds leftovers of Spark's write"
    reference = clean_run() / "root" / "recon" / D
    assert set(os.listdir(reference)) == PUBLISHED
    for name in DATA_FILES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs from a clean run"

    # readers see only the date, and the next run cleaned up what the killed run left behind
    entries = sorted(p.name for p in _recon(demo).iterdir())
    assert entries == [D], f"leftovers beside the published date: {entries} (killed run's staging: {staged.name})"
    standard = demo / "root" / "standard" / "wechatpay"
    assert [p.name for p in standard.iterdir() if not p.name.startswith(".")] == [D]
    assert (standard / D / "_SUCCESS").is_file()


def test_a_rerun_killed_mid_write_leaves_the_published_result_untouched(tmp_path, clean_run, runs):
    demo = clean_run()
    folder = _recon(demo) / D
    before = _snapshot(folder)
    assert set(before) == PUBLISHED

    runs.append(killed := Run(demo, tmp_path / "killed.log"))
    staged = _kill_when(killed, _first_file_written, "discrepancies.csv in the staging folder",
                        date_must_exist=True)
    assert killed.proc.returncode == -signal.SIGKILL

    assert staged.is_dir() and not (staged / "_SUCCESS").exists(), f"{staged}: the kill came too late"
    retired = sorted(p.name for p in _recon(demo).glob(".retired-*"))
    assert not retired, f"the published result was moved aside ({retired}) although the kill came before the swap"
    # the old result is still there, complete, byte for byte (summary.json too: same run id)
    _reader_view(demo, must_exist=True)
    assert _snapshot(folder) == before
    assert [p.name for p in _recon(demo).iterdir() if not p.name.startswith(".")] == [D]
