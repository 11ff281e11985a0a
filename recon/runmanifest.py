"""The run manifest the cron job writes to ``{root}/runs/{D}/{run-id}.json``: run id, versions, the inputs of
D with their checksums, and the outcome counts of the published ``summary.json``."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

from recon.childrun import PROJECT_DIR
from schemas.layout import MANIFEST, is_reconciled, local_dir, raw_dir, recon_dir


def new_run_id(day: dt.date) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{day.isoformat()}-{stamp}-{uuid.uuid4().hex[:8]}"


def versions() -> dict:
    """python, pyspark, java, this project's version and git commit (each may be null, never fatal)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist, key in (("pyspark", "pyspark"), ("recon-pipeline", "recon_pipeline"), ("pyarrow", "pyarrow")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    out["java"] = _java_version()
    out["git_commit"], out["git_dirty"] = _git_commit()
    return out


def _java_version() -> str | None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (proc.stderr or proc.stdout).strip().splitlines()
    return first[0] if first else None


def _git_commit() -> tuple[str | None, bool | None]:
    """The checkout's commit; a deployed wheel has no .git, hence None."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20)
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def manual_review(summary: dict) -> dict:
    """Rows and money of the MANUAL_REVIEW categories in a summary.json.

    The amount at stake of a category is the larger of its local and channel
    amounts (a one-sided break has only one side; for a mismatch the larger
    side bounds what may be wrong). Decimal strings: money is never a float.
    """
    from schemas.outputs import RESOLUTIONS

    rows, amount, by_category = 0, Decimal("0"), {}
    for channel, data in sorted((summary.get("channels") or {}).items()):
        for category, c in sorted((data.get("categories") or {}).items()):
            if RESOLUTIONS.get(category) != "MANUAL_REVIEW":
                continue
            at_stake = max(Decimal(c.get("local", {}).get("amount", "0")),
                           Decimal(c.get("channel", {}).get("amount", "0")))
            rows += int(c.get("rows", 0))
            amount += at_stake
            entry = by_category.setdefault(category, {"rows": 0, "amount": Decimal("0")})
            entry["rows"] += int(c.get("rows", 0))
            entry["amount"] += at_stake
    return {"rows": rows, "amount": f"{amount:.2f}",
            "by_category": {k: {"rows": v["rows"], "amount": f"{v['amount']:.2f}"} for k, v in by_category.items()}}


def outcome_counts(summary: dict) -> dict:
    """The counts a person looks at first, from summary.json."""
    channels = {}
    for name, data in sorted((summary.get("channels") or {}).items()):
        channels[name] = {
            "local": data.get("local"), "channel": data.get("channel"), "rejects": data.get("rejects"),
            "corrections": data.get("corrections"), "discrepancy_rows": data.get("discrepancy_rows"),
            "categories": {k: {"rows": v.get("rows"), "local_records": v.get("local", {}).get("records"),
                               "channel_records": v.get("channel", {}).get("records")}
                           for k, v in sorted((data.get("categories") or {}).items())},
        }
    return {
        "channels": channels,
        "discrepancy_rows": sum(int(c.get("discrepancy_rows") or 0) for c in channels.values()),
        "corrections": sum(int(c.get("corrections") or 0) for c in channels.values()),
        "manual_review": manual_review(summary),
        "roll_forward": summary.get("roll_forward"),
        "channels_reconciled": summary.get("channels_reconciled"),
        "channels_not_available": summary.get("channels_not_available"),
    }


def _read_summary(storage, day: dt.date) -> dict | None:
    path = (recon_dir(day), "summary.json")
    try:
        if storage.is_file(*path) and is_reconciled(storage, day):
            return storage.read_json(*path)
    except (OSError, ValueError):
        return None
    return None


def collect_inputs(storage, day: dt.date, summary: dict | None) -> list[dict]:
    """Every input of D with its checksum: the landed statements (raw manifests) and the local export.

    The raw manifests exist even when the reconciliation failed, so a failed
    run's manifest still says what had arrived.
    """
    inputs, seen = [], set()
    for channel in storage.list("raw"):
        if not storage.is_file(raw_dir(channel, day), MANIFEST):
            continue
        try:
            manifest = storage.read_json(raw_dir(channel, day), MANIFEST)
        except (OSError, ValueError):
            continue
        for f in manifest.get("files", []):
            uri = storage.uri(raw_dir(channel, day), f["name"])
            seen.add(uri)
            inputs.append({"kind": "statement", "channel": channel, "file": uri, "sha256": f.get("sha256"),
                           "size": f.get("size"), "source": f.get("source")})
    for item in (summary or {}).get("inputs", []):
        if item.get("file") not in seen:
            seen.add(item.get("file"))
            inputs.append(dict(item))
    local = (local_dir(day),)
    for name in storage.list(*local):
        uri = storage.uri(*local, name)
        if uri in seen or name.startswith((".", "_")) or not storage.is_file(*local, name):
            continue
        digest, size = storage.sha256(*local, name)
        inputs.append({"kind": "local_orders", "file": uri, "sha256": digest, "size": size})
    return inputs


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
