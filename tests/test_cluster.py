"""The reconciliation on a real Spark standalone cluster gives the same bytes as on local mode.

A master and one worker (1 core, 1g) from the pip package's own scripts listen
on 127.0.0.1; the job is submitted with ``spark-submit --master spark://…``
exactly as on a cluster, while the demo's conf says ``local[2]`` — so the test
also proves that under spark-submit the master comes from spark-submit (the
master's web UI must list the finished application).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from recon.childrun import stop_process_group

PROJECT = Path(__file__).resolve().parent.parent
DAY = "2026-11-20"
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")

pytestmark = pytest.mark.slow


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _master_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as resp:
        return json.loads(resp.read().decode("utf-8"))


@pytest.fixture
def standalone_cluster(tmp_path):
    """(master URL, master web UI port, worker work dir) of a running 1-worker standalone cluster."""
    spark_home = _spark_home()
    spark_class = spark_home / "bin" / "spark-class"
    if not os.access(spark_class, os.X_OK) or shutil.which("java") is None:
        pytest.skip("needs the pyspark package's bin/spark-class and Java")
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    work = tmp_path / "worker-work"   # not $SPARK_HOME/work: never write into the installed package
    env = dict(os.environ, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(work),
               PYSPARK_PYTHON=sys.executable)
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs = []
    try:
        # own process groups, so teardown stops the JVMs (and anything they started) by pid
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)],
            stdout=(logs / "master.log").open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True))
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
             "--memory", "1g", "--webui-port", str(worker_ui), "--work-dir", str(work), f"spark://127.0.0.1:{port}"],
            stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True))
        deadline = time.monotonic() + 120
        while True:
            try:
                if any(w.get("state") == "ALIVE" for w in _master_state(ui).get("workers", [])):
                    break
            except OSError:
                pass   # the master's UI is not up yet
            for p in procs:
                if p.poll() is not None:
                    pytest.fail(f"a cluster process exited with {p.returncode}:\n"
                                f"{(logs / 'master.log').read_text(errors='replace')[-3000:]}\n"
                                f"{(logs / 'worker.log').read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no worker registered with the master within 120 s")
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", ui, work
    finally:
        for p in reversed(procs):
            stop_process_group(p)


def test_cluster_run_equals_local_run(tmp_path, standalone_cluster):
    from recon.demo import Demo
    from recon.packaging import build_pyfiles_zip

    master, ui, work = standalone_cluster
    demo = Demo(dt.date(2026, 11, 20), 1, orders_per_day=20).build()
    on_cluster, on_local = tmp_path / "cluster", tmp_path / "local"
    demo.write(on_cluster)
    demo.write(on_local)
    pyfiles = build_pyfiles_zip(tmp_path / "dist")   # what a cluster-mode driver would import our code from

    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=str(_spark_home()))
    submit = [str(_spark_home() / "bin" / "spark-submit"), "--master", master, "--executor-memory", "512m",
              "--py-files", str(pyfiles), "jobs/run.py",
              "run", "--conf", str(on_cluster / "conf" / "pipeline.toml"), "--date", DAY]
    local = [sys.executable, "-m", "recon.cli", "run", "--conf", str(on_local / "conf" / "pipeline.toml"),
             "--date", DAY]
    # Both at once: most of each run is JVM start-up and waiting, so this roughly halves the test's time.
    jobs = {name: subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
            for name, cmd in (("cluster", submit), ("local", local))}
    outputs = {}
    try:
        for name, proc in jobs.items():
            outputs[name] = proc.communicate(timeout=420)[0].decode("utf-8", "replace")
    finally:
        for proc in jobs.values():
            if proc.poll() is None:
                stop_process_group(proc)
    for name, proc in jobs.items():
        assert proc.returncode == 0, f"{name} run failed:\n{outputs[name][-4000:]}"

    # It really ran on the cluster (the demo conf says local[2]; spark-submit's --master must win) ...
    apps = _master_state(ui)
    # (this cluster is private to the test, so any finished application is ours; its name is "recon" today,
    # "run.py" if get_spark ever lets spark-submit's default name win)
    finished = [a for a in apps.get("completedapps", []) if a.get("state") == "FINISHED"]
    assert finished, f"no finished application on the master: {apps.get('completedapps')}"
    # ... and an executor was launched on the worker for it.
    assert [p for p in work.glob("app-*/*") if p.is_dir()], "the worker never started an executor"

    for name in DATA_FILES:
        a = (on_cluster / "root" / "recon" / DAY / name).read_bytes()
        b = (on_local / "root" / "recon" / DAY / name).read_bytes()
        assert a == b, f"{name} differs between the cluster run and the local run"
    assert (on_cluster / "root" / "recon" / DAY / "_SUCCESS").exists()
