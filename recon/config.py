"""Pipeline configuration: conf/<name>/pipeline.toml plus one file per channel.

A pipeline file names the storage root, the business time zone, Spark settings
and the folder of channel files. Each channel file (``channels/*.toml``)
describes one channel: its connector, its normalizer and its reconciliation
rules. Adding a channel means adding a file; there is no central list.

Relative paths in a file are resolved against that file's folder, so a
configuration behaves the same from cron, from the Makefile and from tests.
Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.settings import ChannelSettings, Settings

CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def resolve_location(value: str, base: Path) -> str:
    """A URI (kept as is) or a path relative to ``base``, returned as a URI."""
    if _URI.match(value):
        return value.rstrip("/")
    return (base / value).resolve().as_uri()


def resolve_path(value: str, base: Path) -> str:
    """A local filesystem path relative to ``base``."""
    return str((base / os.path.expanduser(value)).resolve())


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("configuration file not found", file=str(path),
                          hint="pass --conf with the path of a pipeline.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc


def _check_keys(table: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [{where}]; allowed: {', '.join(sorted(allowed))}",
                          file=str(path))


def _decimal(value, what: str, path: Path) -> Decimal:
    if isinstance(value, float):
        raise ConfigError(f"{what} must be a quoted decimal string such as \"0.006\", not a float", file=str(path))
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{what} is not a decimal: {value!r}", file=str(path)) from None


def load_channel(path: Path) -> ChannelSettings:
    """Read one channel file."""
    data = _read_toml(path)
    _check_keys(data, {"channel", "fees", "download", "normalizer"}, "top level", path)
    ch = data.get("channel", {})
    _check_keys(ch, {"name", "normalizer", "cutoff_minutes", "max_rejected_rows"}, "channel", path)
    name = ch.get("name", path.stem)
    if not CHANNEL_NAME.match(name):
        raise ConfigError(f"channel name {name!r} must match {CHANNEL_NAME.pattern}", file=str(path))
    if "normalizer" not in ch:
        raise ConfigError("[channel] needs normalizer = \"<module or module:Class>\"", file=str(path))
    cutoff = ch.get("cutoff_minutes", 30)
    if not isinstance(cutoff, int) or not 0 <= cutoff <= 24 * 60:
        raise ConfigError(f"cutoff_minutes must be an integer between 0 and 1440, got {cutoff!r}", file=str(path))
    max_rejected = ch.get("max_rejected_rows", 0)
    if isinstance(max_rejected, bool) or not isinstance(max_rejected, int) or max_rejected < 0:
        raise ConfigError(f"max_rejected_rows must be a non-negative integer, got {max_rejected!r}", file=str(path))

    fees = data.get("fees", {})
    _check_keys(fees, {"rate", "tolerance", "rounding"}, "fees", path)
    fee_rate = _decimal(fees["rate"], "fees.rate", path) if "rate" in fees else None
    fee_tol = _decimal(fees.get("tolerance", "0.01"), "fees.tolerance", path)
    rounding = fees.get("rounding", "HALF_UP")
    if rounding not in ("HALF_UP", "HALF_EVEN", "DOWN", "UP"):
        raise ConfigError(f"fees.rounding must be HALF_UP, HALF_EVEN, DOWN or UP, got {rounding!r}", file=str(path))

    download = dict(data.get("download", {}))
    if "type" not in download:
        raise ConfigError("[download] needs type = \"localdir\" (or another connector)", file=str(path))
    if "path" in download:
        download["path"] = resolve_path(download["path"], path.parent)

    return ChannelSettings(name=name, normalizer=ch["normalizer"], download=download, conf_file=str(path),
                           cutoff_minutes=cutoff, fee_rate=fee_rate, fee_tolerance=fee_tol, fee_rounding=rounding,
                           normalizer_options=dict(data.get("normalizer", {})), max_rejected_rows=max_rejected)


def load_settings(conf: str | os.PathLike) -> Settings:
    """Read a pipeline file and every channel file in its channels folder.

    ``RECON_ROOT`` in the environment overrides the configured root (tests and
    one-off runs use it to point the same configuration elsewhere).
    """
    path = Path(conf).resolve()
    data = _read_toml(path)
    _check_keys(data, {"pipeline", "spark", "local_orders", "fixes", "alerts", "engine"}, "top level", path)
    if "alerts" in data:  # read by bin/recon-cron (recon.alerts); checked here so a typo fails every command
        from recon.alerts import OpsConfigError, parse_alerts

        try:
            parse_alerts(data["alerts"])
        except OpsConfigError as exc:
            raise ConfigError(f"[alerts] {exc}", file=str(path)) from exc
    p = data.get("pipeline", {})
    _check_keys(p, {"root", "timezone", "channels_dir", "max_carry_days", "work_dir", "refund_lookback_days"},
                "pipeline", path)
    if "root" not in p and "RECON_ROOT" not in os.environ:
        raise ConfigError("[pipeline] needs root = \"file:///…\", \"hdfs://…\" or a relative path", file=str(path))
    root = os.environ.get("RECON_ROOT") or p["root"]
    root = resolve_location(root, path.parent)

    tz = p.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}", file=str(path)) from None
    max_carry = p.get("max_carry_days", 3)
    if not isinstance(max_carry, int) or max_carry < 1:
        raise ConfigError(f"max_carry_days must be a positive integer, got {max_carry!r}", file=str(path))

    lookback = p.get("refund_lookback_days", 0)
    if not isinstance(lookback, int) or not 0 <= lookback <= 400:
        raise ConfigError(f"refund_lookback_days must be an integer between 0 and 400, got {lookback!r}",
                          file=str(path))
    channels_dir = path.parent / p.get("channels_dir", "channels")
    channels: dict[str, ChannelSettings] = {}
    for chan_file in sorted(channels_dir.glob("*.toml")):
        chan = load_channel(chan_file)
        if chan.name in channels:
            raise ConfigError(f"channel {chan.name!r} is defined twice: {channels[chan.name].conf_file} and {chan_file}",
                              file=str(chan_file))
        channels[chan.name] = chan
    if not channels:
        raise ConfigError(f"no channel files (*.toml) in {channels_dir}", file=str(path))

    spark = {str(k): str(v) for k, v in data.get("spark", {}).items()}
    from jobs.local_orders import parse_local_orders_config  # no pyspark at import time

    local_orders = parse_local_orders_config(data.get("local_orders", {"format": "csv"}), path)
    fixes = dict(data.get("fixes", {}))
    if "work_dir" in p:
        work_dir = resolve_path(p["work_dir"], path.parent)
    elif root.startswith("file://"):
        work_dir = os.path.join(_uri_path(root), ".work")
    else:
        work_dir = os.path.join(tempfile.gettempdir(), "recon-work")
    return Settings(root=root, conf_file=str(path), timezone=tz, max_carry_days=max_carry,
                    channels=channels, spark=spark, local_orders=local_orders, work_dir=str(work_dir),
                    refund_lookback_days=lookback, fixes=fixes, engine=parse_engine(data.get("engine", {}), path))


ENGINES = ("spark", "duckdb")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}


def parse_engine(raw: dict, path: Path | None) -> dict:
    """The ``[engine]`` table: which engine reconciles (``auto``: jobs.engines.engine_kind), the cross-check by
    the other one, and DuckDB's resources.

    ``RECON_ENGINE_COMPARE_WITH`` in the environment overrides ``compare_with`` (the test suite sets it, so every
    end-to-end run is cross-checked by the other engine).
    """
    where = str(path) if path else None
    _check_keys(raw, {"kind", "compare_with", "memory_limit", "threads", "spill_dir", "database"}, "engine",
                path or Path("?"))
    kind = raw.get("kind", "auto")
    if kind not in ("auto", *ENGINES):
        raise ConfigError(f"engine.kind must be auto, {' or '.join(ENGINES)}, got {kind!r}", file=where)
    other = os.environ.get("RECON_ENGINE_COMPARE_WITH", raw.get("compare_with", ""))
    if other not in ("", "other", *ENGINES):
        raise ConfigError(f"engine.compare_with must be \"\", \"other\" or one of {', '.join(ENGINES)}, got "
                          f"{other!r}", file=where)
    database = raw.get("database", "auto")
    if database not in ("auto", "memory", "file"):
        raise ConfigError(f"engine.database must be auto, memory or file, got {database!r}", file=where)
    out = {"kind": kind, "compare_with": other, "database": database}
    memory = raw.get("memory_limit")
    if memory is not None:
        if not isinstance(memory, str) or not _MEMORY.match(memory.strip()):
            raise ConfigError(f"engine.memory_limit must be a size like \"16GB\", got {memory!r}", file=where)
        out["memory_limit"] = memory.strip()
        number, unit = _MEMORY.match(memory.strip()).groups()
        out["memory_limit_bytes"] = int(Decimal(number) * _UNITS[unit.upper()])  # what DuckDB's limit is in bytes
    threads = raw.get("threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
            raise ConfigError(f"engine.threads must be an integer between 1 and 1024, got {threads!r}", file=where)
        out["threads"] = threads
    if "spill_dir" in raw:
        out["spill_dir"] = resolve_path(str(raw["spill_dir"]), path.parent if path else Path.cwd())
    return out


def _uri_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)
