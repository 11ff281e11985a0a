"""The short plain-text summary printed after a run (from summary.json)."""

from __future__ import annotations

from reports.data import rejected_rows_headlines
from schemas.outputs import CATEGORIES, RESOLUTIONS


def format_summary(summary: dict, location: str) -> str:
    """A few lines per channel: records, then every category present with counts and amounts."""
    out = [f"== {summary['date']}  ({location})"]
    out += [f"  !! {line}" for _, line in rejected_rows_headlines(summary)]
    for name, ch in sorted(summary["channels"].items()):
        out.append(f"  {name}: local {ch['local']['records']} records / {ch['local']['amount']}, "
                   f"channel {ch['channel']['records']} records / {ch['channel']['amount']}, "
                   f"rejects {ch.get('rejects', 0)}")
        cats = ch["categories"]
        for cat in [c for c in CATEGORIES if c in cats] + sorted(c for c in cats if c not in CATEGORIES):
            v = cats[cat]
            out.append(f"    {cat:<36} {RESOLUTIONS.get(cat, ''):<14} "
                       f"local {v['local']['records']:>6} / {v['local']['amount']:>12}   "
                       f"channel {v['channel']['records']:>6} / {v['channel']['amount']:>12}   "
                       f"listed {v['rows']:>5}")
        out.append(f"    corrections {ch['corrections']}, discrepancy rows {ch['discrepancy_rows']}")
    rf = summary["roll_forward"]
    out.append(f"  open items: opening {rf['opening']['records']} + new {rf['new']['records']} - cleared "
               f"{rf['cleared']['records']} = closing {rf['closing']['records']}")
    missing = summary.get("channels_not_available") or []
    if missing:
        out.append(f"  NOT reconciled (no statement): {', '.join(missing)}")
    return "\n".join(out)
