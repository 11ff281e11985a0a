"""A failed Spark read told in the job's words: the file, the line, the cause, and what to do.

Spark reports a bad input file as a JVM exception chain wrapped by Py4J:
``An error occurred while calling o3423.collectToPython`` with a Java stack
trace, the file named only deep inside (``[FAILED_READ_FILE] Encountered error
while reading file file:/...``), the record in a cause below it
(``[MALFORMED_CSV_RECORD] Malformed CSV record: ...``) and the reason below
that (``NumberFormatException: For input string: "abc"``). Matching the
printed text for a few words had given the user the first line of it and no
file. Here the chain is walked cause by cause (class and message of each, no
stack trace), and a read failure becomes an error of core/errors.py naming:

* the file (its URI, as Spark read it) and, for our standard and previous
  result files, the channel;
* the line: Spark's CSV reader knows none, so when a CSV fails to parse the
  file is read once more here, on the Python side and only on this failure
  path, to find the first row that has the wrong number of fields or a value
  that is not a number where the schema wants one (files up to
  ``MAX_SCAN_BYTES``); otherwise Spark's record is quoted (masked, shortened);
* the cause in words ("a row with 7 fields where the header has 9", "value
  'abc' of source_line is not a whole number");
* what to do, by the kind of file (the order system's export, a standard
  file of ``recon normalize``, a result of an earlier date).

An ``F.raise_error`` of ours (``USER_RAISED_EXCEPTION``, e.g. the local
amount check) keeps its own message, which already says what and where.
Nothing of Py4J (object ids, ``collectToPython``, Java frames) is kept.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote, urlsplit

from core.errors import IntegrityError, ReconError

log = logging.getLogger(__name__)

MAX_SCAN_BYTES = 512 << 20   # a larger file is not re-read to find the line: Spark's record is quoted instead
MAX_SHOWN = 120              # characters of a record or value shown (messages reach logs)
_CONDITION = re.compile(r"^\[(?P<cls>[A-Z0-9_]+)(?:\.(?P<sub>[A-Z0-9_]+))?\]\s*(?P<text>.*?)(?:\s*SQLSTATE: \w+)?\s*$",
                        re.S)
_READ_FILE = re.compile(r"(?:reading file|Path does not exist:|File does not exist:)\s+(?P<uri>\S+?)\.?(?:\s|$)")
_NOT_PARQUET = re.compile(r"^(?P<uri>\S+) is not a Parquet file(?P<why>.*)$", re.S)
_INPUT_STRING = re.compile(r'^For input string: "(?P<value>.*)"$', re.S)
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- the chain ----------------------------------------------------------------------------------------------------

def java_causes(exc: BaseException) -> list[tuple[str, str]]:
    """(class name, message) of the JVM exception behind a captured Spark error and its causes (at most 12)."""
    out, origin = [], getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
    try:
        while origin is not None and len(out) < 12:
            out.append((str(origin.getClass().getName()), str(origin.getMessage() or "")))
            origin = origin.getCause()
    except Exception:  # the JVM is gone or the object is not a Throwable: keep what we have
        pass
    return out


def _conditions(chain: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(error condition or Java class, sub-condition, text without the condition and SQLSTATE) of each cause."""
    out = []
    for cls, msg in chain:
        m = _CONDITION.match(msg.strip())
        if m:
            out.append((m.group("cls"), m.group("sub") or "", m.group("text")))
        else:
            out.append((cls.rsplit(".", 1)[-1], "", msg.strip()))
    return out


# -- the file -----------------------------------------------------------------------------------------------------

def _relative(storage, uri: str) -> str | None:
    """``uri`` (as Spark names it: file:/x, file:///x, hdfs://nn/x) relative to the storage root, or None."""
    if storage is None:
        return None
    a, b = urlsplit(uri), urlsplit(storage.root_uri)
    # file:/x and file:///x are one file; hdfs://nn:8020/x and hdfs://nn/x name one namenode (its default port)
    if a.scheme != b.scheme or (a.scheme != "file" and (a.hostname or "") != (b.hostname or "")):
        return None
    path, root = unquote(a.path), unquote(b.path).rstrip("/")
    if not path.startswith(root + "/"):
        return None
    return path[len(root) + 1:]


def _kind(rel: str | None) -> dict:
    """What the file is, for the message: its description, channel, and what to do."""
    parts = rel.split("/") if rel else []
    if len(parts) >= 3 and parts[0] == "local":
        return dict(what="the local orders export", hint="fix the order system's export and re-run")
    if len(parts) >= 4 and parts[0] == "standard":
        return dict(what="a standard file", channel=parts[1],
                    hint=f"standard files are written by `recon normalize`: re-run it for channel {parts[1]} "
                         f"and date {parts[2]} (or restore the file), then re-run the reconcile")
    if len(parts) >= 3 and parts[0] == "recon" and _DATE_DIR.match(parts[1]):
        return dict(what=f"{parts[-1]} published for {parts[1]}",
                    hint=f"a published result must not be edited: restore {parts[-1]} of {parts[1]} (or re-run "
                         f"the reconcile of {parts[1]}), then re-run this date")
    if len(parts) >= 2 and parts[:2] == ["corrections", "applied"]:
        return dict(what="the ledger of applied corrections",
                    hint="restore the ledger written by `recon apply-fixes`, then re-run")
    return dict(what="an input file", hint="check the file, then re-run")


# -- the line -----------------------------------------------------------------------------------------------------

def _known_types() -> dict[frozenset, dict[str, str]]:
    """{column set: {column: "int" | "decimal"}} of the CSV files the job reads with numeric columns."""
    from pyspark.sql import types as T

    from schemas import standard
    from schemas.outputs import open_item_spark_schema

    out = {}
    for schema in (standard.spark_schema(), open_item_spark_schema()):
        kinds = {}
        for f in schema.fields:
            if isinstance(f.dataType, (T.IntegerType, T.LongType, T.ShortType)):
                kinds[f.name] = "int"
            elif isinstance(f.dataType, T.DecimalType):
                kinds[f.name] = "decimal"
        out[frozenset(f.name for f in schema.fields)] = kinds
    return out


def _shown(value: str) -> str:
    from schemas.masking import mask_text

    text = mask_text(value)
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def _bad_value(value: str, kind: str) -> bool:
    if value == "":
        return False  # an empty field is null
    if kind == "int":
        return not re.fullmatch(r"[+-]?[0-9]+", value.strip())
    try:
        Decimal(value.strip())
    except InvalidOperation:
        return True
    return False


def find_bad_row(storage, rel: str) -> tuple[int, str] | None:
    """(line, cause in words) of the first row of a CSV file that Spark cannot parse, or None if none is found.

    Reads the file once through ``Storage`` (CRLF and a BOM taken as the job's reader takes them). Looks for
    a row with another number of fields than the header, and for a value that is not a number in a column
    our schemas read as one. Files above ``MAX_SCAN_BYTES`` are not read (None).
    """
    try:
        if storage.size(rel) > MAX_SCAN_BYTES:
            return None
        with storage.open_read(rel) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text, delimiter=",", quotechar='"', doublequote=True)
            header = None
            kinds: dict[str, str] = {}
            for row in reader:
                if header is None:
                    if not any(v.strip() for v in row):
                        continue  # blank lines before the header
                    header = row
                    kinds = _known_types().get(frozenset(header), {})
                    continue
                if not row or row == [""]:
                    continue  # a blank line: Spark skips it too
                if len(row) != len(header):
                    return reader.line_num, (f"a row with {len(row)} field{'s' if len(row) != 1 else ''} where "
                                             f"the header has {len(header)}")
                for name, value in zip(header, row):
                    kind = kinds.get(name)
                    if kind and _bad_value(value, kind):
                        what = "a whole number" if kind == "int" else "a decimal number"
                        return reader.line_num, f"value {_shown(value)} of {name} is not {what}"
    except Exception:  # the diagnosis is a courtesy: Spark's own words are used instead
        log.debug("could not re-read %s to find the bad line", rel, exc_info=True)
    return None


# -- the error ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def told(storage=None, *, date: str | None = None, file: str | None = None, hint: str | None = None):
    """Run Spark actions; a Spark failure leaves the block as the ReconError ``spark_error`` makes of it
    (naming ``file`` when the failure names none, with ``hint`` instead of its own when given), the JVM's
    chain logged at debug level only (``recon -v``). Any other exception leaves as it is."""
    try:
        yield
    except Exception as exc:
        error = spark_error(exc, storage, date=date)
        if error is None:
            raise
        log.debug("Spark's error behind %s", error.message, exc_info=exc)
        if hint:
            error.hint = hint
        raise error.named(file=file) from None


def spark_error(exc: BaseException, storage=None, *, date: str | None = None) -> ReconError | None:
    """The ReconError to show for a Spark failure ``exc``, or None when ``exc`` did not come from the JVM.

    A read failure of a named file is an IntegrityError (exit 4) naming the file, the line when one is found,
    the cause and what to do; a file that vanished during the run is exit 1 (re-run). Another Spark failure
    becomes a ReconError (exit 1) with the innermost cause's words (the Spark log holds the details).
    """
    chain = java_causes(exc)
    if not chain:
        condition = getattr(exc, "getCondition", None)
        if condition is None:
            return None  # not a Spark error: let it through as it is
        chain = [(type(exc).__name__, str(exc))]
    causes = _conditions(chain)

    from core.storage import disk_error, disk_problem

    for _cls, _sub, text in causes:  # a write (or Spark's scratch space) on a full or read-only disk: exit 1
        if disk_problem(text) is not None:
            return disk_error(text, writing="the result (or Spark's scratch space, spark.local.dir)", date=date)

    for cls, _sub, text in causes:
        if cls == "USER_RAISED_EXCEPTION":  # a check of ours in the plan; its message says what and where
            return IntegrityError(text[:600], date=date)

    uri = None
    for cls, _sub, text in causes:
        m = _READ_FILE.search(text) if cls in ("FAILED_READ_FILE", "PATH_NOT_FOUND", "FileNotFoundException") \
            else None
        m = m or _NOT_PARQUET.match(text)
        if m:
            uri = m.group("uri")
            break
    classes = {cls for cls, _, _ in causes}
    if uri is None:
        cls, _sub, text = causes[-1]
        first = text.splitlines()[0][:300] if text else cls
        return ReconError(f"Spark failed: {first} ({cls})", date=date,
                          hint="`recon -v` shows Spark's details; re-run once the cause is fixed")

    rel = _relative(storage, uri)
    kind = _kind(rel)
    where = dict(date=date, file=uri, channel=kind.get("channel"))
    if classes & {"FileNotFoundException", "PATH_NOT_FOUND"} or "FILE_NOT_EXIST" in {s for _, s, _ in causes}:
        return ReconError(f"{kind['what']} disappeared while it was being read", **where,
                          hint="was a normalize or an export running at the same time? re-run the reconcile")

    cause, line = _cause(causes), None
    if "MALFORMED_CSV_RECORD" in classes or "MALFORMED_RECORD_IN_PARSING" in classes:
        found = find_bad_row(storage, rel) if rel is not None else None
        if found:
            line, cause = found
    return IntegrityError(f"{kind['what']} cannot be read: {cause}", line=line, **where, hint=kind["hint"])


def _cause(causes: list[tuple[str, str, str]]) -> str:
    """The reason in words, from the most specific cause Spark gives."""
    for cls, _sub, text in causes:
        if cls == "NumberFormatException":
            m = _INPUT_STRING.match(text)
            if m:
                return f"value {_shown(m.group('value'))} is not a whole number"
            return f"a value is not a decimal number ({text.splitlines()[0][:160]})"
    for cls, _sub, text in causes:
        if cls == "MALFORMED_CSV_RECORD":
            record = text.split(":", 1)[1].strip() if ":" in text else text
            return (f"the record {_shown(record)} does not have the header's number of fields "
                    f"(or has an unclosed quote)")
    for cls, _sub, text in causes:
        m = _NOT_PARQUET.match(text)
        if m:
            return f"it is not a Parquet file{m.group('why').rstrip('.')}"
    for cls, _sub, text in causes:
        if cls == "MALFORMED_RECORD_IN_PARSING":
            record = text.split(":", 1)[1].split("\n", 1)[0].strip().rstrip(".") if ":" in text else ""
            return f"a record cannot be parsed ({_shown(record)} as Spark read it)"
    cls, _sub, text = causes[-1]
    return f"{text.splitlines()[0][:200] if text else cls} ({cls})"
