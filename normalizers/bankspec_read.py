"""The three readers of bank statements by spec (CSV-shaped, fixed width, XML): raw bytes to rows
``(line, fields, raw text)``, collecting the control totals the statement declares."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple

from core.errors import IntegrityError
from normalizers.bankspec_spec import BankSpec, split_path
from normalizers.base import StatementLimits, decoded_lines, read_lines


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
    up, inner, attr = split_path(path)
    for _ in range(up):
        elem = parent.get(elem)
        if elem is None:
            return []
    return [(e, (e.get(attr, "") if attr else (e.text or "")).strip()) for e in elem.findall(inner, namespaces)]


READERS: dict[str, Callable[..., Iterator[Row]]] = {"csv": read_csv, "fixed": read_fixed, "xml": read_xml}
