"""The whole night on a real HDFS: the same bytes as on ``file://``, and the faults an HDFS root brings.

One test cluster per session (tests/hadoop/fixtures.py). The runs are ``recon`` processes with the cluster's
``HADOOP_CONF_DIR`` and ``HADOOP_USER_NAME``, as cron starts them; the Python side reaches HDFS through
hdfs-native, Spark through its own Hadoop client. Each fault is caused as an administrator (or a failing
machine) would cause it, on a root that already holds both days' results, and each test checks that those
results are still whole afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hadoop.demo import DAYS, data_files, differences, hdfs_demo
from tests.hadoop.fixtures import run_recon

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parent.parent
D1, D2 = (d.isoformat() for d in DAYS)


class Night:
    """A root on the test HDFS with both demo days reconciled by a ``recon backfill`` process."""

    def __init__(self, cluster, tmp: Path, root: str):
        self.cluster, self.root = cluster, root
        self.conf = hdfs_demo(cluster, tmp / "demo", root, work_dir=str(tmp / "work"))
        self.storage = cluster.storage(root)
        self.env = cluster.env()

    def recon(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return run_recon([args[0], "--conf", str(self.conf), *args[1:]], self.env, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        """A ``recon`` process in its own process group (its JVM with it), not waited for."""
        return subprocess.Popen([sys.executable, "-m", "recon.cli", args[0], "--conf", str(self.conf), *args[1:]],
                                cwd=PROJECT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)

    def result(self, day: str) -> dict[str, bytes]:
        """Every file of the published result of ``day`` (the reports and summary too)."""
        return {name: self.storage.read_bytes("recon", day, name) for name in self.storage.list("recon", day)}

    def leftovers(self) -> list[str]:
        return [n for n in self.storage.list("recon") if n.startswith((".staging-", ".retired-"))]

    def start_writing(self, *args: str, timeout: float = 240) -> subprocess.Popen:
        """``start(*args)``, returning once that run has begun writing its result: a staging folder that was not
        there before it started (a refused run may have left one, which the new run cleans up)."""
        earlier = set(self.leftovers())
        proc = self.start(*args)
        deadline = time.monotonic() + timeout
        while not {n for n in self.leftovers() if n.startswith(".staging-")} - earlier:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it wrote its result:\n{proc.stdout.read()[-3000:]}")
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the run did not begin writing its result in time")
            time.sleep(0.1)
        return proc


@pytest.fixture(scope="module")
def night(hadoop, tmp_path_factory, request) -> Night:
    night = Night(hadoop, tmp_path_factory.mktemp("hdfs-night"), "night")
    backfill = night.start("backfill", "--from", D1, "--to", D2)
    try:
        request.getfixturevalue("file_reference")  # meanwhile, in this process: most of each run is waiting
        output = backfill.communicate(timeout=600)[0]
    finally:
        if backfill.poll() is None:
            os.killpg(backfill.pid, signal.SIGKILL)
    assert backfill.returncode == 0, f"the backfill on HDFS failed:\n{output[-4000:]}"
    return night


def test_a_backfill_on_hdfs_gives_the_bytes_of_the_same_backfill_on_file(night, file_reference):
    on_hdfs = data_files(night.storage)
    assert len(on_hdfs) >= 3 * len(DAYS) + 2 * len(DAYS)   # results and at least the two channels' standard files
    assert differences(on_hdfs, file_reference) == []
    for day in (D1, D2):
        assert night.storage.is_file("recon", day, "_SUCCESS")
        assert night.storage.is_file("recon", day, "report.xlsx")
    assert night.leftovers() == []


def _refused(night: Night, words: str) -> subprocess.CompletedProcess:
    """Re-run D2's reconcile, which must fail with exit 1 saying ``words``, leaving D2's result as it was."""
    before = night.result(D2)
    done = night.recon("reconcile", "--date", D2, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert words in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert night.result(D2) == before
    return done


def test_the_namenode_in_safe_mode_is_told_and_nothing_changes(night, hadoop):
    hadoop.command("safemode enter")
    try:
        done = _refused(night, "the HDFS NameNode is in safe mode")
    finally:
        hadoop.command("safemode leave")
    assert "hdfs dfsadmin -safemode get" in done.stderr


def test_permission_denied_on_the_root_is_told_and_nothing_changes(night, hadoop):
    hadoop.command(f"chmod /{night.root} 555")
    try:
        done = _refused(night, "permission denied")
    finally:
        hadoop.command(f"chmod /{night.root} 755")
    assert f"/{night.root}/" in done.stderr          # the file it could not write
    assert "HADOOP_USER_NAME" in done.stderr          # and who needs the access


def test_a_space_quota_exceeded_while_publishing_is_told_and_nothing_changes(night, hadoop):
    # HDFS reserves a whole block per replica for each new block, so a quota of what the root holds now refuses
    # the first block the run writes: the result's files
    hadoop.command(f"space-quota /{night.root} 1")
    try:
        _refused(night, "quota")
    finally:
        hadoop.command(f"space-quota /{night.root} none")
    # what the refused run left (its staging folder) is cleaned up by the next run: the tests below check it


def test_a_datanode_stopped_while_the_job_writes_its_result(night, hadoop, file_reference):
    proc = night.start_writing("reconcile", "--date", D2)
    try:
        hadoop.command("stop-datanode 0")
        output = proc.communicate(timeout=400)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        hadoop.command("restart-datanode 0")
    # the writes go on with the other replica (replication 2, one DataNode left)
    assert proc.returncode == 0, output[-4000:]
    assert differences(data_files(night.storage), file_reference) == []
    assert night.leftovers() == []


def test_kill_9_while_publishing_keeps_the_previous_result_and_the_next_run_cleans_up(night, file_reference):
    before = night.result(D2)
    proc = night.start_writing("reconcile", "--date", D2)
    try:
        time.sleep(1.0)                                   # well into the writing of the result
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert night.result(D2) == before                     # never a partial date folder
    assert any(n.startswith(".staging-") for n in night.leftovers())
    # the killed run still holds the root's lock (its lease lapses only after a minute); the next run, on the same
    # host, sees that the holder's process is gone and takes the lock over at once
    done = night.recon("reconcile", "--date", D2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert night.leftovers() == []
    assert differences(data_files(night.storage), file_reference) == []


# -- the storage helper's guarantees on HDFS, without Spark ---------------------------------------------------

def test_a_folder_renamed_onto_an_existing_folder_is_refused_not_moved_inside(hadoop):
    hadoop.make_root("renames")
    storage = hadoop.storage("renames")
    storage.write_bytes(b"new", "staged", "x.csv")
    storage.write_bytes(b"old", "final", "y.csv")
    with pytest.raises(OSError):
        storage.move("staged", "final")          # HDFS's old rename would have made final/staged/x.csv
    assert storage.list("final") == ["y.csv"] and storage.list("staged") == ["x.csv"]
    storage.swap_in("staged", "final")           # the publish: the old folder aside, the new one in, the old gone
    assert storage.list("final") == ["x.csv"] and storage.read_bytes("final", "x.csv") == b"new"
    assert storage.list("") == ["final"]


def test_files_written_read_and_appended_on_hdfs_through_the_storage_helper(hadoop):
    hadoop.make_root("files")
    storage = hadoop.storage("files")
    body = bytes(range(256)) * 40_000                   # 10 MB: several writes through the spool
    storage.write_bytes(body, "a", "b.bin")
    assert storage.sha256("a", "b.bin") == (hashlib.sha256(body).hexdigest(), len(body))
    with storage.fs.open_append_stream(storage.path("a", "b.bin")) as out:
        out.write(b"tail")
    assert storage.size("a", "b.bin") == len(body) + 4
    with storage.open_read("a", "b.bin") as fh:               # read by line, as the normalizers read
        assert sum(len(line) for line in fh) == len(body) + 4
    storage.copy("a/b.bin", "c/d.bin")
    assert storage.read_bytes("c", "d.bin") == body + b"tail"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a", "missing.csv")
    assert storage.list("") == ["a", "c"] and not storage.exists("e")


def test_recover_puts_back_a_result_left_aside_by_a_run_killed_between_the_two_renames(hadoop):
    hadoop.make_root("recover")
    storage = hadoop.storage("recover")
    storage.write_bytes(b"whole", "recon", ".retired-2026-11-21-0123456789ab", "discrepancies.csv")
    storage.write_bytes(b"half", "recon", ".staging-2026-11-21-ba9876543210", "discrepancies.csv")
    storage.recover("recon")
    assert storage.list("recon") == ["2026-11-21"]
    assert storage.read_bytes("recon", "2026-11-21", "discrepancies.csv") == b"whole"


def test_the_lock_on_an_hdfs_root_is_exclusive_names_its_holder_and_is_taken_over_when_the_holder_died(hadoop):
    hadoop.make_root("locks")
    first = hadoop.storage("locks").root_lock("recon run")
    assert first.try_acquire()
    second = hadoop.storage("locks").root_lock("recon backfill")   # another client, as another run would be
    assert not second.try_acquire()
    assert f"pid {os.getpid()} (recon run)" in second.holder
    first.release()
    assert second.try_acquire()
    second.release()

    # a holder killed with -9 keeps its lease until the NameNode's soft limit (a minute); on its own host the next
    # run sees that its process is gone and recovers the lease at once
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from core.storage import Storage\n"
         f"lock = Storage({hadoop.fs_uri + '/locks'!r}).root_lock('recon run')\n"
         "assert lock.try_acquire()\nprint('held', flush=True)\ntime.sleep(600)"],
        cwd=PROJECT, env=hadoop.env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not hadoop.storage("locks").root_lock("recon run").try_acquire(wait_recovery=0)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    started = time.monotonic()
    third = hadoop.storage("locks").root_lock("recon run")
    assert third.try_acquire(), third.holder
    assert time.monotonic() - started < 20
    third.release()
