"""A real HDFS and YARN on 127.0.0.1 for the tests: tools/minicluster's launcher, built with Maven.

``build()`` runs Maven once per version of the launcher's sources: the jars (Hadoop's minicluster, the
version pyspark ships) go into a cache folder outside the clone (``$RECON_HADOOP_CACHE``, default
``~/.cache/recon-pipeline/minicluster``), never into the repository. ``MiniCluster`` starts the launcher,
waits for its ``ready`` line, sends it fault commands (stop a DataNode, safe mode, a quota…) and stops it by
its pid.

    python -m tests.hadoop.cluster --work /tmp/hadoop      # a cluster by hand (Ctrl-C stops it)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
LAUNCHER = PROJECT / "tools" / "minicluster"
USER = "recon"  # the pipeline's HDFS user (HADOOP_USER_NAME); the launcher's own user is the superuser


class ClusterUnavailable(RuntimeError):
    """The test cluster cannot be built or started; the message names what is missing."""


def cache_root() -> Path:
    return Path(os.environ.get("RECON_HADOOP_CACHE") or Path.home() / ".cache" / "recon-pipeline" / "minicluster")


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in LAUNCHER.rglob("*") if p.is_file() and "target" not in p.parts):
        digest.update(path.relative_to(LAUNCHER).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build() -> str:
    """The launcher's Java classpath, building it with Maven the first time (a few MB of jars per version)."""
    folder = cache_root() / _sources_digest()
    classpath_file = folder / "classpath"
    if classpath_file.is_file():
        return classpath_file.read_text().strip()
    for tool, what in (("mvn", "Maven 3.8+ (Debian: apt-get install maven)"),
                       ("java", "Java 17 (Debian: apt-get install openjdk-17-jdk-headless)")):
        if shutil.which(tool) is None:
            raise ClusterUnavailable(f"the HDFS/YARN tests need {what} on PATH to build tools/minicluster")
    partial = folder.with_name(folder.name + f".part-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = ["mvn", "-q", "-B", "-f", str(LAUNCHER / "pom.xml"), "package", "dependency:copy-dependencies",
           f"-DoutputDirectory={partial / 'lib'}", f"-DbuildDirectory={partial / 'build'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        said = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(partial, ignore_errors=True)
        raise ClusterUnavailable(
            "Maven could not build the test HDFS/YARN launcher (tools/minicluster/pom.xml): it needs "
            "org.apache.hadoop:hadoop-client-minicluster:3.5.0 and its dependencies from Maven Central "
            "(https://repo.maven.apache.org/maven2; a proxy or mirror goes in ~/.m2/settings.xml). "
            f"Command: {' '.join(cmd)}\nMaven said:\n{said}")
    jars = sorted(str(folder / "lib" / p.name) for p in (partial / "lib").glob("*.jar"))
    classpath = os.pathsep.join([str(folder / "build" / "recon-minicluster-1.jar"), *jars])
    (partial / "classpath").write_text(classpath + "\n")
    try:
        partial.rename(folder)
    except OSError:  # another session built it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return (folder / "classpath").read_text().strip()


class MiniCluster:
    """HDFS (NameNode + ``datanodes`` DataNodes, replication 2) and, with ``yarn``, a ResourceManager and one
    NodeManager, on 127.0.0.1."""

    def __init__(self, work: Path, *, yarn: bool = True, datanodes: int = 2):
        self.work = Path(work)
        self.yarn = yarn
        self.datanodes = datanodes
        self.conf_dir = self.work / "conf"
        self.log_path = self.work / "minicluster.log"
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self._lines: list[str] = []
        self._cond = threading.Condition()

    # -- life ----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> "MiniCluster":
        classpath = build()
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work / "base", ignore_errors=True)
        java = shutil.which("java")
        env = dict(os.environ)
        env.setdefault("JAVA_HOME", str(Path(os.path.realpath(java)).parents[1]))
        env.pop("HADOOP_CONF_DIR", None)
        cmd = [java, "-Xmx1g", "-Djava.net.preferIPv4Stack=true", "-cp", classpath, "recon.minicluster.Launcher",
               "--base", str(self.work / "base"), "--conf-dir", str(self.conf_dir),
               "--datanodes", str(self.datanodes)] + (["--yarn"] if self.yarn else [])
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, cwd=self.work, start_new_session=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        line = self._next_line(timeout, starting=True)
        if not line.startswith("ready "):
            self.stop()
            raise ClusterUnavailable(f"the test cluster did not start: {line!r}; see {self.log_path}")
        self.info = json.loads(line[len("ready "):])
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # a few seconds to stop in order; the cluster's data is thrown away, so then it is killed
                self.proc.stdin.write(b"shutdown\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:  # by its pid (its process group: the JVM and anything it started)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()
        self.proc = None

    # -- use -----------------------------------------------------------------------------------------------
    @property
    def fs_uri(self) -> str:
        """hdfs://127.0.0.1:PORT"""
        return self.info["fs"]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that uses this cluster as the pipeline does (its HADOOP_CONF_DIR)."""
        env = dict(os.environ)
        env.update(HADOOP_CONF_DIR=str(self.conf_dir), HADOOP_USER_NAME=USER, **extra)
        return env

    @contextmanager
    def as_pipeline(self):
        """This process's environment as the pipeline's (``env()``) for the block: hdfs-native reads it when a
        ``Storage`` is made."""
        saved = {k: os.environ.get(k) for k in ("HADOOP_CONF_DIR", "HADOOP_USER_NAME")}
        os.environ.update(HADOOP_CONF_DIR=str(self.conf_dir), HADOOP_USER_NAME=USER)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def storage(self, root: str):
        """``core.storage.Storage`` of ``hdfs://…/root`` as the pipeline's user."""
        from core.storage import Storage

        with self.as_pipeline():
            return Storage(f"{self.fs_uri}/{root.strip('/')}")

    def make_root(self, root: str) -> str:
        """A folder ``/root`` owned by the pipeline's user (as an administrator makes one); its URI."""
        self.command(f"mkdir /{root.strip('/')} {USER} 755")
        return f"{self.fs_uri}/{root.strip('/')}"

    def command(self, line: str, timeout: float = 120) -> str:
        """Send one administrator command (see Launcher.java) and return its answer; raises on ``error``."""
        assert self.proc is not None and self.proc.poll() is None, "the test cluster is not running"
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._next_line(timeout)
        if not answer.startswith("ok"):
            raise RuntimeError(f"test cluster command {line!r} failed: {answer}")
        return answer

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the launcher's standard output --------------------------------------------------------------------
    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._lines.append("")  # end of output: the launcher exited
            self._cond.notify_all()

    def _next_line(self, timeout: float, starting: bool = False) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._lines:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClusterUnavailable(f"the test cluster did not answer in {timeout:.0f} s; see {self.log_path}"
                                             f"\n{self.log_tail()}")
                self._cond.wait(left)
            line = self._lines.pop(0)
        if line == "" and starting:
            raise ClusterUnavailable(f"the test cluster's launcher exited while starting; see {self.log_path}:\n"
                                     f"{self.log_tail()}")
        return line


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--no-yarn", action="store_true")
    args = parser.parse_args(argv)
    cluster = MiniCluster(args.work, yarn=not args.no_yarn).start()
    print(f"HDFS {cluster.fs_uri}  YARN {cluster.info.get('resourcemanager') or '-'}\n"
          f"export HADOOP_CONF_DIR={cluster.conf_dir} HADOOP_USER_NAME={USER}\n"
          "commands (stop-datanode 0, safemode enter, space-quota /recon 1000, …) on standard input", flush=True)
    try:
        for line in sys.stdin:
            if line.strip():
                try:
                    print(cluster.command(line.strip()), flush=True)
                except RuntimeError as exc:
                    print(exc, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
