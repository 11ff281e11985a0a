"""Baseline: the same plain reconciliation in one pandas process.

    python -m bench.baseline_pandas --standard FILE.csv [...] --local FILE.csv [...] --out labelled.csv

Reads the standard CSV and the local export with ``dtype=str`` (only the
columns it needs), turns amounts into integer fen from their decimal text
(exact; a value with more than two decimals is an error, never rounded;
no float anywhere), merges outer on order_no, labels LOCAL_ONLY /
CHANNEL_ONLY / AMOUNT_MISMATCH rows and writes them to one CSV. Like
bench/baseline_spark.py it ignores refund keys, statuses, fees and cut-off.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def to_fen(text: pd.Series, what: str) -> pd.Series:
    """Decimal strings ("12.30", "-0.5", "7") as exact integer fen (nullable Int64)."""
    text = text.str.strip()
    negative = text.str.startswith("-")
    body = text.str.lstrip("+-")
    parts = body.str.partition(".")
    whole, frac = parts[0], parts[2]
    bad = ~whole.str.fullmatch(r"\d+") | ~frac.str.fullmatch(r"\d{0,2}")
    if bad.any():
        raise ValueError(f"{what}: not an amount with at most 2 decimals: {text[bad].iloc[0]!r}")
    fen = whole.astype("int64") * 100 + frac.str.ljust(2, "0").astype("int64")
    return fen.where(~negative, -fen).astype("Int64")


def yuan(fen: pd.Series) -> pd.Series:
    """Integer fen back to exact decimal text ("" when missing)."""
    out = pd.Series("", index=fen.index, dtype=object)
    present = fen.notna()
    value = fen[present].astype("int64")
    sign = value.lt(0).map({True: "-", False: ""})
    mag = value.abs()
    out[present] = sign + (mag // 100).astype(str) + "." + (mag % 100).astype(str).str.zfill(2)
    return out


def read(paths: list[str], columns: list[str]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype=str, usecols=columns, keep_default_na=False, na_filter=False, encoding="utf-8")
              for p in paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standard", nargs="+", required=True, help="standard CSV file(s)")
    parser.add_argument("--local", nargs="+", required=True, help="local orders CSV file(s)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)

    channel = read(args.standard, ["order_no", "amount", "channel_txn_id"])
    channel["channel_fen"] = to_fen(channel.pop("amount"), "standard amount")
    local = read(args.local, ["order_no", "amount"])
    local["local_fen"] = to_fen(local.pop("amount"), "local amount")

    joined = local.merge(channel, on="order_no", how="outer", indicator=True, sort=False)
    label = pd.Series(pd.NA, index=joined.index, dtype=object)
    both = joined["_merge"] == "both"
    label[joined["_merge"] == "left_only"] = "LOCAL_ONLY"
    label[joined["_merge"] == "right_only"] = "CHANNEL_ONLY"
    label[both & (joined["local_fen"] != joined["channel_fen"]).fillna(False)] = "AMOUNT_MISMATCH"
    rows = joined[label.notna()]
    out = pd.DataFrame({"label": label[label.notna()], "order_no": rows["order_no"],
                        "local_amount": yuan(rows["local_fen"]), "channel_amount": yuan(rows["channel_fen"]),
                        "channel_txn_id": rows["channel_txn_id"].fillna("")})
    out.to_csv(args.out, index=False, lineterminator="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
