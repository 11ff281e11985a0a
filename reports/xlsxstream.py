"""A small streaming XLSX writer: rows go to disk as they are appended, so memory does not grow with them.

Pure Python and ``zipfile``; it writes only what report.xlsx needs, in the
SpreadsheetML (ECMA-376 / ISO 29500, transitional) parts Excel, LibreOffice
and openpyxl read::

    [Content_Types].xml          what each part is
    _rels/.rels                  the package's entry point: xl/workbook.xml
    xl/workbook.xml              the sheets in order, each filter's _FilterDatabase name
    xl/_rels/workbook.xml.rels   workbook -> sheets and styles
    xl/styles.xml                fonts, fills, number formats: one cell format (xf) per Style used
    xl/worksheets/sheetN.xml     tab colour, frozen top rows, column widths, the rows, the filter

No docProps (they are optional) and no theme (readers fall back to the
default Office theme). Output is a pure function of what was written: every
zip entry is dated 1980-01-01, so the same rows give the same bytes.

Use::

    with Workbook(number_formats={Decimal: "#,##0.00", int: "0"}) as book:
        sheet = book.add_sheet("Breaks", tab_color="C2410C", widths={1: 12, 2: 26}, freeze_rows=1)
        sheet.append(["order_no", "amount"], Style(bold=True))
        sheet.append(["S0001", Decimal("12.30")])
        sheet.auto_filter(f"A1:B{sheet.rows}")
        book.save(binary_stream)          # sheets in creation order, or save(out, order=[...])

Cell values, by exact type (convert subclasses first): ``None`` or ``""`` (no
cell), ``str`` (an inline string, always text: never a formula, a number or
an error, whatever it looks like), ``int`` and ``Decimal`` (numbers, written
as their exact decimal text, never through float, with the number format
``number_formats`` gives their type unless the row's Style names one).
Anything else (float, bool, dates) is a ``TypeError``: the caller decides how
such values should look.

Each sheet streams its ``<row>`` elements to its own anonymous temporary file
(sheets can be appended to in any interleaving); ``save`` writes the small
parts, then copies each sheet between its head and tail into the zip,
deflated. The head (tab colour, dimension, frozen pane, widths) is written at
save, so it can reflect what the sheet holds.

A row is written from a template when it can be: its shape (each value's
type, which values are empty, the style) gets the row's XML once, with a
``%s`` per cell, and a row of that shape whose texts need no escaping is one
``%`` (``Sheet.append_plain``). Any other row is written cell by cell; both
ways give the same bytes (tests/reports/test_fast_paths.py).

Text is XML-escaped (``& < >``; ``\\r`` as ``&#13;`` so it survives XML's
line-end normalisation) and escaped the SpreadsheetML way (ST_Xstring): a
character XML 1.0 cannot hold (C0 controls other than tab/LF/CR, U+FFFE,
U+FFFF, lone surrogates) is written as ``_xHHHH_``, and a literal ``_xHHHH_``
in the text has its underscore written as ``_x005F_``, so that Excel shows
the text exactly as given. (openpyxl does not decode ``_xHHHH_``: it shows
such text in its escaped form.)

Limits (checked: ``ValueError``): 1,048,576 rows and 16,384 columns per sheet;
sheet names of 1-31 characters, none of ``[]:*?/\\``, no control characters,
not starting or ending with ``'``, unique ignoring case; numbers must be
finite. Not checked: Excel's 32,767 characters per cell (longer text is
written, and Excel truncates or repairs it on opening); Excel keeps 15
significant digits of a number (the file holds the exact decimal; a reader
parsing it to a double rounds beyond that). Not supported: shared strings,
formulas, dates, booleans, merged cells, frozen columns, rich text, several
filters per sheet. ``save`` hands ``out`` to ``zipfile``, which can write to an
unseekable stream (with data descriptors) but wants ``tell``; report.xlsx
goes through a local temporary file.

Size: one file format, one module: the parts below refer to each other's ids (sheets, styles,
shared names), and splitting them would spread one ZIP package over several files.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import BinaryIO, Callable, Iterable, Mapping, Sequence

MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
MAX_SHEET_NAME = 31
# zlib level of the parts. Deflating report.xlsx's 180 MB of XML at 200,000 rows (bench/report_scale.py):
# level 1: 0.48 s CPU, 21.6 MB; 2: 0.50 s, 20.8 MB; 3: 0.79 s, 19.3 MB; 4: 0.86 s, 19.4 MB; 5: 1.31 s, 17.8 MB;
# 6 (zlib's default): 2.03 s, 17.2 MB. 3 keeps the file the size openpyxl's was (19.2 MB) for 40% of 6's time.
COMPRESS_LEVEL = 3

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
CT_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_WORKBOOK = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
CT_STYLES = "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# Number formats every reader knows by id (ECMA-376 Part 1, 18.8.30); others get ids from 164.
BUILTIN_FORMATS = {"General": 0, "0": 1, "0.00": 2, "#,##0": 3, "#,##0.00": 4, "0%": 9, "0.00%": 10, "@": 49}
FIRST_CUSTOM_FORMAT = 164
DEFAULT_FONT = ("Calibri", 11)

# Text that needs more than copying: XML's specials, \r, characters XML 1.0 cannot hold, and a literal
# _xHHHH_ (which Excel would decode). One search decides; nearly all cells need none of it.
_NEEDS_WORK = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_MAX_SHAPES = 1024  # row templates kept per workbook (a report has a few dozen shapes) ...
_MAX_SHAPE_VALUES = 256  # ... each for a row of at most this many values (wider rows: cell by cell)
SEAM = "\xa6"  # joins a row's texts for the row-wide tests (printable, so isprintable still speaks for the texts)
_SPACE_AFTER_SEAM, _SPACE_BEFORE_SEAM = SEAM + " ", " " + SEAM
_LITERAL_ESCAPE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BAD_SHEET_NAME = re.compile(r"[\[\]:*?/\\\x00-\x1f]")
_REF = re.compile(r"([A-Z]{1,3})([1-9][0-9]{0,6}):([A-Z]{1,3})([1-9][0-9]{0,6})")
_HEX_COLOR = re.compile(r"(?:[0-9A-Fa-f]{2})?[0-9A-Fa-f]{6}")
_FLUSH_ROWS = 512  # rows of XML held per sheet before they go to its file (450 kB of report.xlsx's rows)


def column_letter(index: int) -> str:
    """The letters of the 1-based column ``index``: 1 -> A, 27 -> AA, 16384 -> XFD."""
    if not 1 <= index <= MAX_COLUMNS:
        raise ValueError(f"column {index} is outside 1..{MAX_COLUMNS}")
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


_LETTERS: list[str] = []


def _letters(count: int) -> list[str]:
    """Column letters A.. for at least ``count`` columns (grown on demand, shared by every sheet)."""
    while len(_LETTERS) < count:
        _LETTERS.append(column_letter(len(_LETTERS) + 1))
    return _LETTERS


def xml_text(text: str) -> str:
    """``text`` as the content of a ``<t>`` element (see the module's note on escaping)."""
    if "_x" in text:
        text = _LITERAL_ESCAPE.sub("_x005F_", text)
    text = _NOT_XML.sub(lambda m: f"_x{ord(m.group()):04X}_", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def plain_texts(joined: str) -> bool:
    """True when none of the texts joined (with ``SEAM``) in ``joined`` needs more than copying into a ``<t>``:
    no XML special, nothing ``_NEEDS_WORK`` finds, no space at either end (xml:space). False may be a false alarm.

    1.3 us a report row, against 2.5 us for ``_NEEDS_WORK`` and a regex for the ends: ``isprintable`` rules out
    the control characters, surrogates and U+FFFE/FFFF (the space is the only printable character <= " "), "_x"
    stands for _xHHHH_, and a text's ends are the row's, or next to a seam.
    """
    return joined.isprintable() and not (
        "&" in joined or "<" in joined or ">" in joined or "_x" in joined or joined[0] == " "
        or joined[-1] == " " or _SPACE_AFTER_SEAM in joined or _SPACE_BEFORE_SEAM in joined)


def xml_attr(text: str) -> str:
    """``text`` as a double-quoted XML attribute value."""
    return (xml_text(text).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;"))


def _argb(color: str) -> str:
    if not _HEX_COLOR.fullmatch(color):
        raise ValueError(f"colour {color!r} is not RRGGBB or AARRGGBB hex")
    return (color if len(color) == 8 else "FF" + color).upper()


@dataclass(frozen=True)
class Style:
    """How a row's cells look. ``num_format`` applies to its numbers (None: the workbook's format for the type);
    ``color`` and ``fill`` are RRGGBB hex; ``valign`` is top, center or bottom."""

    bold: bool = False
    size: float | None = None
    color: str | None = None
    fill: str | None = None
    valign: str | None = None
    num_format: str | None = None


PLAIN = Style()


class _Styles:
    """The cell formats (xf) used so far, built as rows ask for them; written to xl/styles.xml at save."""

    def __init__(self, number_formats: Mapping[type, str]):
        self.number_formats = dict(number_formats)
        self.formats: dict[str, int] = {}          # custom format code -> id
        self.fonts: list[tuple] = [(False, None, None)]
        self.fills: list[str | None] = [None, None]  # 0 none, 1 gray125: both reserved by the spec
        self.xfs: list[tuple] = [(0, 0, 0, None)]  # (numFmtId, fontId, fillId, valign)
        self._attrs: dict[Style, tuple[str, str, str]] = {}

    def _format_id(self, code: str | None) -> int:
        if code is None:
            return 0
        if code in BUILTIN_FORMATS:
            return BUILTIN_FORMATS[code]
        return self.formats.setdefault(code, FIRST_CUSTOM_FORMAT + len(self.formats))

    @staticmethod
    def _index(table: list, item) -> int:
        if item not in table:
            table.append(item)
        return table.index(item)

    def _xf(self, style: Style, num_format: str | None) -> int:
        if style.valign not in (None, "top", "center", "bottom"):
            raise ValueError(f"valign {style.valign!r} is not top, center or bottom")
        font = self._index(self.fonts, (style.bold, style.size, style.color and _argb(style.color)))
        fill = 0 if style.fill is None else self._index(self.fills, _argb(style.fill))
        return self._index(self.xfs, (self._format_id(num_format), font, fill, style.valign))

    def attrs(self, style: Style) -> tuple[str, str, str]:
        """The ``<c>`` attributes after ``r`` for a text, a Decimal and an int cell of this style."""
        found = self._attrs.get(style)
        if found is None:
            def s(xf: int) -> str:
                return f' s="{xf}"' if xf else ""

            text = s(self._xf(style, None)) + ' t="inlineStr"'
            dec = s(self._xf(style, style.num_format or self.number_formats.get(Decimal)))
            num = s(self._xf(style, style.num_format or self.number_formats.get(int)))
            found = self._attrs[style] = (text, dec, num)
        return found

    def xml(self) -> str:
        out = [DECLARATION, f'<styleSheet xmlns="{MAIN_NS}">']
        if self.formats:
            out.append(f'<numFmts count="{len(self.formats)}">')
            out += [f'<numFmt numFmtId="{i}" formatCode="{xml_attr(code)}"/>' for code, i in self.formats.items()]
            out.append("</numFmts>")
        out.append(f'<fonts count="{len(self.fonts)}">')
        for bold, size, color in self.fonts:
            out.append("<font>" + ("<b/>" if bold else "") + f'<sz val="{size or DEFAULT_FONT[1]}"/>'
                       + (f'<color rgb="{color}"/>' if color else "")
                       + f'<name val="{DEFAULT_FONT[0]}"/><family val="2"/></font>')
        out.append(f'</fonts><fills count="{len(self.fills)}"><fill><patternFill patternType="none"/></fill>'
                   '<fill><patternFill patternType="gray125"/></fill>')
        out += [f'<fill><patternFill patternType="solid"><fgColor rgb="{rgb}"/><bgColor indexed="64"/>'
                '</patternFill></fill>' for rgb in self.fills[2:]]
        out.append('</fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
                   '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
                   f'<cellXfs count="{len(self.xfs)}">')
        for fmt, font, fill, valign in self.xfs:
            applied = ((' applyNumberFormat="1"' if fmt else "") + (' applyFont="1"' if font else "")
                       + (' applyFill="1"' if fill else "") + (' applyAlignment="1"' if valign else ""))
            attrs = f'numFmtId="{fmt}" fontId="{font}" fillId="{fill}" borderId="0" xfId="0"{applied}'
            out.append(f'<xf {attrs}><alignment vertical="{valign}"/></xf>' if valign else f"<xf {attrs}/>")
        out.append('</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
                   '<dxfs count="0"/></styleSheet>')
        return "".join(out)


class Sheet:
    """One worksheet: ``append`` rows, optionally ``auto_filter``; made by ``Workbook.add_sheet``."""

    def __init__(self, book: "Workbook", name: str, tab_color: str | None, widths: Mapping[int, float],
                 freeze_rows: int):
        if not 0 <= freeze_rows < MAX_ROWS:
            raise ValueError(f"freeze_rows {freeze_rows} is outside 0..{MAX_ROWS - 1}")
        for col, width in widths.items():
            column_letter(col)  # in range
            if not 0 < width <= 255:
                raise ValueError(f"width {width} of column {col} is outside (0, 255]")
        self.book, self.name = book, name
        self.tab_color = tab_color and _argb(tab_color)
        self.widths = dict(sorted(widths.items()))
        self.freeze_rows = freeze_rows
        self.rows = 0            # rows appended (empty ones included): the last row's number
        self.columns = 0         # the widest row appended
        self.filter_ref: str | None = None
        self._file = tempfile.TemporaryFile(prefix="xlsx-sheet-")
        self._parts: list[str] = []
        self._plain = book._styles.attrs(PLAIN)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, values: Sequence = (), style: Style | None = None) -> None:
        """One row under the last: ``values`` from column A (see the module's note on values), in ``style``.

        An empty sequence is an empty row (nothing is written for it; the next row is numbered after it).
        """
        if not self.append_plain(values, style):
            self._append_cells(values, style)

    def append_plain(self, values: Sequence, style: Style | None = None,
                     accept: Callable[[str], bool] | None = None) -> bool:
        """``append`` of a row that needs nothing but copying, done quickly; False (nothing written) for another.

        Such a row holds only str, int, finite Decimal and None, and no text needing escaping or xml:space. It is
        filled into the template of its shape (each value's type, which are empty, the style) by one %: the
        cells' XML made in C, not in an f-string per cell (10M-record day, 141,674 rows: 1.7 s -> 0.9 s).
        ``accept``, when given, must say yes too, to the row's texts joined by SEAM (printable: no control
        character can reach it).
        """
        n = self.rows + 1
        if n > MAX_ROWS:
            return False
        try:
            shape = self.book._shapes.get((style, tuple(map(type, values)), tuple(map(bool, values))), False)
        except Exception:  # bool() refused by an odd value: the cells say what is wrong with it
            return False
        if shape is False:
            shape = self.book._shape(values, style)
        if shape is None:
            return False
        template, cells, texts, decimals = shape
        joined = SEAM.join(texts(values)) if texts else ""
        if (texts and not plain_texts(joined)) or (accept is not None and not accept(joined)):
            return False
        for i in decimals:
            if not values[i].is_finite():
                return False
        self.rows = n
        if len(values) > self.columns:
            self.columns = len(values)
        self._parts.append(str(n).join(template) % cells(values))
        if len(self._parts) > _FLUSH_ROWS:
            self._flush()
        return True

    def _append_cells(self, values: Sequence, style: Style | None) -> None:
        """``append`` cell by cell: every value checked and escaped as it needs."""
        n = self.rows + 1
        if n > MAX_ROWS:
            raise ValueError(f"sheet {self.name!r} is full: {MAX_ROWS:,} rows")
        self.rows = n
        count = len(values)
        if not count:
            return
        if count > MAX_COLUMNS:
            self.rows = n - 1
            raise ValueError(f"a row of {count} values: a sheet has {MAX_COLUMNS:,} columns")
        text_attrs, dec_attrs, int_attrs = self._plain if style is None else self.book._styles.attrs(style)
        letters = _letters(count)
        r = str(n)
        out = [f'<row r="{r}">']
        needs_work = _NEEDS_WORK.search
        try:
            for letter, v in zip(letters, values):
                t = type(v)
                if t is str:
                    if not v:
                        continue
                    space = ' xml:space="preserve"' if v[0] <= " " or v[-1] <= " " else ""
                    if needs_work(v):
                        v = xml_text(v)
                    out.append(f'<c r="{letter}{r}"{text_attrs}><is><t{space}>{v}</t></is></c>')
                elif t is Decimal:
                    if not v.is_finite():
                        raise ValueError(f"{v} in {self.name!r} row {n}: a cell holds finite numbers only")
                    out.append(f'<c r="{letter}{r}"{dec_attrs}><v>{v}</v></c>')
                elif t is int:
                    out.append(f'<c r="{letter}{r}"{int_attrs}><v>{v}</v></c>')
                elif v is not None:
                    raise TypeError(f"{t.__name__} value {v!r} in {self.name!r} row {n}: a cell takes str, int "
                                    "or Decimal (convert bool, float and dates to one of them first)")
        except BaseException:
            self.rows = n - 1  # a refused row leaves nothing behind
            raise
        self.columns = max(self.columns, count)
        out.append("</row>")
        self._parts.append("".join(out))
        if len(self._parts) > _FLUSH_ROWS:
            self._flush()

    def auto_filter(self, ref: str) -> None:
        """Filter buttons over the range ``ref`` (``A1:Q46``: its first row is the header); one per sheet."""
        m = _REF.fullmatch(ref)
        if not m or not (_column_index(m.group(1)) <= _column_index(m.group(3)) <= MAX_COLUMNS
                         and int(m.group(2)) <= int(m.group(4)) <= MAX_ROWS):
            raise ValueError(f"filter range {ref!r} is not a range like A1:Q46 within the sheet")
        self.filter_ref = ref

    def _flush(self) -> None:
        if self._parts:
            self._file.write("".join(self._parts).encode("utf-8"))
            self._parts.clear()

    def _head(self, selected: bool) -> str:
        out = [DECLARATION, f'<worksheet xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">']
        if self.tab_color:
            out.append(f'<sheetPr><tabColor rgb="{self.tab_color}"/></sheetPr>')
        last = f"{column_letter(max(1, self.columns))}{max(1, self.rows)}"
        selection = ' tabSelected="1"' if selected else ""
        out.append(f'<dimension ref="{"A1" if last == "A1" else "A1:" + last}"/><sheetViews>'
                   f'<sheetView{selection} workbookViewId="0">')
        if self.freeze_rows:
            top = f"A{self.freeze_rows + 1}"
            out.append(f'<pane ySplit="{self.freeze_rows}" topLeftCell="{top}" activePane="bottomLeft" '
                       f'state="frozen"/><selection pane="bottomLeft" activeCell="{top}" sqref="{top}"/>')
        out.append('</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>')
        if self.widths:
            out.append("<cols>" + "".join(f'<col min="{c}" max="{c}" width="{w}" customWidth="1"/>'
                                          for c, w in self.widths.items()) + "</cols>")
        out.append("<sheetData>")
        return "".join(out)

    def _tail(self) -> str:
        auto = f'<autoFilter ref="{self.filter_ref}"/>' if self.filter_ref else ""
        return ('</sheetData>' + auto +
                '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
                '</worksheet>')

    def _write_to(self, zf: zipfile.ZipFile, part: str, selected: bool) -> None:
        """This sheet as the zip entry ``part``: head, the rows from the temporary file, tail."""
        self._flush()
        head, tail = self._head(selected).encode("utf-8"), self._tail().encode("utf-8")
        size = len(head) + self._file.tell() + len(tail)
        self._file.seek(0)
        with zf.open(part, "w", force_zip64=size * 1.05 > zipfile.ZIP64_LIMIT) as dst:  # zipfile's own margin
            dst.write(head)
            shutil.copyfileobj(self._file, dst, 1 << 20)
            dst.write(tail)

    def close(self) -> None:
        """Drop the rows' temporary file (the sheet takes no more rows and cannot be saved)."""
        self._parts.clear()
        self._file.close()


class Workbook:
    """Sheets that stream their rows to temporary files until ``save`` zips them into one .xlsx.

    ``number_formats`` maps a number type (``Decimal``, ``int``) to the format its cells get by default.
    Use it in a ``with`` block (or call ``close``) so the temporary files go when the rows fail half-way.
    """

    def __init__(self, *, number_formats: Mapping[type, str] | None = None, compresslevel: int = COMPRESS_LEVEL):
        self._styles = _Styles(number_formats or {})
        self.compresslevel = compresslevel
        self.sheets: list[Sheet] = []
        self._shapes: dict[tuple, tuple | None] = {}  # row shape -> its template (Sheet.append)

    def __enter__(self) -> "Workbook":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_sheet(self, name: str, *, tab_color: str | None = None, widths: Mapping[int, float] | None = None,
                  freeze_rows: int = 0) -> Sheet:
        """A new empty sheet: ``widths`` by 1-based column (in characters), its top ``freeze_rows`` frozen."""
        if not 1 <= len(name) <= MAX_SHEET_NAME or _BAD_SHEET_NAME.search(name) or name[0] == "'" or (
                name[-1] == "'"):
            raise ValueError(f"sheet name {name!r}: 1-{MAX_SHEET_NAME} characters, none of []:*?/\\ or controls, "
                             "not starting or ending with '")
        if name.casefold() in (s.name.casefold() for s in self.sheets):
            raise ValueError(f"sheet name {name!r} is taken (names are compared ignoring case)")
        sheet = Sheet(self, name, tab_color, widths or {}, freeze_rows)
        self.sheets.append(sheet)
        return sheet

    def save(self, out: BinaryIO, order: Iterable[Sheet] | None = None) -> None:
        """Write the workbook to the binary stream ``out``: every sheet, in ``order`` (default: creation order).

        The sheets' temporary files are closed afterwards; the workbook cannot be saved twice.
        """
        sheets = list(self.sheets if order is None else order)
        if sorted(map(id, sheets)) != sorted(map(id, self.sheets)) or not sheets:
            raise ValueError("order must list every sheet of the workbook once (and there must be one)")
        if any(s.closed for s in sheets):
            raise ValueError("the workbook is closed (saved already, or closed after an error)")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=self.compresslevel) as zf:
            def put(part: str, text: str) -> None:
                with zf.open(part, "w") as dst:  # a ZipInfo dated 1980-01-01: reproducible bytes
                    dst.write(text.encode("utf-8"))

            put("[Content_Types].xml", self._content_types(len(sheets)))
            put("_rels/.rels", f'{DECLARATION}<Relationships xmlns="{PKG_REL_NS}"><Relationship Id="rId1" '
                f'Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
            put("xl/workbook.xml", self._workbook(sheets))
            put("xl/_rels/workbook.xml.rels", self._workbook_rels(len(sheets)))
            put("xl/styles.xml", self._styles.xml())
            for i, sheet in enumerate(sheets, 1):
                sheet._write_to(zf, f"xl/worksheets/sheet{i}.xml", selected=i == 1)
        self.close()

    def close(self) -> None:
        """Close every sheet's temporary file (``save`` does; after an error, nothing else would)."""
        for sheet in self.sheets:
            sheet.close()

    def _shape(self, values: Sequence, style: Style | None) -> tuple | None:
        """How ``Sheet.append`` writes rows shaped like ``values``: the row's XML in pieces around its number,
        with a %s per cell; a getter of the cells' values; one of its texts (or none); its Decimals' indexes.
        None: a row written cell by cell (a value of another type, no value, many values)."""
        count = len(values)
        if not 0 < count <= _MAX_SHAPE_VALUES:
            return None
        shape = None
        if all(type(v) in (str, Decimal, int, type(None)) for v in values):
            text_attrs, dec_attrs, int_attrs = self._styles.attrs(style or PLAIN)
            xml, cells, texts, decimals = ['<row r="\x00">'], [], [], []
            for i, (letter, v) in enumerate(zip(_letters(count), values)):
                t = type(v)
                if t is str and v:
                    texts.append(i)
                    xml.append(f'<c r="{letter}\x00"{text_attrs}><is><t>%s</t></is></c>')
                elif t is Decimal:
                    decimals.append(i)
                    xml.append(f'<c r="{letter}\x00"{dec_attrs}><v>%s</v></c>')
                elif t is int:
                    xml.append(f'<c r="{letter}\x00"{int_attrs}><v>%s</v></c>')
                else:
                    continue  # None or "": no cell
                cells.append(i)
            xml.append("</row>")
            # the attributes hold no % and no \x00: the only ones are the row number's places and the cells'
            shape = ("".join(xml).split("\x00"), _getter(cells), texts and _getter(texts), decimals)
        if len(self._shapes) < _MAX_SHAPES:
            self._shapes[(style, tuple(map(type, values)), tuple(map(bool, values)))] = shape
        return shape

    @staticmethod
    def _content_types(count: int) -> str:
        sheets = "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{CT_SHEET}"/>'
                         for i in range(1, count + 1))
        return (f'{DECLARATION}<Types xmlns="{CT_NS}">'
                '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/xl/workbook.xml" ContentType="{CT_WORKBOOK}"/>'
                f'<Override PartName="/xl/styles.xml" ContentType="{CT_STYLES}"/>{sheets}</Types>')

    @staticmethod
    def _workbook(sheets: list[Sheet]) -> str:
        listed = "".join(f'<sheet name="{xml_attr(s.name)}" sheetId="{i}" r:id="rId{i}"/>'
                         for i, s in enumerate(sheets, 1))
        # Excel keeps each sheet's filter range as the hidden name _xlnm._FilterDatabase too.
        names = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
            f"{xml_text(_quoted(s.name))}!{_absolute(s.filter_ref)}</definedName>"
            for i, s in enumerate(sheets) if s.filter_ref)
        return (f'{DECLARATION}<workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}"><workbookPr/>'
                '<bookViews><workbookView activeTab="0"/></bookViews>'
                f"<sheets>{listed}</sheets>" + (f"<definedNames>{names}</definedNames>" if names else "")
                + "</workbook>")

    @staticmethod
    def _workbook_rels(count: int) -> str:
        rels = "".join(f'<Relationship Id="rId{i}" Type="{REL_NS}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                       for i in range(1, count + 1))
        return (f'{DECLARATION}<Relationships xmlns="{PKG_REL_NS}">{rels}'
                f'<Relationship Id="rId{count + 1}" Type="{REL_NS}/styles" Target="styles.xml"/></Relationships>')


def _getter(indexes: list[int]):
    """values -> the tuple of values[i] for i in indexes, in one C call (itemgetter of one index gives the value)."""
    if len(indexes) == 1:
        return lambda values, i=indexes[0]: (values[i],)
    return itemgetter(*indexes) if indexes else lambda values: ()


def _column_index(letters: str) -> int:
    """A -> 1, AA -> 27, XFD -> 16384."""
    index = 0
    for ch in letters:
        index = index * 26 + ord(ch) - 64
    return index


def _quoted(name: str) -> str:
    """A sheet name as a formula refers to it: in single quotes, its own quotes doubled."""
    return "'" + name.replace("'", "''") + "'"


def _absolute(ref: str) -> str:
    """A1:Q46 -> $A$1:$Q$46."""
    m = _REF.fullmatch(ref)
    return f"${m.group(1)}${m.group(2)}:${m.group(3)}${m.group(4)}"
