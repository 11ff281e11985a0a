"""pytest plugin: one real HDFS + YARN per test session (``hadoop``) and Spark's jars on it (``spark_jars_on_hdfs``).

Imported by tests/conftest.py. Maven fetches the cluster's jars into a cache folder the first time (see
tests/hadoop/cluster.py); when that cannot happen the tests fail with what is missing, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.hadoop.cluster import USER, ClusterUnavailable, MiniCluster, cache_root


@pytest.fixture(scope="session")
def hadoop(tmp_path_factory) -> MiniCluster:
    """HDFS (a NameNode, 2 DataNodes, replication 2) and YARN (a ResourceManager, one NodeManager) on 127.0.0.1."""
    cluster = MiniCluster(tmp_path_factory.mktemp("hadoop"), yarn=True)
    started = time.monotonic()
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        pytest.fail(f"the HDFS/YARN tests need the test cluster: {exc}", pytrace=False)
    print(f"\n[hadoop] HDFS {cluster.fs_uri}, YARN {cluster.info.get('resourcemanager')}: "
          f"up in {time.monotonic() - started:.0f} s", file=sys.stderr)
    # What this process writes on the cluster (the demo's local orders, say) it writes as the pipeline's user, as
    # the order system's export would: hdfs-native takes the user when it first connects, not when it is made.
    saved_user = os.environ.get("HADOOP_USER_NAME")
    os.environ["HADOOP_USER_NAME"] = USER
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved_user is None:
            os.environ.pop("HADOOP_USER_NAME", None)
        else:
            os.environ["HADOOP_USER_NAME"] = saved_user


def spark_home() -> Path:
    """Where spark-submit is: the cron wrapper's own answer ($SPARK_HOME, else the pyspark package)."""
    from recon.childrun import spark_home as found

    return Path(found()).resolve()


@pytest.fixture(scope="session")
def spark_jars_on_hdfs(hadoop) -> str:
    """``spark.yarn.archive``: Spark's jars as one stored zip on the cluster (what the README tells production to
    do once per Spark version, instead of spark-submit uploading 460 MB at every submission)."""
    import pyspark

    local = cache_root().parent / f"spark-jars-{pyspark.__version__}.zip"
    if not local.is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + f".part-{os.getpid()}")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zf:
            for jar in sorted((Path(pyspark.__file__).resolve().parent / "jars").glob("*.jar")):
                zf.write(jar, jar.name)
        partial.rename(local)
    apps = hadoop.make_root("apps")
    storage = hadoop.storage("apps")
    with storage.open_write("spark-jars.zip") as out, local.open("rb") as src:
        shutil.copyfileobj(src, out, 8 << 20)
    return f"{apps}/spark-jars.zip"


def run_recon(args: list[str], env: dict[str, str], *, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m recon.cli ARGS`` as cron would run it (its own process, its own JVM)."""
    project = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "recon.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def file_reference(tmp_path_factory, spark) -> dict[str, bytes]:
    """The demo's two days reconciled on a ``file://`` root (in this process's Spark): the bytes every HDFS and
    YARN run must give."""
    from core.storage import Storage
    from tests.conftest import run_cli
    from tests.hadoop.demo import DAYS, data_files, write_demo

    out = tmp_path_factory.mktemp("file-reference")
    conf = write_demo(out)
    code = run_cli("backfill", "--conf", str(conf), "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(),
                   spark=spark)
    assert code == 0, "the file:// reference backfill failed"
    return data_files(Storage((out / "root").resolve().as_uri()))
