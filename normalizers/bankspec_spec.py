"""A bank statement spec (the channel file's ``[normalizer]`` table for ``normalizer = "bankspec"``), validated once into
``BankSpec``: a wrong spec is a ConfigError naming the channel file and the key (reference: EXTENDING.md)."""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from normalizers.base import LIMIT_OPTIONS
from schemas.money import MoneyError, parse_money
from schemas.standard import STATUSES, TXN_TYPES


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
SCALED_DIGITS = re.compile(r"^-?[0-9]+$")  # ASCII digits only (\d takes any script)
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
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
        if "currency" in constants and not CURRENCY_CODE.match(constants["currency"]):
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
            _, inner, _ = split_path(path)
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


def split_path(path: str) -> tuple[int, str, str]:
    """An XML field path as (levels up, ElementTree path, attribute or "")."""
    up = 0
    while path.startswith("../"):
        up, path = up + 1, path[3:]
    attr = ""
    m = _ATTRIBUTE.match(path)
    if m:
        path, attr = m["path"] or ".", m["attr"]
    return up, path or ".", attr
