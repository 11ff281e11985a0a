"""The night submitted to a real YARN (tests/hadoop): client mode through ``bin/recon-cron --spark-submit``, cluster
mode with the packed driver environment, both as the README writes them, both giving the bytes of ``file://``.

The two submissions run at once (most of each is waiting for containers), on roots of their own: cluster mode
backfills both demo days, client mode runs the first day as cron runs a night (each YARN application costs about
a minute here, so the second day is left to cluster mode and to tests/test_hdfs.py). The YARN ResourceManager
must list both applications as finished in queue ``recon``, so the test proves the runs were YARN's, not a local
Spark's: the demo conf says ``local[2]`` for cluster mode, and spark-submit's ``--master yarn`` must win.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.hadoop.cluster import cache_root
from tests.hadoop.demo import DAYS, data_files, differences, hdfs_demo
from tests.hadoop.fixtures import spark_home

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parent.parent
D1, D2 = (d.isoformat() for d in DAYS)


def _yarn_apps(hadoop) -> list[dict]:
    """The ResourceManager's applications (its REST API, as `yarn application -list` reads it)."""
    rm_web = re.search(r"<name>yarn.resourcemanager.webapp.address</name><value>([^<]+)</value>",
                       (hadoop.conf_dir / "yarn-site.xml").read_text()).group(1)
    with urllib.request.urlopen(f"http://{rm_web}/ws/v1/cluster/apps", timeout=10) as resp:
        return (json.loads(resp.read()).get("apps") or {}).get("app") or []


@pytest.mark.timeout(1200)
def test_client_and_cluster_mode_on_yarn_give_the_bytes_of_a_file_root(hadoop, spark_jars_on_hdfs, file_reference,
                                                                        tmp_path):
    from recon.packaging import build_env, build_pyfiles_zip

    pyfiles = build_pyfiles_zip(tmp_path / "dist")
    driver_env = build_env(cache_root().parent / "driver-env")    # the same dependencies give the same file
    submit_args = ["--queue", "recon", "--conf", f"spark.yarn.archive={spark_jars_on_hdfs}",
                   "--num-executors", "1", "--executor-memory", "512m", "--py-files", str(pyfiles)]
    env = hadoop.env(YARN_CONF_DIR=str(hadoop.conf_dir), SPARK_HOME=str(spark_home()))

    # client mode: the cron host's bin/recon-cron, the conf naming YARN as its master
    client = tmp_path / "client"
    client_conf = hdfs_demo(hadoop, client, "yarn-client", work_dir=str(tmp_path / "work-client"))
    client_conf.write_text(client_conf.read_text().replace('"spark.master" = "local[2]"', '"spark.master" = "yarn"'))
    cron_env = dict(env, RECON_SPARK_SUBMIT_ARGS=" ".join(submit_args))
    client_cmd = [str(PROJECT / "bin" / "recon-cron"), "--conf", str(client_conf), "--spark-submit", "--date", D1,
                  "--lock-file", str(tmp_path / "cron.lock")]

    # cluster mode: the driver in a YARN container, with the packed environment and the conf folder shipped
    cluster = tmp_path / "cluster"
    cluster_conf = hdfs_demo(hadoop, cluster, "yarn-cluster", work_dir="work", absolute_inbox=True)
    conf_zip = shutil.make_archive(str(tmp_path / "conf"), "zip", root_dir=cluster_conf.parent)  # zip -r conf.zip .
    cluster_cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", "yarn", "--deploy-mode", "cluster",
                   *submit_args, "--driver-memory", "1g", "--driver-java-options", "-XX:-DontCompileHugeMethods",
                   "--archives", f"{driver_env}#env,{conf_zip}#conf",
                   "--conf", "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./env/bin/python",
                   "jobs/run.py", "backfill", "--conf", "conf/pipeline.toml", "--from", D1, "--to", D2]

    logs = {"cluster": (tmp_path / "cluster.log").open("w+"), "client": (tmp_path / "client.log").open("w+")}
    in_cluster = subprocess.Popen(cluster_cmd, cwd=PROJECT, env=env, stdout=logs["cluster"],
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        done = subprocess.run(client_cmd, cwd=PROJECT, env=cron_env, stdout=logs["client"], stderr=subprocess.STDOUT,
                              timeout=600)
        assert done.returncode == 0, _tail(logs["client"])
        assert in_cluster.wait(timeout=600) == 0, _tail(logs["cluster"])
    finally:
        if in_cluster.poll() is None:
            in_cluster.kill()

    apps = _yarn_apps(hadoop)
    finished = [a for a in apps if a["finalStatus"] == "SUCCEEDED" and a["queue"].endswith("recon")]
    assert len(finished) == 2, [(a["name"], a["queue"], a["finalStatus"]) for a in apps]
    assert differences(data_files(hadoop.storage("yarn-cluster")), file_reference) == []
    first_day = {path: data for path, data in file_reference.items() if f"/{D1}/" in path}
    assert differences(data_files(hadoop.storage("yarn-client"), DAYS[:1]), first_day) == []


def _tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-5000:]
