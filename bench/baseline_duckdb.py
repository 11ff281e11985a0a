"""Baseline: the same plain reconciliation in DuckDB, embedded in one process.

    python -m bench.baseline_duckdb --standard FILE.csv [...] --local FILE.csv [...] --out labelled.csv
        [--threads N] [--memory-limit 8GB] [--temp-dir DIR]

Reads the standard CSV and the local export as text (only the columns it
needs, found by header name), turns amounts into DECIMAL(18,2) after checking
their text (DuckDB's cast rounds '1.235' to 1.24 without a word, so a value
with more than two decimals is an error here, never rounded; no DOUBLE
anywhere), joins full outer on order_no, labels LOCAL_ONLY / CHANNEL_ONLY /
AMOUNT_MISMATCH rows and writes them to one CSV. Like bench/baseline_spark.py
and bench/baseline_pandas.py it ignores refund keys, statuses, fees and
cut-off: it is the floor an engine on DuckDB is compared with (issue 18).
"""

from __future__ import annotations

import argparse
import sys

AMOUNT_TEXT = r"-?[0-9]+([.][0-9]{1,2})?"


def _amount(column: str, what: str) -> str:
    return (f"CASE WHEN regexp_full_match(trim({column}), '{AMOUNT_TEXT}') THEN CAST(trim({column}) AS DECIMAL(18,2)) "
            f"ELSE error('{what}: not an amount with at most 2 decimals: ' || {column}) END")


def _files(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def plain_join_sql(standard: list[str], local: list[str], out: str) -> str:
    """The COPY statement of the whole baseline."""
    read = "read_csv({files}, header = true, all_varchar = true, quote = '\"', escape = '\"')"
    return f"""
COPY (
  WITH channel AS (
    SELECT order_no, {_amount('amount', 'standard amount')} AS channel_amount, channel_txn_id
    FROM {read.format(files=_files(standard))}),
  local AS (
    SELECT order_no, {_amount('amount', 'local amount')} AS local_amount
    FROM {read.format(files=_files(local))}),
  joined AS (
    SELECT coalesce(l.order_no, c.order_no) AS order_no, l.local_amount, c.channel_amount, c.channel_txn_id,
           CASE WHEN c.order_no IS NULL THEN 'LOCAL_ONLY'
                WHEN l.order_no IS NULL THEN 'CHANNEL_ONLY'
                WHEN l.local_amount <> c.channel_amount THEN 'AMOUNT_MISMATCH' END AS label
    FROM local l FULL OUTER JOIN channel c ON l.order_no = c.order_no)
  SELECT label, order_no, local_amount, channel_amount, channel_txn_id
  FROM joined WHERE label IS NOT NULL
) TO '{out.replace("'", "''")}' (FORMAT csv, HEADER true)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standard", nargs="+", required=True, help="standard CSV file(s)")
    parser.add_argument("--local", nargs="+", required=True, help="local orders CSV file(s)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 8GB (default: DuckDB's, 80%% of RAM)")
    parser.add_argument("--temp-dir", help="where DuckDB spills what does not fit in memory")
    args = parser.parse_args(argv)

    import duckdb

    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute("SET memory_limit = ?", [args.memory_limit])
    if args.temp_dir:
        con.execute("SET temp_directory = ?", [args.temp_dir])
    con.execute(plain_join_sql(args.standard, args.local, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
