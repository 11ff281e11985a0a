"""The configuration's values, as ``recon.config`` hands them down: plain frozen dataclasses, no parsing.

``recon.config`` reads conf/<name>/pipeline.toml and the channel files into these; connectors, normalizers
and jobs take them (or the plain mappings they hold) without knowing where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from core.errors import ConfigError


@dataclass(frozen=True)
class ChannelSettings:
    """One channel's connector, normalizer and reconciliation rules."""

    name: str
    normalizer: str
    download: dict
    conf_file: str
    cutoff_minutes: int = 30
    fee_rate: Decimal | None = None
    fee_tolerance: Decimal = Decimal("0.01")
    fee_rounding: str = "HALF_UP"
    normalizer_options: dict = field(default_factory=dict)
    # Rejected statement rows allowed before the statement as a whole is refused (exit 4); within it each is a
    # CHANNEL_ROW_REJECTED break and the statement's totals are reported unverified.
    max_rejected_rows: int = 0


@dataclass(frozen=True)
class Settings:
    """The whole pipeline's configuration."""

    root: str
    conf_file: str
    timezone: str = "Asia/Shanghai"
    max_carry_days: int = 3
    channels: dict[str, ChannelSettings] = field(default_factory=dict)
    spark: dict[str, str] = field(default_factory=dict)
    local_orders: dict = field(default_factory=lambda: {"format": "csv"})
    work_dir: str = ""   # local scratch folder for downloads in progress (never under raw/)
    refund_lookback_days: int = 0  # earlier dates' standard records read to know what an order was paid
    fixes: dict = field(default_factory=dict)  # where apply-fixes writes: the order database or a webhook
    # [engine]: kind ("spark" or "duckdb"), compare_with (the other engine, or ""), and DuckDB's memory_limit,
    # threads and spill_dir (recon.config.parse_engine)
    engine: dict = field(default_factory=lambda: {"kind": "auto", "compare_with": ""})

    def channel(self, name: str) -> ChannelSettings:
        try:
            return self.channels[name]
        except KeyError:
            raise ConfigError(f"unknown channel {name!r}; configured: {', '.join(sorted(self.channels)) or 'none'}",
                              file=self.conf_file) from None
