"""Columns of the files published under {root}/recon/{D}/ (DESIGN.md, "Outputs")."""

from __future__ import annotations

from schemas import standard

DISCREPANCY_COLUMNS = (
    "date", "channel", "category", "resolution", "order_no", "refund_no", "local_amount", "channel_amount",
    "local_status", "channel_status", "currency", "channel_txn_id", "local_time", "channel_time", "age_days",
    "source_file", "source_line", "note",
)
CORRECTION_COLUMNS = ("date", "channel", "order_no", "refund_no", "action", "amount", "channel_txn_id",
                      "idempotency_key")
# An open item is one side's record: the standard record columns, the local
# record's own columns, and where it stands in the carry.
OPEN_ITEM_COLUMNS = ("side", "first_seen", "age_days", "carried_as") + standard.COLUMNS + ("created_at", "paid_at")
# A statement row the normalizer could not turn into a standard record: where it is, the order it names when
# that can still be read from it (else empty), why it was rejected, and the line as text with card numbers and
# payer ids masked (schemas.masking).
REJECT_COLUMNS = ("channel", "date", "source_file", "source_line", "order_no", "reason", "raw")

# Outcome categories and their resolutions, in the order reports list them.
RESOLUTIONS = {
    "MATCHED": "MATCHED",
    "LOCAL_UNPAID_CHANNEL_PAID": "AUTO_FIXED",
    "AMOUNT_MISMATCH": "MANUAL_REVIEW",
    "CURRENCY_MISMATCH": "MANUAL_REVIEW",
    "STATUS_MISMATCH": "MANUAL_REVIEW",
    "DUPLICATE_CHANNEL": "MANUAL_REVIEW",
    "DUPLICATE_ACROSS_CHANNELS": "MANUAL_REVIEW",
    "FEE_MISMATCH": "MANUAL_REVIEW",
    "LOCAL_ONLY": "MANUAL_REVIEW",
    "CHANNEL_ONLY": "MANUAL_REVIEW",
    "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED": "AUTO_FIXED",
    "REFUND_AMOUNT_MISMATCH": "MANUAL_REVIEW",
    "REFUND_EXCEEDS_PAYMENT": "MANUAL_REVIEW",
    "REFUND_LOCAL_ONLY": "MANUAL_REVIEW",
    "REFUND_CHANNEL_ONLY": "MANUAL_REVIEW",
    "CHANNEL_ROW_REJECTED": "MANUAL_REVIEW",
    "PENDING_CUTOFF": "CARRIED",
    "CLEARED_LATE": "CLEARED",
}
CATEGORIES = tuple(RESOLUTIONS)
# A rejected statement row is listed by the job from the channel's _rejects.csv, not classified.
ROW_REJECTED = "CHANNEL_ROW_REJECTED"
CORRECTION_ACTIONS = {
    "LOCAL_UNPAID_CHANNEL_PAID": "MARK_PAID",
    "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED": "MARK_REFUNDED",
}


def open_item_spark_schema():
    from pyspark.sql import types as T

    fields = [T.StructField("side", T.StringType()), T.StructField("first_seen", T.StringType()),
              T.StructField("age_days", T.IntegerType()), T.StructField("carried_as", T.StringType())]
    fields += list(standard.spark_schema().fields)
    fields += [T.StructField("created_at", T.StringType()), T.StructField("paid_at", T.StringType())]
    assert tuple(f.name for f in fields) == OPEN_ITEM_COLUMNS
    return T.StructType(fields)
