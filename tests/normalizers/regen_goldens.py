"""Regenerate the golden standard/rejects files beside each sample statement.

A deliberate command (`make goldens`): review the diff before committing it.
Samples named ``bad_*`` must fail as a whole and have no golden files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from normalizers.testing import channel_for, normalize_file

SAMPLES = Path(__file__).parent / "samples"


def sample_files():
    for channel_dir in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for path in sorted(channel_dir.iterdir()):
            if path.is_file() and ".standard." not in path.name and ".rejects." not in path.name \
                    and not path.name.startswith("bad_"):
                yield channel_dir.name, path


def golden_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + ".standard.csv"), path.with_name(path.stem + ".rejects.csv")


def main() -> int:
    for normalizer, path in sample_files():
        sink, _ = normalize_file(channel_for(normalizer), path)
        std, rej = golden_paths(path)
        std.write_text(sink.records_io.getvalue(), encoding="utf-8", newline="")
        rej.write_text(sink.rejects_io.getvalue(), encoding="utf-8", newline="")
        print(f"{path.relative_to(SAMPLES)}: {len(sink.records)} records, {len(sink.reject_lines)} rejects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
