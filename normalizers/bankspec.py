"""Bank statements described by a spec in the channel file: CSV-shaped, fixed width or XML.

Adding a bank is configuration, not code. The channel file says
``normalizer = "bankspec"`` and describes the statement in its
``[normalizer]`` table (reference: EXTENDING.md, "Bank statements by spec";
examples: conf/channels/bank_icbc_csv.toml, conf/channels/bank_camt053.toml).

How it is built: ``BankSpec`` validates the table once, when the normalizer
is constructed (a wrong spec is a ConfigError naming the channel file and the
key). Three readers turn the raw bytes into rows ``(line, fields, raw text)``
and collect the statement's declared control totals; one ``RowMapper`` turns a
row's fields into a ``StandardRecord``. Every data row becomes one record or
one reject; the declared totals are compared with what the rows add up to.

Control totals (``[normalizer.totals]``): ``count`` (data rows), ``sum``
(absolute amounts of all data rows), ``payment_count``, ``payment_sum``,
``refund_count``, ``refund_sum``. A rejected row still counts: the bank
counted it too. When a rejected row's amount or type cannot be read, the
totals that need it are reported as unverified rather than failed.
"""

from __future__ import annotations

import codecs
import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterator, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from normalizers.base import (LIMIT_OPTIONS, ControlReport, Normalizer, RawStatement, Sink, StatementLimits,
                              decoded_lines, read_lines, readable_order_no)
from core.errors import ConfigError, IntegrityError
from schemas.money import CENT, MoneyError, check_money, exact_totals, format_money, parse_money, parse_total
from schemas.standard import STATUSES, TXN_TYPES, StandardRecord
from schemas.times import TimeError, format_time, parse_time

FORMATS = ("csv", "fixed", "xml")
# Standard columns a spec may fill; channel, txn_type and source_* are never read from the file.
MAPPABLE = ("merchant_id", "order_no", "refund_no", "channel_txn_id", "channel_refund_id", "status", "currency",
            "amount", "fee", "coupon_amount", "txn_time", "payer_id", "bank")
# Per-row identifiers and amounts make no sense as constants.
CONSTANT_OK = ("merchant_id", "status", "currency", "fee", "coupon_amount", "payer_id", "bank")
CHECKS = ("count", "sum", "payment_count", "payment_sum", "refund_count", "refund_sum")
COMMON_KEYS = {"format", "columns", "constants", "status_map", "txn_type", "time_format", "time_zone",
               "business_time_zone", "amount_scale", "thousands_separator", "totals", *LIMIT_OPTIONS}
FORMAT_KEYS = {
    "csv": {"encoding", "skip_lines", "skip_patterns", "footer_patterns", "delimiter", "quote", "header", "names"},
    "fixed": {"encoding", "skip_lines", "skip_patterns", "footer_patterns", "width_unit", "record_length",
              "fields"},
    "xml": {"namespaces", "entries", "fields"},
}
TXN_TYPE_KEYS = {"field", "map", "default", "negative_is_refund"}
_SCALED = re.compile(r"^-?[0-9]+$")  # ASCII digits only (\d takes any script)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# "path/@attr" or "path@attr" at the very end; "[@a='b']" predicates inside the path are left to ElementTree
_ATTRIBUTE = re.compile(r"^(?P<path>.*?)/?@(?P<attr>\{[^}]*\}[\w.-]+|[\w.:-]+)$")


class RowError(ValueError):
    """A data row that cannot become a standard record (its reason goes to the rejects)."""


# -- the spec ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BankSpec:
    """A validated ``[normalizer]`` table. Build it with ``BankSpec.parse``."""

    format: str
    columns: dict[str, tuple[str, ...]]          # standard column -> source fields, first non-empty wins
    constants: dict[str, str]
    time_formats: tuple[str, ...]
    business_zone: ZoneInfo
    time_zone: ZoneInfo | None = None            # zone of naive source times; None: already business time
    status_map: dict[str, str] = field(default_factory=dict)
    type_field: str = ""
    type_map: dict[str, str] = field(default_factory=dict)
    type_default: str = "PAYMENT"
    negative_is_refund: bool = False
    amount_scale: int = 0
    thousands_separator: str = ""
    totals: dict[str, str] = field(default_factory=dict)   # check -> footer group (csv/fixed) or path (xml)
    encoding: str = "utf-8"
    skip_lines: int = 0
    skip_patterns: tuple[re.Pattern, ...] = ()
    footer_patterns: tuple[re.Pattern, ...] = ()
    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    names: tuple[str, ...] = ()
    width_unit: str = "chars"
    record_length: int = 0
    slices: dict[str, tuple[int, int]] = field(default_factory=dict)   # fixed: field -> (0-based start, width)
    paths: dict[str, str] = field(default_factory=dict)                # xml: field -> path
    namespaces: dict[str, str] = field(default_factory=dict)
    entries: str = ""

    def source_fields(self) -> set[str]:
        """Every source field the mapping reads (checked against the header or the field table)."""
        used = {name for names in self.columns.values() for name in names}
        return used | ({self.type_field} if self.type_field else set())

    @classmethod
    def parse(cls, options: dict, conf_file: str, channel: str) -> "BankSpec":
        """Validate ``options`` (a channel file's [normalizer] table); ConfigError names the file and key."""
        return _SpecParser(options, conf_file, channel).parse()


class _SpecParser:
    """Checks one [normalizer] table key by key, so each error names the key at fault."""

    def __init__(self, options: dict, conf_file: str, channel: str):
        self.o, self.conf_file, self.channel = options, conf_file, channel

    def fail(self, key: str, problem: str):
        raise ConfigError(f"[normalizer] {key}: {problem}", channel=self.channel, file=self.conf_file,
                          hint="fix the bank spec in the channel file (reference: EXTENDING.md)")

    def get(self, key: str, kind, default):
        value = self.o.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    def table(self, key: str) -> dict:
        return self.get(key, dict, {})

    def strings(self, key: str, value) -> tuple[str, ...]:
        """A string or a non-empty list of strings."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
            self.fail(key, f"expected a name or a list of names, got {value!r}")
        return tuple(items)

    def regexes(self, key: str) -> tuple[re.Pattern, ...]:
        out = []
        for text in self.get(key, list, []):
            try:
                out.append(re.compile(text))
            except (re.error, TypeError) as exc:
                self.fail(key, f"{text!r} is not a regular expression: {exc}")
        return tuple(out)

    def zone(self, key: str, default: str | None) -> ZoneInfo | None:
        name = self.get(key, str, default or "")
        if not name:
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(key, f"unknown time zone {name!r}")

    def parse(self) -> BankSpec:
        o = self.o
        fmt = o.get("format")
        if fmt not in FORMATS:
            self.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
        allowed = COMMON_KEYS | FORMAT_KEYS[fmt]
        for key in sorted(set(o) - allowed):
            others = [f for f in FORMATS if key in FORMAT_KEYS[f]]
            self.fail(key, f"applies to format {' / '.join(others)} only" if others
                      else f"unknown key; allowed: {', '.join(sorted(allowed))}")
        kw: dict = {"format": fmt}

        columns = {}
        for col, value in self.table("columns").items():
            if col not in MAPPABLE:
                self.fail(f"columns.{col}", f"not a standard column one can map; one of {', '.join(MAPPABLE)}")
            columns[col] = self.strings(f"columns.{col}", value)
        constants = {}
        for col, value in self.table("constants").items():
            if col not in CONSTANT_OK:
                self.fail(f"constants.{col}", f"cannot be a constant; constants are allowed for "
                                              f"{', '.join(CONSTANT_OK)}")
            if not isinstance(value, str):
                self.fail(f"constants.{col}", f"must be a quoted string, got {value!r}")
            if col in columns:
                self.fail(f"constants.{col}", "is also in [normalizer.columns]; keep one")
            constants[col] = value
        for col in ("order_no", "amount", "txn_time"):
            if col not in columns:
                self.fail(f"columns.{col}", "is required")
        for col in ("status", "currency"):
            if col not in columns and col not in constants:
                self.fail(f"columns.{col}", "is required (or give it in [normalizer.constants])")
        if constants.get("status", "SUCCESS") not in STATUSES:
            self.fail("constants.status", f"must be one of {', '.join(STATUSES)}")
        if "currency" in constants and not _CURRENCY.match(constants["currency"]):
            self.fail("constants.currency", f"must be an ISO 4217 code such as \"CNY\", got {constants['currency']!r}")
        for col in ("fee", "coupon_amount"):
            if col in constants:
                try:
                    parse_money(constants[col])
                except MoneyError as exc:
                    self.fail(f"constants.{col}", str(exc))
        kw.update(columns=columns, constants=constants)

        status_map = self.table("status_map")
        for src, std in status_map.items():
            if std not in STATUSES:
                self.fail(f"status_map.{src}", f"must be one of {', '.join(STATUSES)}, got {std!r}")
        if "status" in columns and not status_map:
            self.fail("status_map", "is required when the status comes from a column (unmapped values are rejected)")
        kw["status_map"] = dict(status_map)

        tt = self.table("txn_type")
        for key in sorted(set(tt) - TXN_TYPE_KEYS):
            self.fail(f"txn_type.{key}", f"unknown key; allowed: {', '.join(sorted(TXN_TYPE_KEYS))}")
        if not isinstance(tt.get("field", ""), str):
            self.fail("txn_type.field", "must be a field name")
        type_map = tt.get("map", {})
        if not isinstance(type_map, dict) or any(v not in TXN_TYPES for v in type_map.values()):
            self.fail("txn_type.map", f"must map source values to {' / '.join(TXN_TYPES)}")
        if ("field" in tt) != bool(type_map):
            self.fail("txn_type.field" if type_map else "txn_type.map", "field and map go together")
        if tt.get("default", "PAYMENT") not in TXN_TYPES:
            self.fail("txn_type.default", f"must be one of {' / '.join(TXN_TYPES)}")
        if not isinstance(tt.get("negative_is_refund", False), bool):
            self.fail("txn_type.negative_is_refund", "must be true or false")
        kw.update(type_field=tt.get("field", ""), type_map=dict(type_map), type_default=tt.get("default", "PAYMENT"),
                  negative_is_refund=tt.get("negative_is_refund", False))

        formats = self.o.get("time_format", "%Y-%m-%d %H:%M:%S")
        kw["time_formats"] = self.strings("time_format", formats)
        kw["business_zone"] = self.zone("business_time_zone", "Asia/Shanghai")
        kw["time_zone"] = self.zone("time_zone", None)
        scale = self.get("amount_scale", int, 0)
        if not 0 <= scale <= 6:
            self.fail("amount_scale", f"must be between 0 and 6 (2 = amounts in cents/fen), got {scale}")
        kw["amount_scale"] = scale
        sep = self.get("thousands_separator", str, "")
        if len(sep) > 1 or (sep and sep in ".-"):
            self.fail("thousands_separator", f"must be one character other than . and -, got {sep!r}")
        kw["thousands_separator"] = sep

        totals = self.table("totals")
        for check, source in totals.items():
            if check not in CHECKS:
                self.fail(f"totals.{check}", f"unknown control total; one of {', '.join(CHECKS)}")
            if not isinstance(source, str) or not source:
                self.fail(f"totals.{check}", "must name a footer group (csv, fixed) or a path (xml)")
        kw["totals"] = dict(totals)

        getattr(self, f"parse_{fmt}")(kw)
        return BankSpec(**kw)

    # -- per format --------------------------------------------------------------------------------------------
    def parse_text(self, kw: dict) -> None:
        """Keys csv and fixed share: encoding, lines to skip, footer lines and their captured totals."""
        encoding = self.get("encoding", str, "utf-8")
        try:
            codecs.lookup(encoding)
        except LookupError:
            self.fail("encoding", f"unknown encoding {encoding!r}")
        skip = self.get("skip_lines", int, 0)
        if skip < 0:
            self.fail("skip_lines", "must not be negative")
        footers = self.regexes("footer_patterns")
        groups = {g for p in footers for g in p.groupindex}
        for check, group in kw["totals"].items():
            if group not in groups:
                self.fail(f"totals.{check}", f"names {group!r}, which no footer pattern captures as (?P<{group}>…)")
        kw.update(encoding=encoding, skip_lines=skip, skip_patterns=self.regexes("skip_patterns"),
                  footer_patterns=footers)

    def parse_csv(self, kw: dict) -> None:
        self.parse_text(kw)
        delimiter = self.get("delimiter", str, ",")
        quote = self.get("quote", str, '"')
        if len(delimiter) != 1:
            self.fail("delimiter", f"must be one character (\"\\t\" for TAB), got {delimiter!r}")
        if len(quote) > 1 or quote == delimiter:
            self.fail("quote", "must be one character other than the delimiter, or \"\" for none")
        header = self.get("header", bool, True)
        names = tuple(self.get("names", list, []))
        if header == bool(names):
            self.fail("names", "give either header = true (names from the header row) or names = [...] "
                               "with header = false")
        if len(set(names)) != len(names):
            self.fail("names", "repeats a name")
        if names:
            self.check_fields_known(set(names), "names")
        kw.update(delimiter=delimiter, quote=quote, header=header, names=names)

    def parse_fixed(self, kw: dict) -> None:
        self.parse_text(kw)
        unit = self.get("width_unit", str, "chars")
        if unit not in ("chars", "bytes"):
            self.fail("width_unit", f"must be \"chars\" or \"bytes\" (bytes for GBK layouts), got {unit!r}")
        slices = {}
        for name, pos in self.table("fields").items():
            if (not isinstance(pos, list) or len(pos) != 2 or not all(isinstance(n, int) and n > 0 for n in pos)):
                self.fail(f"fields.{name}", f"must be [start, width], start 1-based, both positive; got {pos!r}")
            slices[name] = (pos[0] - 1, pos[1])
        if not slices:
            self.fail("fields", "is required: name = [start, width] for each field of a detail record")
        self.check_fields_known(set(slices), "fields")
        needed = max(start + width for start, width in slices.values())
        length = self.get("record_length", int, needed)
        if length < needed:
            self.fail("record_length", f"is {length}, but the fields reach position {needed}")
        kw.update(width_unit=unit, slices=slices, record_length=length)

    def parse_xml(self, kw: dict) -> None:
        namespaces = self.table("namespaces")
        entries = self.get("entries", str, "")
        if not entries:
            self.fail("entries", "is required: the path (from the root element) of one statement entry")
        paths = self.table("fields")
        if not paths:
            self.fail("fields", "is required: name = \"relative/path\" (or \"path/@attribute\") for each field")
        probe = ET.Element("probe")  # compiling a path against an empty element surfaces syntax and prefix errors
        to_check = [("entries", entries)] + [(f"fields.{k}", v) for k, v in paths.items()] + \
                   [(f"totals.{k}", v) for k, v in kw["totals"].items()]
        for key, path in to_check:
            if not isinstance(path, str):
                self.fail(key, f"must be a path string, got {path!r}")
            _, inner, _ = _split_path(path)
            try:
                probe.findall(inner, namespaces)
            except (SyntaxError, KeyError) as exc:
                self.fail(key, f"path {path!r} is not usable: {exc} (declare prefixes in [normalizer.namespaces])")
        self.check_fields_known(set(paths), "fields")
        kw.update(namespaces=dict(namespaces), entries=entries, paths=dict(paths))

    def check_fields_known(self, known: set[str], where: str) -> None:
        """With a fixed field list, every name the mapping reads must be in it."""
        used = {n for v in self.o.get("columns", {}).values() for n in ([v] if isinstance(v, str) else v)}
        if "field" in self.o.get("txn_type", {}):
            used.add(self.o["txn_type"]["field"])
        for name in sorted(used - known):
            self.fail(where, f"has no field {name!r}, which [normalizer.columns] or txn_type.field reads")


def _split_path(path: str) -> tuple[int, str, str]:
    """An XML field path as (levels up, ElementTree path, attribute or "")."""
    up = 0
    while path.startswith("../"):
        up, path = up + 1, path[3:]
    attr = ""
    m = _ATTRIBUTE.match(path)
    if m:
        path, attr = m["path"] or ".", m["attr"]
    return up, path or ".", attr


# -- readers: raw bytes -> rows ----------------------------------------------------------------------------------

class Row(NamedTuple):
    """One data row: its 1-based line, its fields by name, its raw text; ``problem`` rejects it outright."""

    line: int
    fields: dict[str, str]
    raw: str
    problem: str = ""


@dataclass
class Declared:
    """The statement's own control totals: check -> (text as written, line it is on)."""

    values: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_line: int = 0


def _text_lines(spec: BankSpec, stream, limits: StatementLimits, where: dict) -> Iterator[tuple[int, str]]:
    """(line, text) of the file, streamed within the statement limits. Undecodable bytes make the whole file
    untrustworthy: IntegrityError with its line."""
    # split at "\n" only, not splitlines(): the latter also splits on \x1c, \u2028…, which would shift line numbers.
    for number, text in decoded_lines(stream, spec.encoding, limits, where,
                                      hint="check the encoding in the channel file's [normalizer] table, or "
                                           "download the statement again in binary mode"):
        yield number, text.rstrip("\r")


def _data_lines(spec: BankSpec, lines: Iterator[tuple[int, str]], declared: Declared,
                where: dict) -> Iterator[tuple[int, str]]:
    """(line, text) of the lines that are data in a text statement; footer captures go to ``declared``.

    Skipped: the first ``skip_lines``, blank lines and lines matching a skip
    pattern. A line matching a footer pattern is trailer; after the first one
    only trailer, skipped or blank lines may follow (anything else means two
    statements glued together or a damaged file).
    """
    in_footer = False
    for number, text in lines:
        declared.last_line = number
        if number <= spec.skip_lines or not text.strip() or any(p.search(text) for p in spec.skip_patterns):
            continue
        footer = next((m for p in spec.footer_patterns if (m := p.search(text))), None)
        if footer:
            in_footer = True
            for group, value in footer.groupdict().items():
                if value is None:  # an optional group that did not take part
                    continue
                if group in declared.values:
                    raise IntegrityError(f"footer value {group!r} appears twice (lines {declared.values[group][1]} "
                                         f"and {number})", line=number, **where,
                                         hint="the file may hold two statements; ask the bank for one per day")
                declared.values[group] = (value, number)
            continue
        if in_footer:
            raise IntegrityError("a data line after the footer", line=number, **where,
                                 hint="the file is damaged or holds two statements; download it again")
        yield number, text
    if spec.footer_patterns and not in_footer:
        raise IntegrityError("the footer (control totals) is missing: the file is truncated",
                             line=declared.last_line or None, **where, hint="download the statement again")


def read_csv(spec: BankSpec, stream, limits: StatementLimits, declared: Declared, where: dict) -> Iterator[Row]:
    """Rows of a delimited statement, fields named by the header row or by ``names``."""
    quoting = dict(quotechar=spec.quote, quoting=csv.QUOTE_MINIMAL) if spec.quote else dict(quoting=csv.QUOTE_NONE)
    names = list(spec.names)
    for number, text in _data_lines(spec, _text_lines(spec, stream, limits, where), declared, where):
        try:
            values = [v.strip() for v in next(csv.reader([text], delimiter=spec.delimiter, strict=True, **quoting))]
        except csv.Error as exc:
            if not names:
                raise IntegrityError(f"the header row is not valid CSV: {exc}", line=number, **where,
                                     hint="check delimiter and quote in the channel file") from exc
            yield Row(number, {}, text, f"not valid CSV: {exc}")
            continue
        if not names:
            names = values
            missing = sorted(spec.source_fields() - set(names))
            if missing or len(set(names)) != len(names):
                problem = (f"lacks the column(s) {', '.join(missing)}" if missing else "repeats a column name")
                raise IntegrityError(f"header row {problem}", line=number, **where,
                                     hint="the bank changed its format (or skip_lines is wrong); update the spec "
                                          "in the channel file")
            continue
        if len(values) != len(names):
            yield Row(number, {}, text, f"expected {len(names)} fields, found {len(values)}")
            continue
        yield Row(number, dict(zip(names, values)), text)
    if not names:
        raise IntegrityError("no header row: the statement is empty", line=declared.last_line or None, **where,
                             hint="download the statement again")


def read_fixed(spec: BankSpec, stream, limits: StatementLimits, declared: Declared, where: dict) -> Iterator[Row]:
    """Rows of a fixed-width statement; positions count characters or, for GBK layouts, bytes."""
    by_bytes = spec.width_unit == "bytes"
    for number, text in _data_lines(spec, _text_lines(spec, stream, limits, where), declared, where):
        # Re-encoding a decoded line gives back its bytes: the codecs we accept round-trip.
        record = text.encode(spec.encoding) if by_bytes else text
        if len(record) > spec.record_length:
            yield Row(number, {}, text, f"record is {len(record)} {spec.width_unit} long, the layout "
                                        f"{spec.record_length}")
            continue
        fields, problems = {}, []
        for name, (start, width) in spec.slices.items():
            piece = record[start:start + width]
            if by_bytes:
                try:
                    piece = piece.decode(spec.encoding)
                except UnicodeDecodeError:
                    problems.append(f"field {name} (bytes {start + 1}-{start + width}) cuts a multi-byte character")
                    continue
            fields[name] = piece.strip()
        yield Row(number, fields, text, "; ".join(problems))


def read_xml(spec: BankSpec, stream, limits: StatementLimits, declared: Declared, where: dict) -> Iterator[Row]:
    """One row per element selected by ``entries``; fields by relative path. The encoding is the XML's own.

    The document is read line by line within the statement limits; ElementTree keeps the whole tree (and the
    lines are kept to show an entry's text in a reject), so an XML statement is held in memory, at most
    ``max_statement_bytes`` of it."""
    parser = ET.XMLPullParser(events=("start", "end"))
    lines: list[bytes] = []
    ended = 1  # whether the document ends with a line end (an empty document counts one empty line)
    first_line: dict[ET.Element, int] = {}
    last_line: dict[ET.Element, int] = {}
    parent: dict[ET.Element, ET.Element] = {}
    stack: list[ET.Element] = []
    root = None
    try:
        # Fed a line at a time so that each element's events tell which line it is on.
        for number, chunk in read_lines(stream, limits, where):
            ended = int(chunk.endswith(b"\n"))
            lines.append(chunk[:-1] if ended else chunk)
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start":
                    first_line[elem] = number
                    if stack:
                        parent[elem] = stack[-1]
                    else:
                        root = elem
                    stack.append(elem)
                else:
                    last_line[elem] = number
                    stack.pop()
        parser.close()
    except ET.ParseError as exc:
        raise IntegrityError(f"not well-formed XML: {exc}", line=exc.position[0], **where,
                             hint="the file is truncated or damaged; download the statement again") from exc
    if root is None:
        raise IntegrityError("the statement is empty", line=1, **where, hint="download the statement again")
    declared.last_line = len(lines) + ended  # as split("\n") counts: a final line end starts an empty last line

    def raw_text(elem) -> str:
        # The entry's source lines, indentation dropped, so a reject shows the XML as the bank wrote it.
        return "".join(ln.decode("utf-8", "replace").strip() for ln in lines[first_line[elem] - 1:last_line[elem]])

    for check, path in spec.totals.items():
        found = [e for e in _find(root, path, spec.namespaces, parent)]
        values = [v for e, v in found if v]
        if not values:
            raise IntegrityError(f"control total {check} ({path}) is missing", line=declared.last_line, **where,
                                 hint="the statement is incomplete; download it again or ask the bank")
        # Several statements in one file each carry their own totals: they add up.
        declared.values[check] = (values[0] if len(values) == 1 else "+".join(values), first_line[found[0][0]])

    for entry in root.findall(spec.entries, spec.namespaces):
        fields, problems = {}, []
        for name, path in spec.paths.items():
            values = sorted({v for _, v in _find(entry, path, spec.namespaces, parent) if v})
            if len(values) > 1:
                problems.append(f"{name} has {len(values)} different values ({', '.join(values)}): one entry "
                                f"holds several transactions")
            elif values:
                fields[name] = values[0]  # an ambiguous field stays absent, so it cannot leak into totals
        yield Row(first_line[entry], fields, raw_text(entry), "; ".join(problems))


def _find(elem, path: str, namespaces: dict, parent: dict) -> list[tuple[ET.Element, str]]:
    """(element, stripped text or attribute value) for each match of a field path below (or above) ``elem``."""
    up, inner, attr = _split_path(path)
    for _ in range(up):
        elem = parent.get(elem)
        if elem is None:
            return []
    return [(e, (e.get(attr, "") if attr else (e.text or "")).strip()) for e in elem.findall(inner, namespaces)]


READERS: dict[str, Callable[..., Iterator[Row]]] = {"csv": read_csv, "fixed": read_fixed, "xml": read_xml}


# -- mapper: fields -> standard record ----------------------------------------------------------------------------

class RowMapper:
    """Applies a spec's columns, constants, maps and rules to one row's fields."""

    def __init__(self, spec: BankSpec, channel: str):
        self.spec, self.channel = spec, channel

    def value(self, fields: dict, column: str) -> str:
        """The column's constant, or the first non-empty of its source fields, or ""."""
        if column in self.spec.constants:
            return self.spec.constants[column]
        return next((fields[n] for n in self.spec.columns.get(column, ()) if fields.get(n)), "")

    def money(self, text: str, what: str, *, total: bool = False) -> Decimal:
        """An amount in major units; thousands separators removed, minor units scaled. Never float.

        An amount of a row is within DECIMAL(18,2) (``check_money``); a control total (``total``) may be larger:
        rows at the maximum add up past it."""
        text = text.strip()
        if self.spec.thousands_separator:
            text = text.replace(self.spec.thousands_separator, "")
        if self.spec.amount_scale:
            if not _SCALED.match(text):
                raise RowError(f"{what} {text!r} is not a whole number of minor units")
            value = Decimal(text).scaleb(-self.spec.amount_scale)
            if value != value.quantize(CENT):
                raise RowError(f"{what} {text!r} has more precision than a cent")
            value = value.quantize(CENT)
            if total:
                return value
            try:
                return check_money(value, what)  # the same range as any amount
            except MoneyError as exc:
                raise RowError(str(exc)) from None
        try:
            return parse_total(text) if total else parse_money(text)
        except MoneyError as exc:
            raise RowError(f"{what}: {exc}") from None

    def type_and_amount(self, fields: dict) -> tuple[str | None, Decimal]:
        """(txn_type, positive amount). The type is None when the row's type cannot be told (amount still read)."""
        amount = self.money(self.value(fields, "amount"), "amount")
        spec = self.spec
        if spec.type_field:
            source = fields.get(spec.type_field, "")
            kind = spec.type_map.get(source)
            if kind is None:
                raise _UnknownType(amount, f"{spec.type_field} {source!r} is not in txn_type.map")
        else:
            kind = spec.type_default
        if amount.is_signed():  # the sign, not the value: "-0.00" is a (zero) refund too
            # A negative amount is a refund only when configured so, and it must not contradict the type column.
            if not spec.negative_is_refund:
                raise _UnknownType(abs(amount), f"negative amount {amount} (txn_type.negative_is_refund is off)")
            if spec.type_field and kind != "REFUND":
                raise _UnknownType(abs(amount), f"negative amount {amount} on a {kind} row")
            kind, amount = "REFUND", -amount
        return kind, amount

    def time(self, text: str) -> str:
        """The source time in the business time zone, as YYYY-MM-DD HH:MM:SS (the one time rule, ``parse_time``)."""
        moment = parse_time(text, self.spec.time_formats, what="txn_time")
        if moment.tzinfo is None and self.spec.time_zone is not None:
            moment = moment.replace(tzinfo=self.spec.time_zone)
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.spec.business_zone)
        return format_time(moment)

    def record(self, fields: dict, kind: str, amount: Decimal, source_file: str, line: int) -> StandardRecord:
        """The standard record of a row whose type and amount are already known."""
        v = lambda column: self.value(fields, column)  # noqa: E731
        if "status" in self.spec.constants:
            status = self.spec.constants["status"]
        else:
            status = self.spec.status_map.get(v("status"))
            if status is None:
                raise RowError(f"status {v('status')!r} is not in status_map")
        currency = v("currency").upper()
        if not _CURRENCY.match(currency):
            raise RowError(f"currency {v('currency')!r} is not an ISO 4217 code")
        refund = kind == "REFUND"
        return StandardRecord(
            channel=self.channel, merchant_id=v("merchant_id"), txn_type=kind, order_no=v("order_no"),
            refund_no=v("refund_no") if refund else "", channel_txn_id=v("channel_txn_id"),
            channel_refund_id=v("channel_refund_id") if refund else "", status=status, currency=currency,
            amount=amount, fee=self.money(v("fee") or "0", "fee"),
            coupon_amount=self.money(v("coupon_amount") or "0", "coupon_amount"), txn_time=self.time(v("txn_time")),
            payer_id=v("payer_id"), bank=v("bank"), source_file=source_file, source_line=line)


class _UnknownType(RowError):
    """The row's type cannot be told, though its amount was read (so ``sum`` can still be checked)."""

    def __init__(self, amount: Decimal, reason: str):
        super().__init__(reason)
        self.amount = amount


# -- totals -------------------------------------------------------------------------------------------------------

class _Tally:
    """What the data rows add up to, and which checks a rejected row left unverifiable."""

    def __init__(self):
        self.totals = {c: (0 if c.endswith("count") else Decimal(0)) for c in CHECKS}
        self.blind: set[str] = set()

    def add(self, kind: str | None, amount: Decimal | None) -> None:
        self.totals["count"] += 1
        if amount is None:
            self.blind.update(c for c in CHECKS if c != "count")
            return
        self.totals["sum"] += amount
        if kind is None:
            self.blind.update(c for c in CHECKS if c.startswith(("payment_", "refund_")))
            return
        prefix = kind.lower()
        self.totals[f"{prefix}_count"] += 1
        self.totals[f"{prefix}_sum"] += amount


# -- the normalizer -----------------------------------------------------------------------------------------------

class BankSpecNormalizer(Normalizer):
    """A bank statement read as its channel file's [normalizer] spec says."""

    def __init__(self, channel):
        super().__init__(channel)
        self.spec = BankSpec.parse(self.options, channel.conf_file, channel.name)
        self.mapper = RowMapper(self.spec, channel.name)

    @exact_totals
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        declared = Declared()
        report, tally = ControlReport(), _Tally()
        for row in READERS[self.spec.format](self.spec, raw.stream, self.limits, declared, where):
            report.data_rows += 1
            # Type and amount first, even for a row that will be rejected: the bank's totals include it.
            kind = amount = None
            try:
                kind, amount = self.mapper.type_and_amount(row.fields)
            except _UnknownType as exc:
                amount, reason = exc.amount, str(exc)
            except (RowError, MoneyError, TimeError) as exc:
                reason = str(exc)
            tally.add(kind, amount)
            order_no = readable_order_no(self.mapper.value(row.fields or {}, "order_no"))
            if row.problem or kind is None:
                sink.reject(row.line, row.problem or reason, row.raw, order_no)
                continue
            try:
                sink.record(self.mapper.record(row.fields, kind, amount, raw.name, row.line))
            except (RowError, MoneyError, TimeError, ValueError) as exc:
                sink.reject(row.line, str(exc), row.raw, order_no)
        self._check_totals(declared, tally, report, where)
        return report

    def _check_totals(self, declared: Declared, tally: _Tally, report: ControlReport, where: dict) -> None:
        """Compare each configured control total with the rows; IntegrityError at the first footer line that differs."""
        problems, line = [], None
        for check, source in self.spec.totals.items():
            # text formats capture footer groups by name; xml stores the values under the check's own name
            text, at = declared.values.get(source if self.spec.format != "xml" else check, ("", None))
            if at is None:
                raise IntegrityError(f"the footer does not give control total {check} (group {source!r})",
                                     line=declared.last_line or None, **where,
                                     hint="the footer changed or the file is truncated; download it again or "
                                          "update footer_patterns")
            computed = tally.totals[check]
            report.declared[check] = text
            report.computed[check] = str(computed) if check.endswith("count") else format_money(computed)
            if check in tally.blind:
                continue  # a rejected row's amount/type is unknown: unverified, not wrong (it is in the rejects)
            try:
                ok = self._declared_value(check, text) == computed
            except (RowError, MoneyError, ValueError):
                ok = False
            if not ok:
                problems.append(f"{check} says {text}, the rows add up to {report.computed[check]}")
                line = line or at
        report.unverified = sorted(c for c in self.spec.totals if c in tally.blind)
        if problems:
            raise IntegrityError("control totals disagree with the rows: " + "; ".join(problems), line=line, **where,
                                 hint="nothing was published for this channel and date; download the statement "
                                      "again or ask the bank to re-issue it")

    def _declared_value(self, check: str, text: str):
        """A declared total as a number; several statements' totals ("a+b") are added up."""
        parts = text.split("+")
        if check.endswith("count"):
            sep = self.spec.thousands_separator
            return sum(int(p.replace(sep, "") if sep else p) for p in parts)
        return sum((self.mapper.money(p, check, total=True) for p in parts), Decimal(0))


NORMALIZER = BankSpecNormalizer
