"""A channel's secrets ([download] table): see core.secrets."""

from __future__ import annotations

from core.secrets import read_secret
from core.settings import ChannelSettings


def resolve_secret(options: dict, key: str, *, channel: ChannelSettings, required: bool = True) -> str | None:
    """The secret ``key`` from ``<key>_env`` or ``<key>_file``; a literal ``<key>`` in conf is refused."""
    return read_secret(options, key, section="download", required=required, channel=channel.name,
                       file=channel.conf_file)
