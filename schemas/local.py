"""The local order record: what the order system exports for date D."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from decimal import Decimal

from schemas.money import format_money

COLUMNS = ("order_no", "refund_no", "txn_type", "channel", "currency", "amount", "status", "created_at", "paid_at")
MONEY_COLUMNS = ("amount",)
PAYMENT_STATUSES = ("PAID", "UNPAID", "CLOSED")
REFUND_STATUSES = ("SUCCESS", "PROCESSING", "FAILED")


@dataclass(frozen=True, slots=True)
class LocalRecord:
    """One local payment or refund. ``paid_at`` is empty until paid / refunded."""

    order_no: str
    refund_no: str
    txn_type: str
    channel: str
    currency: str
    amount: Decimal
    status: str
    created_at: str
    paid_at: str

    def __post_init__(self):
        allowed = PAYMENT_STATUSES if self.txn_type == "PAYMENT" else REFUND_STATUSES
        if self.txn_type not in ("PAYMENT", "REFUND"):
            raise ValueError(f"txn_type must be PAYMENT or REFUND, got {self.txn_type!r}")
        if self.status not in allowed:
            raise ValueError(f"{self.txn_type} status must be one of {allowed}, got {self.status!r}")

    def as_csv_row(self) -> list[str]:
        return [format_money(v) if n in MONEY_COLUMNS else str(v) for n, v in zip(COLUMNS, astuple(self))]

    @property
    def business_time(self) -> str:
        """The time that places this record in a date: paid_at, else created_at."""
        return self.paid_at or self.created_at


def spark_schema():
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField(n, T.DecimalType(18, 2) if n in MONEY_COLUMNS else T.StringType(), True) for n in COLUMNS
    ])
