"""The normalizer contract and the sink it writes into."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import BinaryIO

from recon.config import ChannelSettings
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


class Normalizer(ABC):
    """Parses one channel's statement format. Subclasses implement ``normalize``."""

    def __init__(self, channel: ChannelSettings):
        self.channel = channel
        self.options = channel.normalizer_options

    @abstractmethod
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        """Send every data row of ``raw`` to ``sink`` and check the statement's control totals.

        Raise ``IntegrityError`` (naming file and line) when the file cannot be
        trusted as a whole: totals that disagree with the rows, an unknown
        column set, a truncated file, an undecodable encoding.
        """
