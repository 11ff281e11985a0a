"""Regenerate the golden standard/rejects files beside each sample statement.

A deliberate command (`make goldens`): review the diff before committing it.
Samples named ``bad_*`` must fail as a whole and have no golden files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from normalizers.testing import channel_for, normalize_file
from recon.config import load_channel

SAMPLES = Path(__file__).parent / "samples"


def sample_files(include_bad: bool = False):
    """(channel settings, sample path) for every sample statement under samples/<folder>/.

    A folder holding ``channel.toml`` (a channel file, as in conf/channels/) is
    normalized with that configuration; otherwise the folder name is the
    normalizer's name. Samples named ``bad_*`` must fail as a whole.
    """
    for channel_dir in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        conf = channel_dir / "channel.toml"
        channel = load_channel(conf) if conf.exists() else channel_for(channel_dir.name)
        for path in sorted(channel_dir.iterdir()):
            if not path.is_file() or ".standard." in path.name or ".rejects." in path.name or path.name == conf.name:
                continue
            if path.name.startswith("bad_") == include_bad:
                yield channel, path


def golden_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + ".standard.csv"), path.with_name(path.stem + ".rejects.csv")


def main() -> int:
    for channel, path in sample_files():
        sink, _ = normalize_file(channel, path)
        std, rej = golden_paths(path)
        std.write_text(sink.records_io.getvalue(), encoding="utf-8", newline="")
        rej.write_text(sink.rejects_io.getvalue(), encoding="utf-8", newline="")
        print(f"{path.relative_to(SAMPLES)}: {len(sink.records)} records, {len(sink.reject_lines)} rejects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
