"""The demo on the test HDFS: the same days as tests/conftest's demo, with ``root`` on ``hdfs://``.

The local orders (``{root}/local/D/orders.csv``) are put on HDFS as an order system's export job would; the
statements stay in the local inbox the demo's ``localdir`` connector reads, so the download stage lands them on
HDFS itself.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.hadoop.cluster import MiniCluster

DAY1 = dt.date(2026, 11, 20)
DAYS = (DAY1, DAY1 + dt.timedelta(days=1))
# The files whose bytes must not depend on where the root is: the outputs analysts and systems read, and the
# standard records (summary.json, manifests and reports name the root or the run, so they differ by design).
RESULT_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")


def write_demo(out: Path, *, root: str | None = None, work_dir: str | None = None,
               absolute_inbox: bool = False) -> Path:
    """The two-day demo in ``out``; ``root``/``work_dir`` replace the conf's; returns the conf file."""
    from recon.demo import Demo

    Demo(DAY1, len(DAYS), orders_per_day=40).build().write(out)
    conf = out / "conf" / "pipeline.toml"
    text = conf.read_text("utf-8")
    if root is not None:
        text = re.sub(r'(?m)^root = .*$', f'root = "{root}"', text)
    if work_dir is not None:
        text = re.sub(r'(?m)^(root = .*)$', rf'\1\nwork_dir = "{work_dir}"', text)
    conf.write_text(text, "utf-8")
    if absolute_inbox:  # a driver in a YARN container reads the conf from its own folder, not from here
        for channel in (out / "conf" / "channels").glob("*.toml"):
            channel.write_text(channel.read_text("utf-8").replace('"../../inbox', f'"{out / "inbox"}'), "utf-8")
    return conf


def hdfs_demo(cluster: MiniCluster, out: Path, root_name: str, **options) -> Path:
    """The demo with its root on ``hdfs://…/root_name`` (made for the pipeline's user, local orders put there)."""
    uri = cluster.make_root(root_name)
    conf = write_demo(out, root=uri, **options)
    storage = cluster.storage(root_name)
    for day_dir in sorted((out / "root" / "local").iterdir()):
        storage.write_bytes((day_dir / "orders.csv").read_bytes(), "local", day_dir.name, "orders.csv")
    return conf


def data_files(storage, days=DAYS) -> dict[str, bytes]:
    """{relative path: bytes} of every data file of ``days`` under a root: the results and the standard CSVs."""
    found = {}
    for day in days:
        d = day.isoformat()
        for name in RESULT_FILES:
            found[f"recon/{d}/{name}"] = storage.read_bytes("recon", d, name)
        for channel in storage.list("standard"):
            for name in storage.list("standard", channel, d):
                if name.endswith(".csv"):
                    found[f"standard/{channel}/{d}/{name}"] = storage.read_bytes("standard", channel, d, name)
    return found


def differences(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    """The paths whose bytes differ (or that one side lacks)."""
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
