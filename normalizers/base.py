"""The normalizer contract and the sink it writes into."""

from __future__ import annotations

import codecs
import datetime as dt
import io
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import BinaryIO

from core.errors import ConfigError, IntegrityError
from core.settings import ChannelSettings
from schemas.standard import StandardRecord


@dataclass(frozen=True)
class RawStatement:
    """One landed raw file, opened for reading."""

    channel: str
    day: dt.date
    name: str
    stream: BinaryIO


class Sink(ABC):
    """Where a normalizer puts each data row: a standard record or a reject. Nothing else."""

    @abstractmethod
    def record(self, rec: StandardRecord) -> None: ...

    @abstractmethod
    def reject(self, line: int, reason: str, raw: str, order_no: str = "") -> None:
        """A data row that is not a standard record: its 1-based line, why, its text, and the merchant order
        number when it can still be read from the row (``readable_order_no``), so that the job can point the
        local order at the rejected line."""

    def records_table(self, table) -> None:
        """Many records at once: a pyarrow Table with the standard columns (``schemas.standard.COLUMNS``).

        Sinks that can write in bulk override this; the default goes row by row.
        """
        for row in table.to_pylist():
            self.record(StandardRecord(**row))


# What a merchant order number looks like (letters, digits and a few separators, as the channels allow).
_ORDER_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-|*.:]{0,63}$")


def readable_order_no(value: str | None) -> str:
    """``value`` as an order number taken from a rejected row, or "" when it does not look like one.

    A rejected row may be short or shifted, so the field at the order number's place can hold anything;
    only a value of the order number's shape is trusted to name the order.
    """
    value = (value or "").strip().lstrip("`").strip()
    return value if _ORDER_NO.match(value) else ""


@dataclass
class ControlReport:
    """The statement's own totals next to what its rows add up to."""

    declared: dict[str, str] = field(default_factory=dict)
    computed: dict[str, str] = field(default_factory=dict)
    data_rows: int = 0
    unverified: list[str] = field(default_factory=list)  # declared totals a rejected row left unchecked

    def as_dict(self) -> dict:
        return {"declared": self.declared, "computed": self.computed, "data_rows": self.data_rows,
                "unverified": self.unverified}


# -- limits on what a statement may hold ----------------------------------------------------------------------------

MAX_LINE_BYTES = 1 << 20  # 1 MiB: the longest line of any format is a few KB; a longer one is not a statement
MAX_STATEMENT_BYTES = 8 << 30  # 8 GiB of statement bytes as read (after gzip / zip), as the zip limit of DECISIONS
LIMIT_OPTIONS = ("max_line_bytes", "max_statement_bytes")  # [normalizer] keys every normalizer takes


@dataclass(frozen=True)
class StatementLimits:
    """How long a line and how large a statement (decompressed) may be, checked while streaming.

    Why: a 2 MB gzip holding 2 GiB without a newline was read as one line until MemoryError. Every normalizer
    reads through ``read_lines`` or ``decoded_lines`` (WeChat checks its blocks with ``first_long_line``), so
    memory stays within a line or a block whatever the file holds, and the statement fails with exit 4 at the
    line where a limit was hit. Both are ``[normalizer]`` options of the channel file.
    """

    max_line_bytes: int = MAX_LINE_BYTES
    max_statement_bytes: int = MAX_STATEMENT_BYTES
    conf_file: str = "the channel file"

    @classmethod
    def from_channel(cls, channel: ChannelSettings) -> "StatementLimits":
        """The limits of a channel's ``[normalizer]`` table; a value that is not a positive integer is exit 2."""
        values = {}
        for key, default in zip(LIMIT_OPTIONS, (MAX_LINE_BYTES, MAX_STATEMENT_BYTES)):
            value = channel.normalizer_options.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"[normalizer] {key} must be a positive whole number of bytes, got {value!r}",
                                  channel=channel.name, file=channel.conf_file,
                                  hint=f"fix it in the channel file or remove it (default {default})")
            values[key] = value
        return cls(**values, conf_file=channel.conf_file)

    def line_too_long(self, line: int, where: dict) -> IntegrityError:
        return self._exceeded("max_line_bytes", f"a line longer than {self.max_line_bytes} bytes (max_line_bytes): "
                              "this is not a statement of this format, or it is damaged", "its lines really are "
                              "this long", line, where)

    def too_large(self, line: int, where: dict) -> IntegrityError:
        return self._exceeded("max_statement_bytes", f"the statement holds more than {self.max_statement_bytes} "
                              "bytes (max_statement_bytes, counted after decompression): refusing a possible "
                              "decompression bomb or a wrong file", "the statement really is this large", line, where)

    def _exceeded(self, key: str, message: str, if_real: str, line: int, where: dict) -> IntegrityError:
        return IntegrityError(message, line=line, **where,
                              hint="nothing was published for this channel and date; download the statement again "
                                   f"or ask the channel; if {if_real}, raise {key} under [normalizer] in "
                                   f"{self.conf_file}")


def read_lines(stream, limits: StatementLimits, where: dict, start: int = 1):
    """(line number, bytes of the line with its line end) of a binary stream, never holding more than a line.

    A line (without its ``\n``) longer than ``max_line_bytes``, or more than ``max_statement_bytes`` in all, is
    an IntegrityError naming the line. ``stream`` is any binary stream with ``readline(limit)`` (a gzip or zip
    member decompresses only what is asked for).
    """
    total, number = 0, start
    while True:
        data = stream.readline(limits.max_line_bytes + 1)
        if not data:
            return
        if len(data) > limits.max_line_bytes and not data.endswith(b"\n"):
            raise limits.line_too_long(number, where)
        total += len(data)
        if total > limits.max_statement_bytes:
            raise limits.too_large(number, where)
        yield number, data
        number += 1


def _splits_as_bytes(encoding: str) -> bool:
    """Whether ``encoding`` writes a line end as the byte 0x0A and never uses that byte inside a character
    (UTF-8, GBK, GB18030, Big5, Latin-1…): then lines can be split as bytes and decoded one by one."""
    name = codecs.lookup(encoding).name
    return name in ("utf-8-sig", "utf-8") or "\n".encode(encoding) == b"\n"


def decoded_lines(stream, encoding: str, limits: StatementLimits, where: dict, *, hint: str):
    """(line number, text without its ``\n``) of a text statement, streamed within the limits; a BOM at its start
    is removed. Bytes that are not ``encoding`` are an IntegrityError naming the line (and, where lines split as
    bytes, the byte offset in the file); ``hint`` says what to do.

    UTF-16 and UTF-32 are decoded as a stream (a character is never split); a line may then hold
    ``max_line_bytes // 2`` characters, and the statement's size is counted by encoding each line again."""
    if _splits_as_bytes(encoding):
        codec = "utf-8" if codecs.lookup(encoding).name == "utf-8-sig" else encoding
        offset = 0
        for number, data in read_lines(stream, limits, where):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise IntegrityError(f"byte {offset + exc.start} is not valid {encoding} ({exc.reason})",
                                     line=number, **where, hint=hint) from exc
            offset += len(data)
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text[:-1] if text.endswith("\n") else text
        return
    chars = max(1, limits.max_line_bytes // 2)
    reader = io.TextIOWrapper(stream, encoding=encoding, newline="\n")
    encoder = codecs.getincrementalencoder(encoding)()  # its first call writes the BOM, as the file has it
    number, total = 1, 0
    while True:
        try:
            text = reader.readline(chars + 1)
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"not valid {encoding} after line {number - 1} ({exc.reason})", line=number,
                                 **where, hint=hint) from exc
        if not text:
            return
        if len(text) > chars and not text.endswith("\n"):
            raise limits.line_too_long(number, where)
        total += len(encoder.encode(text))
        if total > limits.max_statement_bytes:
            raise limits.too_large(number, where)
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text[:-1] if text.endswith("\n") else text
        number += 1


def first_long_line(buf, limit: int, start: int = 0, end: int | None = None) -> int:
    """The offset of the first line in ``buf[start:end]`` longer than ``limit`` bytes (without its ``\n``), or -1.

    For block readers: steps from line start to the last ``\n`` within ``limit`` bytes, so it costs one
    ``rfind`` per ``limit`` bytes rather than one operation per line. A last line without its ``\n`` counts.
    """
    end = len(buf) if end is None else end
    pos = start
    while end - pos > limit:
        cut = buf.rfind(b"\n", pos, pos + limit + 1)
        if cut < 0:
            return pos
        pos = cut + 1
    return -1


class Normalizer(ABC):
    """Parses one channel's statement format. Subclasses implement ``normalize``."""

    def __init__(self, channel: ChannelSettings):
        self.channel = channel
        self.options = channel.normalizer_options
        self.limits = StatementLimits.from_channel(channel)

    @abstractmethod
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        """Send every data row of ``raw`` to ``sink`` and check the statement's control totals.

        Raise ``IntegrityError`` (naming file and line) when the file cannot be
        trusted as a whole: totals that disagree with the rows, an unknown
        column set, a truncated file, an undecodable encoding.
        """
