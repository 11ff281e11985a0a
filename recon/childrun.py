"""The cron job's child run: ``recon run`` in this interpreter or through ``spark-submit jobs/run.py run``,
in its own process group, its output relayed to stderr and its last lines kept for the alert."""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recon.alerts import OpsConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
# What recon prints when it fails: these lines make the alert's message.
_ERROR_LINE = re.compile(r"^(recon: error|!! |.*already running)")


def spark_home() -> str:
    """``$SPARK_HOME``, else the installed pyspark package (which ships bin/spark-submit)."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise OpsConfigError("pyspark is not installed and SPARK_HOME is not set")
    return os.path.dirname(spec.origin)


def build_command(conf_file: Path, day: dt.date, *, channels: list[str] | None, spark_submit: bool,
                  submit_args: list[str], conf_spark: dict[str, str]) -> list[str]:
    """The child's argv: ``recon run`` in this interpreter, or ``spark-submit jobs/run.py run``.

    Under spark-submit the driver JVM is already started when our code reads
    the conf, so the settings that must be known before it starts (master,
    driver memory, driver JVM options) are passed on spark-submit's command
    line, taken from the conf's ``[spark]`` table (or the job's defaults)
    unless ``submit_args`` already gives them.
    """
    recon_args = ["run", "--conf", str(conf_file), "--date", day.isoformat()]
    for name in channels or []:
        recon_args += ["--channel", name]
    if not spark_submit:
        return [sys.executable, "-m", "recon.cli", *recon_args]
    cmd = [os.path.join(spark_home(), "bin", "spark-submit")]
    given = " ".join(submit_args)
    if "--master" not in given and conf_spark.get("spark.master"):
        cmd += ["--master", conf_spark["spark.master"]]
    if "--driver-memory" not in given and "spark.driver.memory" not in given and conf_spark.get("spark.driver.memory"):
        cmd += ["--driver-memory", conf_spark["spark.driver.memory"]]
    if "--driver-java-options" not in given and "spark.driver.extraJavaOptions" not in given:
        from jobs.spark import DEFAULTS
        cmd += ["--driver-java-options", conf_spark.get("spark.driver.extraJavaOptions",
                                                        DEFAULTS["spark.driver.extraJavaOptions"])]
    cmd += submit_args
    cmd += [str(PROJECT_DIR / "jobs" / "run.py"), *recon_args]
    return cmd


@dataclass
class ChildResult:
    exit_code: int
    tail: list[str]
    seconds: float
    timed_out: bool = False


def run_child(cmd: list[str], *, env: dict[str, str], timeout: float | None) -> ChildResult:
    """Run ``cmd`` in its own process group, relay its output to stderr, keep the last lines.

    Its own process group, so a timeout (or our own SIGTERM) stops the whole
    tree: spark-submit's JVM and the Python driver under it.
    """
    t0 = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=400)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_DIR),
                            start_new_session=True)

    def relay():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
        sys.stderr.flush()

    reader = threading.Thread(target=relay, name="child-output", daemon=True)
    reader.start()
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum, frame):  # cron or an operator stops us: stop the run too, then report
        stop_process_group(proc)

    signal.signal(signal.SIGTERM, forward)
    timed_out = False
    try:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process_group(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    reader.join(timeout=10)
    code = proc.returncode
    if code is None or code < 0 or timed_out:
        code = 1  # killed: "anything else" in DESIGN.md's statuses
    return ChildResult(code, list(tail), round(time.monotonic() - t0, 3), timed_out)


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a process group we started: TERM, then KILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def error_message(tail: list[str], limit: int = 2000) -> str:
    """The lines in which recon explained its failure (channel, date, file, what to do), joined."""
    lines = [ln.strip() for ln in tail if _ERROR_LINE.match(ln.strip())]
    if not lines:
        lines = [ln.strip() for ln in tail if ln.strip()][-5:]
    text = "\n".join(dict.fromkeys(lines))  # recon prints some failures twice (log + summary)
    return text[-limit:]
