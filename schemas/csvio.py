"""CSV dialect of every file we publish: UTF-8, comma, RFC 4180 quoting, LF, header first."""

from __future__ import annotations

import csv
from typing import Iterable, Sequence, TextIO

# Options Spark needs to read and write the same dialect. Spark trims values
# on write unless told not to, and escapes quotes with a backslash by default.
SPARK_CSV_OPTIONS = {
    "header": "true",
    "sep": ",",
    "quote": '"',
    "escape": '"',
    "encoding": "UTF-8",
    "nullValue": "",
    "emptyValue": "",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
    "lineSep": "\n",
}


def writer(stream: TextIO):
    return csv.writer(stream, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n",
                      doublequote=True)


def write_rows(stream: TextIO, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a header and rows; returns the number of rows."""
    w = writer(stream)
    w.writerow(columns)
    count = 0
    for row in rows:
        w.writerow(row)
        count += 1
    return count


def read_rows(stream: TextIO) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV in our dialect; for tests and small files."""
    rows = list(csv.reader(stream, delimiter=",", quotechar='"', doublequote=True))
    return (rows[0], rows[1:]) if rows else ([], [])
