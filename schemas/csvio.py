"""CSV dialect of every file we publish: UTF-8, comma, RFC 4180 quoting, LF, header first.

We write LF only (outputs stay byte-identical), but we read what real systems
write: LF or CRLF line ends (RFC 4180, Python's ``csv``, Excel and most
database tools write CRLF) and an optional UTF-8 byte order mark.
"""

from __future__ import annotations

import csv
from typing import Iterable, Sequence, TextIO

# Options Spark needs to read and write the same dialect. Spark trims values
# on write unless told not to, and escapes quotes with a backslash by default.
_SPARK_CSV_DIALECT = {
    "header": "true",
    "sep": ",",
    "quote": '"',
    "escape": '"',
    "encoding": "UTF-8",
    "nullValue": "",
    "emptyValue": "",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}
# Writes end lines with LF. Reads leave lineSep unset: Hadoop's line reader then ends a line at LF, CRLF or
# CR and drops the line end, so no value keeps a "\r" (with lineSep "\n" a CRLF file's last column did, and
# its header became "paid_at\r"); it also skips a UTF-8 byte order mark at the start of a file.
SPARK_CSV_WRITE_OPTIONS = dict(_SPARK_CSV_DIALECT, lineSep="\n")
SPARK_CSV_READ_OPTIONS = dict(_SPARK_CSV_DIALECT)
SPARK_CSV_OPTIONS = SPARK_CSV_WRITE_OPTIONS  # the name older code imports: the write options


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


BOM = "\ufeff"


def read_rows(stream: TextIO) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV in our dialect, LF or CRLF, with or without a BOM; for tests and small files.

    Open the stream with ``newline=""`` (the csv module then handles CRLF and quoted line breaks itself).
    """
    rows = list(csv.reader(stream, delimiter=",", quotechar='"', doublequote=True))
    if rows and rows[0] and rows[0][0].startswith(BOM):
        rows[0][0] = rows[0][0][len(BOM):]
    return (rows[0], rows[1:]) if rows else ([], [])


def decode(data: bytes) -> str:
    """A CSV file's bytes as text: UTF-8, a leading byte order mark dropped."""
    return data.decode("utf-8-sig")
