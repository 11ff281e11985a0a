"""The reconciliation rules, written once; each engine compiles them.

Spark compiles them into Column expressions (jobs/transforms.py), DuckDB into SQL (jobs/duck/classify.py).
What stays in an engine is how it computes the facts below (a window, a join, an aggregate), how it reads and
writes, and its physical tuning. No pyspark or duckdb import here.

The records of a date (local and channel, fresh and carried from earlier dates) meet by key:

- the key: ``KEY``; a payment has an empty refund_no, a refund is keyed by its own refund number;
- within a key, records are ordered by ``PRIMARY_ORDER`` (channel side first, SUCCESS first; a carried local
  record before a fresh one; then by time and the record's place in its file); the first record of each side
  is that side's primary, and the two primaries form the pair that is compared (``PAIR``);
- every further record of a key is an extra (``RECORD``): a further SUCCESS channel record is a duplicate of
  its own, a further failed attempt is matched (counted, not listed), a further local record means the order
  system exported a key twice (an integrity failure: nothing is guessed);
- a pair with one side only is carried while it sits in its channel's cut-off window or is carried and young,
  and becomes a break otherwise (``ONE_SIDED``);
- refunds of an order count in ``REFUND_ORDER`` at the channel, earlier dates' SUCCESS refunds included, and a
  refund that takes the total past the payment is an over-refund;
- the fee a channel record should carry is its amount less coupons, times its channel's rate, rounded by the
  channel's rule (``ROUNDING``), negative for a refund; off by more than the tolerance is a fee break.

A rule is (facts, outcome): the first rule whose facts all hold gives the outcome. A fact is one of the names
in ``FACTS`` (the engine computes each for the key's pair); an outcome is a category, or a pair of categories
(payment, refund), or one of the markers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

KEY = ("channel", "txn_type", "order_no", "refund_no")
LOCAL_DUPLICATE_KEY = "LOCAL_DUPLICATE_KEY"
NOT_RECONCILED = "NOT_RECONCILED"  # a HELD record: its channel is not reconciled in this run
ONE_LOCAL, ONE_CHANNEL = "_ONE_SIDED_LOCAL", "_ONE_SIDED_CHANNEL"  # the pair has one side: see ONE_SIDED
BREAKS = ("LOCAL_ONLY", "CHANNEL_ONLY", "REFUND_LOCAL_ONLY", "REFUND_CHANNEL_ONLY")
CARRIED_CATEGORIES = ("PENDING_CUTOFF", *BREAKS)  # what open_items.csv carries to D+1
ROUNDING = ("HALF_UP", "HALF_EVEN", "DOWN", "UP")

# Markers an outcome may be instead of a category.
CARRIED_AS = "<the category the item was carried as>"
FINAL_ONE_SIDED = "<LOCAL_ONLY / REFUND_LOCAL_ONLY / CHANNEL_ONLY / REFUND_CHANNEL_ONLY by side and type>"
PAIR_OUTCOME = "<the pair's outcome>"

FACTS = {
    "is_pay": "the key is a payment",
    "has_l": "the key has a local record", "has_c": "the key has a channel record",
    "both": "the key has both",
    "l_ok": "the local primary is PAID (payment) or SUCCESS (refund)",
    "c_ok": "the channel primary is SUCCESS",
    "dup": "the key has more than one SUCCESS channel record",
    "cur_diff": "the primaries' currencies differ", "amt_diff": "the primaries' amounts differ",
    "over_refund": "the channel primary (a SUCCESS refund) takes the order's refunds past its payment",
    "fee_bad": "the channel primary's fee is off the contracted one by more than the tolerance",
    "multi_channel": "the order was paid (SUCCESS) at more than one channel",
    # one-sided pairs: of the lone primary
    "carried_break": "it was carried as a break (BREAKS)",
    "carried": "it was carried from an earlier date",
    "aged": "it was first seen max_carry_days or more before D",
    "in_window": "its time lies in its channel's cut-off window before midnight",
    # each record
    "held": "its channel is not reconciled in this run",
    "local_extra": "a local record that is not its key's primary",
    "channel_extra": "a channel record that is not its key's primary",
    "ok": "its own status is SUCCESS",
    "one_sided": "the pair's outcome is ONE_LOCAL or ONE_CHANNEL",
    "matched_late": "the pair's outcome is MATCHED, both sides present, and one of them was carried",
}

PAIR = (
    (("dup",), "DUPLICATE_CHANNEL"),
    (("both", "c_ok", "cur_diff"), "CURRENCY_MISMATCH"),
    (("both", "c_ok", "amt_diff"), ("AMOUNT_MISMATCH", "REFUND_AMOUNT_MISMATCH")),
    (("both", "c_ok", "over_refund"), "REFUND_EXCEEDS_PAYMENT"),
    (("both", "l_ok", "c_ok", "fee_bad"), "FEE_MISMATCH"),
    (("both", "l_ok", "c_ok"), "MATCHED"),
    (("both", "c_ok"), ("LOCAL_UNPAID_CHANNEL_PAID", "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED")),
    (("both", "l_ok"), "STATUS_MISMATCH"),
    (("both",), "MATCHED"),  # neither side completed: nothing to do
    (("has_l", "l_ok"), ONE_LOCAL),
    (("has_c", "c_ok", "is_pay", "multi_channel"), "DUPLICATE_ACROSS_CHANNELS"),
    (("has_c", "c_ok", "over_refund"), "REFUND_EXCEEDS_PAYMENT"),
    (("has_c", "c_ok"), ONE_CHANNEL),
    ((), "MATCHED"),  # one side that did not complete (an unpaid order, a failed attempt)
)

# A one-sided pair: carried while near the cut-off or carried and young; a carried break stays open (carried,
# not listed again) until its counterpart comes.
ONE_SIDED = (
    (("carried_break",), CARRIED_AS),
    (("carried", "aged"), FINAL_ONE_SIDED),
    (("carried",), "PENDING_CUTOFF"),
    (("in_window",), "PENDING_CUTOFF"),
    ((), FINAL_ONE_SIDED),
)
FINAL = {("LOCAL", True): "LOCAL_ONLY", ("LOCAL", False): "REFUND_LOCAL_ONLY",
         ("CHANNEL", True): "CHANNEL_ONLY", ("CHANNEL", False): "REFUND_CHANNEL_ONLY"}  # (lone side, is_pay)

# Each record's own category.
RECORD = (
    (("held",), NOT_RECONCILED),
    (("local_extra",), LOCAL_DUPLICATE_KEY),
    (("channel_extra", "ok"), "DUPLICATE_CHANNEL"),
    (("channel_extra",), "MATCHED"),  # a further attempt that came to nothing: counted, not listed
    (("one_sided",), "<ONE_SIDED>"),
    (("matched_late",), "CLEARED_LATE"),
    ((), PAIR_OUTCOME),
)
ONE_SIDED_OUTCOME = "<ONE_SIDED>"

# Order of records within a key: the first of each side is its primary. ``rank``: SIDE_RANK * 2, plus 0 for a
# SUCCESS channel record or a carried local one, else 1. Values sort ascending, a missing value first.
SIDE_RANK = {"CHANNEL": 0, "LOCAL": 1, "HELD": 1, "HISTORY": 2}
PRIMARY_ORDER = ("rank", "time", "channel_refund_id", "fid", "source_line")
# Order of an order's refunds at a channel (for the running total that finds an over-refund).
REFUND_ORDER = ("time", "refund_no", "channel_refund_id", "fid", "source_line")


def rank(side: str, status: str, carried: bool) -> int:
    """A record's ``rank`` in PRIMARY_ORDER (for tests and documentation; engines compile the same formula)."""
    ok = (side == "CHANNEL" and status == "SUCCESS") or (side != "CHANNEL" and carried)
    return SIDE_RANK[side] * 2 + (0 if ok else 1)


def category_name(outcome, is_pay: bool) -> str:
    """A rule's outcome that is a category (or a (payment, refund) pair of them) as the category."""
    if isinstance(outcome, tuple):
        return outcome[0] if is_pay else outcome[1]
    return outcome


@dataclass(frozen=True)
class ChannelRules:
    """A channel's reconciliation rules."""

    cutoff_minutes: int = 30
    fee_rate: Decimal | None = None
    fee_tolerance: Decimal = Decimal("0.01")
    fee_rounding: str = "HALF_UP"


@dataclass(frozen=True)
class ClassifyParams:
    """Everything the classification needs besides the records."""

    day: str                                  # D, YYYY-MM-DD
    window_starts: dict[str, str]             # channel -> first timestamp inside the cut-off window
    max_carry_days: int = 3
    rules: dict[str, ChannelRules] = field(default_factory=dict)


NO_WINDOW = "9999-12-31 00:00:00"  # the window start of a channel without one (nothing is inside it)
