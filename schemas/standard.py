"""The standard channel record: what every normalizer produces and the Spark job reads."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from schemas.money import check_money, format_money

COLUMNS = (
    "channel", "merchant_id", "txn_type", "order_no", "refund_no", "channel_txn_id", "channel_refund_id",
    "status", "currency", "amount", "fee", "coupon_amount", "txn_time", "payer_id", "bank",
    "source_file", "source_line",
)
MONEY_COLUMNS = ("amount", "fee", "coupon_amount")
TXN_TYPES = ("PAYMENT", "REFUND")
STATUSES = ("SUCCESS", "CLOSED", "REVOKED", "PROCESSING", "FAILED")


@dataclass(frozen=True, slots=True)
class StandardRecord:
    """One channel record in standard form. Amounts are Decimal, times business-zone text."""

    channel: str
    merchant_id: str
    txn_type: str
    order_no: str
    refund_no: str
    channel_txn_id: str
    channel_refund_id: str
    status: str
    currency: str
    amount: Decimal
    fee: Decimal
    coupon_amount: Decimal
    txn_time: str
    payer_id: str
    bank: str
    source_file: str
    source_line: int

    def __post_init__(self):
        if self.txn_type not in TXN_TYPES:
            raise ValueError(f"txn_type must be one of {TXN_TYPES}, got {self.txn_type!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.order_no:
            raise ValueError("order_no is empty")
        if self.txn_type == "REFUND" and not self.refund_no:
            raise ValueError("a refund needs its merchant refund number")
        if self.amount < 0:
            raise ValueError(f"amount must be positive, got {self.amount}")
        for name in MONEY_COLUMNS:  # the amount rule, a last guard: the Parquet copy and Spark hold DECIMAL(18,2)
            check_money(getattr(self, name), name)

    def as_csv_row(self) -> list[str]:
        """The record as CSV fields, in COLUMNS order (attribute access: astuple deep-copies)."""
        return [self.channel, self.merchant_id, self.txn_type, self.order_no, self.refund_no, self.channel_txn_id,
                self.channel_refund_id, self.status, self.currency, format_money(self.amount),
                format_money(self.fee), format_money(self.coupon_amount), self.txn_time, self.payer_id, self.bank,
                self.source_file, str(self.source_line)]


def spark_schema():
    """The Spark StructType of the standard CSV (money as DecimalType(18,2))."""
    from pyspark.sql import types as T

    fields = []
    for name in COLUMNS:
        if name in MONEY_COLUMNS:
            dtype = T.DecimalType(18, 2)
        elif name == "source_line":
            dtype = T.LongType()
        else:
            dtype = T.StringType()
        fields.append(T.StructField(name, dtype, nullable=True))
    return T.StructType(fields)


def arrow_schema():
    """The pyarrow schema of the standard CSV (money as decimal128(18,2))."""
    import pyarrow as pa

    return pa.schema([
        pa.field(name, pa.decimal128(18, 2) if name in MONEY_COLUMNS
                 else pa.int64() if name == "source_line" else pa.string())
        for name in COLUMNS
    ])


def read_arrow(stream):
    """Read a standard CSV (a binary stream) into a pyarrow Table with decimal amounts.

    Python-side readers (reports, checks) use this rather than parsing by hand,
    so money arrives as ``decimal128(18, 2)`` and ``to_pylist`` gives Decimal.
    """
    import pyarrow.csv as pacsv

    schema = arrow_schema()
    return pacsv.read_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), skip_rows=1),
        parse_options=pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False,
                                             quoted_strings_can_be_null=False),
    )
