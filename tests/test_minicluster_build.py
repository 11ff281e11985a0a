"""The test HDFS/YARN's build fails in words when Maven or Maven Central is missing (tests/hadoop/cluster.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.hadoop import cluster


def test_without_maven_on_path_the_build_names_maven(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_HADOOP_CACHE", str(tmp_path / "cache"))   # nothing built here yet
    bin_dir = tmp_path / "bin"                                           # java, but no mvn
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(os.path.realpath(shutil.which("java")))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(cluster.ClusterUnavailable, match=r"Maven 3\.8\+ \(Debian: apt-get install maven\)"):
        cluster.build()


@pytest.mark.timeout(180)
def test_with_maven_central_unreachable_the_build_names_the_artifact_and_the_repository(tmp_path, monkeypatch):
    if shutil.which("mvn") is None:
        pytest.fail("mvn is needed for the HDFS/YARN tests (Debian: apt-get install maven)")
    monkeypatch.setenv("RECON_HADOOP_CACHE", str(tmp_path / "cache"))
    # an empty local repository, and every download through a proxy on a closed port: Central cannot be reached
    monkeypatch.setenv("MAVEN_OPTS", f"-Dmaven.repo.local={tmp_path / 'm2'} -Dhttps.proxyHost=127.0.0.1 "
                                     "-Dhttps.proxyPort=9 -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9")
    with pytest.raises(cluster.ClusterUnavailable) as caught:
        cluster.build()
    message = str(caught.value)
    assert "org.apache.hadoop:hadoop-client-minicluster:3.5.0" in message
    assert "https://repo.maven.apache.org/maven2" in message and "settings.xml" in message
    assert not list((tmp_path / "cache").glob("*/classpath"))           # nothing half-built is kept
