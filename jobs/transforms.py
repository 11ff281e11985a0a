"""Pure DataFrame -> DataFrame transforms of the reconciliation (no I/O, no Python UDFs).

All records of a date, local and channel, fresh and carried, are put in one
frame and shuffled once by key: payments by (channel, order_no), refunds by
(channel, order_no, refund_no). Within a key, records are ordered channel
side first (SUCCESS first), then by time, so the first record of each side
is that side's primary; the two primaries form the pair that is compared.
Every record then gets exactly one category:

- the primaries take the pair's category;
- a further channel record with status SUCCESS is a DUPLICATE_CHANNEL row of
  its own (and makes the pair DUPLICATE_CHANNEL too); a further non-SUCCESS
  one is an attempt that came to nothing (MATCHED, counted, not listed);
- a further local record means the order system exported one key twice:
  it gets the internal category LOCAL_DUPLICATE_KEY and the job stops with an
  integrity error (the export is broken; nothing is guessed).

Times are ``YYYY-MM-DD HH:MM:SS`` strings in the business time zone, so they
compare as text.

Size: one module on purpose: shaping, classification and outputs share the packed codes of a
record (``_CODED``, ``_of``, ``_decoded``) and jobs/reconcile.py calls them as ``tx.*``; it is to be split
with the engine work that replaces the classification, not before it.
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from schemas import local as local_schema
from schemas import standard
from schemas.outputs import CORRECTION_ACTIONS, OPEN_ITEM_COLUMNS, RESOLUTIONS, ROW_REJECTED
from jobs.rules import (BREAKS, CARRIED_AS, CARRIED_CATEGORIES, FINAL, FINAL_ONE_SIDED, KEY,  # noqa: F401
                        LOCAL_DUPLICATE_KEY, NOT_RECONCILED, NO_WINDOW, ONE_CHANNEL, ONE_LOCAL, ONE_SIDED,
                        ONE_SIDED_OUTCOME, PAIR, PAIR_OUTCOME, RECORD, ROUNDING, SIDE_RANK, ChannelRules,
                        ClassifyParams)

MONEY = T.DecimalType(18, 2)
RATE = T.DecimalType(12, 8)
_ONE_LOCAL, _ONE_CHANNEL = ONE_LOCAL, ONE_CHANNEL

# A channel record's columns that no comparison reads. They stay out of the shuffle: fresh channel records carry
# only ``_fid`` (a hash of source_file) and source_line, and the few that are listed get their details back from
# the standard records (``with_details``); carried open items (few) bring theirs along in ``_rest``.
DETAIL_FIELDS = ("merchant_id", "channel_txn_id", "txn_time", "payer_id", "bank", "source_file")
# What each side's primary contributes to the comparison (and, for the local side, to the pair's row, which
# the channel primary carries when there is one; the channel primary also brings its fee check and its refund
# key). Everything else of a row comes from the record itself.
_LOCAL_FIELDS = ("status", "amount", "currency", "time", "carried", "first_seen", "carried_as")
_CHANNEL_FIELDS = (*_LOCAL_FIELDS, "fee", "coupon_amount", "_fee_bad")
# What a discrepancy row shows of a channel record.
_SHOWN_FIELDS = (*_LOCAL_FIELDS, "fee", "coupon_amount", "multi_channel", "over_refund", "channel_txn_id",
                 "source_file", "source_line", "paid_amount", "refunded_total")


def compiled(table, facts: dict[str, Column], values: dict[str, Column] | None = None) -> Column:
    """A rules table of jobs/rules.py as one CASE expression: its facts by name, its marker outcomes by value,
    a (payment, refund) outcome by the fact ``is_pay``."""
    values = values or {}

    def outcome(o) -> Column:
        if isinstance(o, tuple):
            return F.when(facts["is_pay"], F.lit(o[0])).otherwise(F.lit(o[1]))
        return values[o] if o in values else F.lit(o)

    expr = None
    for conds, o in table:
        if not conds:
            return outcome(o) if expr is None else expr.otherwise(outcome(o))
        cond = facts[conds[0]]
        for name in conds[1:]:
            cond = cond & facts[name]
        expr = F.when(cond, outcome(o)) if expr is None else expr.when(cond, outcome(o))
    return expr


# -- shaping inputs into records --------------------------------------------------------------------------------

def _text(name: str) -> Column:
    return F.coalesce(F.col(name), F.lit("")).alias(name)


def _blank(name: str) -> Column:
    return F.lit("").alias(name)


_DETAILS = T.StructType([T.StructField(n, T.StringType()) for n in DETAIL_FIELDS])


def _details() -> Column:
    """A record's DETAIL_FIELDS as one struct (blank where missing)."""
    return F.struct(*[_text(n) for n in DETAIL_FIELDS])


def _no_details() -> Column:
    return F.lit(None).cast(_DETAILS).alias("_rest")


def _file_id() -> Column:
    """A 64-bit hash of the record's source file name: what stands for source_file in the shuffle."""
    return F.xxhash64(F.coalesce(F.col("source_file"), F.lit(""))).alias("_fid")


_IDENTITY = ("channel", "txn_type", "order_no", "refund_no", "source_line", "_fid")


def _identity() -> list[Column]:
    """The columns that find a standard record again (``_IDENTITY``), computed one way for the shuffle
    (``channel_records``) and for the fetch of details (``with_details``); it checks that exactly one
    matches."""
    return [_text("channel"), _text("txn_type"), _text("order_no"), _text("refund_no"),
            F.col("source_line").cast("long").alias("source_line"), _file_id()]


def _names(names) -> Column:
    """A literal array of strings (a code is a 1-based position in it)."""
    return F.array(*[F.lit(n) for n in names])


def _code(col: Column, names) -> Column:
    """``col``'s 1-based place in ``names``; 0 for any other value (null included)."""
    return F.coalesce(F.array_position(_names(names), col), F.lit(0)).cast("int")


def _name(code: Column, names, other) -> Column:
    """The name a ``_code`` stands for; ``other`` where it is 0."""
    return F.when(code > 0, F.element_at(_names(names), code.cast("int"))).otherwise(other)


def _of(name: str, record: Column | None = None) -> Column:
    """Field ``name`` of ``record`` (a struct), or the row's column without one."""
    return F.col(name) if record is None else record[name]


def local_records(local: DataFrame, day: str, in_scope: Column | None = None) -> DataFrame:
    """Local orders of D as records: side LOCAL, or HELD where ``in_scope`` is false (a channel not being
    reconciled: the record is counted, gets the category NOT_RECONCILED and no other outcome). Held records
    ride along in the one scan of the export instead of costing a second one."""
    side = F.lit("LOCAL") if in_scope is None else F.when(in_scope, F.lit("LOCAL")).otherwise(F.lit("HELD"))
    return local.select(
        side.alias("side"), _text("channel"), _text("txn_type"), _text("order_no"), _text("refund_no"),
        _text("status"), _text("currency"), F.col("amount").cast(MONEY).alias("amount"),
        F.lit(None).cast(MONEY).alias("fee"), F.lit(None).cast(MONEY).alias("coupon_amount"),
        _blank("channel_refund_id"), F.lit(None).cast("long").alias("source_line"),
        F.lit(None).cast("long").alias("_fid"), _text("created_at"), _text("paid_at"),
        F.coalesce(F.nullif(F.col("paid_at"), F.lit("")), F.col("created_at"), F.lit("")).alias("time"),
        F.lit(day).alias("first_seen"), F.lit(False).alias("carried"), _blank("carried_as"), _no_details(),
    )


def channel_records(std: DataFrame, day: str) -> DataFrame:
    """Standard channel records of D as records (side CHANNEL), without their DETAIL_FIELDS (``with_details``)."""
    return std.select(
        F.lit("CHANNEL").alias("side"), *_identity(),
        _text("status"), _text("currency"), F.col("amount").cast(MONEY).alias("amount"),
        F.col("fee").cast(MONEY).alias("fee"), F.col("coupon_amount").cast(MONEY).alias("coupon_amount"),
        _text("channel_refund_id"), _blank("created_at"), _blank("paid_at"), _text("txn_time").alias("time"),
        F.lit(day).alias("first_seen"), F.lit(False).alias("carried"), _blank("carried_as"), _no_details(),
    )


def history_records(std: DataFrame) -> DataFrame:
    """Successful channel records of earlier dates, used only to know what an order was paid and refunded.

    They flow through the same shuffle but get no outcome (side HISTORY).
    """
    ok = std.filter(F.col("status") == "SUCCESS")
    return channel_records(ok, "").withColumn("side", F.lit("HISTORY"))


def open_item_records(items: DataFrame) -> DataFrame:
    """Open items carried from an earlier date, back as records (carried = true)."""
    is_local = F.col("side") == "LOCAL"
    return items.select(
        _text("side"), _text("channel"), _text("txn_type"), _text("order_no"), _text("refund_no"), _text("status"),
        _text("currency"), F.col("amount").cast(MONEY).alias("amount"), F.col("fee").cast(MONEY).alias("fee"),
        F.col("coupon_amount").cast(MONEY).alias("coupon_amount"), _text("channel_refund_id"),
        F.col("source_line").cast("long").alias("source_line"), _file_id(), _text("created_at"), _text("paid_at"),
        F.when(is_local, F.coalesce(F.nullif(F.col("paid_at"), F.lit("")), F.col("created_at")))
         .otherwise(F.col("txn_time")).alias("time"),
        _text("first_seen"), F.lit(True).alias("carried"),
        F.coalesce(F.nullif(F.col("carried_as"), F.lit("")), F.lit("PENDING_CUTOFF")).alias("carried_as"),
        _details().alias("_rest"),
    )


# -- classification -------------------------------------------------------------------------------------------

def _by_channel(mapping: dict, default, dtype=None) -> Column:
    """A per-channel value (a constant or an expression) as one CASE expression (few channels, no join)."""
    def value(v) -> Column:
        col = v if isinstance(v, Column) else F.lit(v)
        return col if dtype is None else col.cast(dtype)

    expr = None
    for name, v in sorted(mapping.items()):
        expr = (F.when(F.col("channel") == name, value(v)) if expr is None
                else expr.when(F.col("channel") == name, value(v)))
    return value(default) if expr is None else expr.otherwise(value(default))


def _round_fee(value: Column, rule: str) -> Column:
    if rule == "HALF_EVEN":
        return F.bround(value, 2)
    if rule in ("DOWN", "UP"):  # toward / away from zero, at the cent
        step = F.floor if rule == "DOWN" else F.ceil
        return (F.signum(value) * step(F.abs(value) * 100) / 100).cast(MONEY)
    return F.round(value, 2)


# One window operator does all of it: partitioned by the order (``_h``, a hash of order_no, then order_no) and
# ordered by the key (channel, txn_type, refund_no), so the key's records are the peers of each row (a RANGE frame
# of CURRENT ROW) and the order's are the whole partition. The one Sort, made explicitly after the one Exchange,
# orders the records of a key by ``_KEY_ORDER`` as well; the window keeps that order among peers, so the first
# record of each side is that side's primary. The hash leads the sort because order numbers share long prefixes
# (a date): an 8-byte hash prefix makes the sort's comparisons cheap, and it groups exactly as order_no does.
_ORDER = ("_h", "order_no")
_KEY_COLUMNS = ("channel", "txn_type", "refund_no")
_KEY_ORDER = ("_rank", "time", "channel_refund_id", "_fid", "source_line", "_codes", "amount", "created_at")
_SORT = (*_ORDER, *_KEY_COLUMNS, *_KEY_ORDER)
_REFUND_ORDER = ("time", "refund_no", "channel_refund_id", "_fid", "source_line")


def _expected_fee(rules: dict[str, ChannelRules], record: Column | None = None) -> Column:
    """The fee the contract gives a channel record: its channel's rate and rounding, negative for a refund; null
    without a rate. ``record``: a struct with the record's fields, else the columns themselves."""
    rate = _by_channel({k: r.fee_rate for k, r in rules.items() if r.fee_rate is not None}, None, RATE)
    base = (_of("amount", record) - F.coalesce(_of("coupon_amount", record), F.lit(0).cast(MONEY))) * rate
    rounded = _by_channel({k: _round_fee(base, r.fee_rounding) for k, r in rules.items()},
                          _round_fee(base, "HALF_UP"))
    return rounded * F.when(F.col("txn_type") == "PAYMENT", F.lit(1)).otherwise(F.lit(-1))


def _fee_off(rules: dict[str, ChannelRules]) -> Column:
    """Whether a channel record's fee is off the contracted one by more than its channel's tolerance (never,
    without a rate)."""
    tol = _by_channel({k: r.fee_tolerance for k, r in rules.items()}, Decimal("0.01"), MONEY)
    expected = _expected_fee(rules)
    return expected.isNotNull() & (F.abs(F.col("fee") - expected) > tol)


# Small string and boolean columns travel through the shuffle, the sort and the window as one long (``_codes``):
# 8 bits per string column (its 1-based place in a list of the usual values; 0 for any other value, which then
# travels as itself in the struct ``_raw``, null when every value is usual), then a bit for ``carried`` and two
# for ``_fee_bad`` (null, false, true). A string costs a row 16 bytes or more, a boolean 8; the long costs 8.
_CODED = (
    ("side", ("CHANNEL", "LOCAL", "HELD", "HISTORY")),
    ("status", tuple(dict.fromkeys((*standard.STATUSES, *local_schema.PAYMENT_STATUSES,
                                    *local_schema.REFUND_STATUSES)))),
    ("currency", ("CNY", "HKD", "USD", "EUR", "GBP", "JPY", "SGD", "AUD", "CAD", "KRW", "MOP", "TWD", "THB",
                  "MYR", "CHF", "NZD")),
    ("carried_as", ("", "PENDING_CUTOFF", *BREAKS)),
)
_CARRIED_BIT, _FEE_BITS = 8 * len(_CODED), 8 * len(_CODED) + 1
assert all(len(names) < 256 for _, names in _CODED) and _FEE_BITS + 2 <= 63, "the codes must fit their bits"
_SLOTS = {name: (8 * i, names) for i, (name, names) in enumerate(_CODED)}  # name -> (bit shift, usual values)


def _codes(fee_bad: Column) -> tuple[Column, Column]:
    """``_codes`` and ``_raw`` of a record (see ``_CODED``)."""
    codes = [_code(F.col(name), names) for name, names in _CODED]
    packed = F.lit(0).cast("long")
    for code, (shift, _) in zip(codes, _SLOTS.values()):
        packed = packed.bitwiseOR(F.shiftleft(code.cast("long"), shift))
    packed = (packed.bitwiseOR(F.shiftleft(F.col("carried").cast("long"), _CARRIED_BIT))
              .bitwiseOR(F.shiftleft(F.when(fee_bad, 2).when(~fee_bad, 1).otherwise(0).cast("long"), _FEE_BITS)))
    unusual = F.least(*codes) == 0
    raw = F.when(unusual, F.struct(*[F.when(code == 0, F.col(name)).alias(name)
                                    for code, (name, _) in zip(codes, _CODED)]))
    return packed.alias("_codes"), raw.alias("_raw")


def _decoded(name: str, record: Column | None = None) -> Column:
    """A column that ``_codes`` packed, back as it was; of ``record`` (a struct with ``_codes`` and ``_raw``)
    or of the row."""
    codes = _of("_codes", record)
    if name == "carried":
        return F.shiftright(codes, _CARRIED_BIT).bitwiseAND(1) == 1
    if name == "_fee_bad":
        bits = F.shiftright(codes, _FEE_BITS).bitwiseAND(3)
        return F.when(bits > 0, bits == 2)
    shift, names = _SLOTS[name]
    return _name(F.shiftright(codes, shift).bitwiseAND(255), names, _of("_raw", record)[name])


def _is(name: str, *values: str, record: Column | None = None) -> Column:
    """Whether the coded column ``name`` of the row (or of ``record``, a struct with ``_codes`` and ``_raw``)
    holds one of ``values``; compared as codes where they are usual."""
    shift, names = _SLOTS[name]
    known = [(names.index(v) + 1) << shift for v in values if v in names]
    other = [v for v in values if v not in names]
    test = (_of("_codes", record).bitwiseAND(F.lit(255 << shift).cast("long")).isin(*known) if known
            else F.lit(False))
    return (test | _of("_raw", record)[name].isin(*other)) if other else test


def _sorted(records: DataFrame, params: ClassifyParams) -> DataFrame:
    """The records shuffled by order and sorted by ``_SORT`` (HISTORY records last in their key).

    A channel record's fee check (``_fee_bad``) reads only the record itself, so it is made here, once per
    record and before the shuffle, instead of once per record of its key after it.

    Every byte of a record is copied by the shuffle, the sort and the window, so the record travels narrow:
    small columns as codes (``_CODED``), and two values that are nearly always known as null: first_seen when
    it is the run's date (every fresh record), paid_at when it equals ``time`` (every paid local record).
    ``_restored`` gives them all back, exactly.
    """
    side, status = F.col("side"), F.col("status")
    is_chan = side == "CHANNEL"
    records = (records
               .withColumn("first_seen", F.when(~F.col("first_seen").eqNullSafe(params.day), F.col("first_seen")))
               .withColumn("paid_at", F.when(~F.col("paid_at").eqNullSafe(F.col("time")), F.col("paid_at"))))
    side_rank = None
    for name, value in SIDE_RANK.items():  # jobs.rules.PRIMARY_ORDER
        side_rank = F.when(side == name, value) if side_rank is None else side_rank.when(side == name, value)
    ok_rank = F.when((is_chan & (status == "SUCCESS")) | (~is_chan & F.col("carried")), 0).otherwise(1)
    coded = [name for name, _ in _CODED] + ["carried"]
    return (records.select(
                *[c for c in records.columns if c not in coded], F.xxhash64("order_no").alias("_h"),
                *_codes(F.when(is_chan, _fee_off(params.rules))), (side_rank * 2 + ok_rank).alias("_rank"))
            .repartition(*_ORDER).sortWithinPartitions(*_SORT))


def _restored(name: str, day: str, record: Column | None = None) -> Column:
    """A column that ``_sorted`` sends coded, or as null when it holds its usual value, back as it was; of
    ``record`` (a struct) or of the row."""
    col = _of(name, record)
    if name == "first_seen":
        return F.coalesce(col, F.lit(day)).alias(name)
    if name == "paid_at":
        return F.coalesce(col, _of("time", record)).alias(name)
    if name in ("carried", "_fee_bad") or name in _SLOTS:
        return _decoded(name, record).alias(name)
    return col.alias(name)


def _keyed(records: DataFrame, params: ClassifyParams) -> DataFrame:
    """Per record, the facts of its key and of its order (one window; see ``_SORT``).

    Of the key (records of this date only; HISTORY records sort last in their key and count nowhere):
    ``_rn`` the record's place in its key, ``n_channel``, ``n_local``, ``n_channel_ok``, and the two primaries
    ``c`` and ``l``.
    Of the order: ``multi_channel``: SUCCESS payments of this order at more than one channel. For refunds,
    ``paid_amount`` / ``refunded_total``: the channel's SUCCESS payment of the order and the total of its SUCCESS
    refunds at that channel up to and including the key's channel primary in time order (earlier dates' HISTORY
    records included); ``over_refund``: that refund takes the total past the payment.
    """
    txn_type = F.col("txn_type")
    is_chan = _is("side", "CHANNEL")
    is_local = _is("side", "LOCAL", "HELD")
    ok = _is("status", "SUCCESS")
    at_channel = _is("side", "CHANNEL", "HISTORY") & ok
    pay_ok = at_channel & (txn_type == "PAYMENT")
    refund_ok = at_channel & (txn_type == "REFUND")
    by_key = Window.partitionBy(*_ORDER).orderBy(*_KEY_COLUMNS)
    key = by_key.rangeBetween(Window.currentRow, Window.currentRow)
    order = by_key.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    # A refund's place in time order; null for a payment, which never needs it (the window copies these
    # values into every row of the order, so they stay small for the payments that are most of them).
    refund_key = F.when(txn_type == "REFUND", F.struct(*[F.col(n) for n in _REFUND_ORDER]))
    fact = F.struct(F.col("channel").alias("ch"), (txn_type == "REFUND").alias("r"), refund_key.alias("k"),
                    F.col("amount").alias("a"))
    day = params.day
    # The primaries leave the window as they travelled (coded, usual values as null) and are restored after it.
    travelled = ("amount", "time", "first_seen", "_codes", "_raw")
    df = _sorted(records, params).select(
        "*",
        # rank() is the place of the key's first row in the order, so this is the row's place in its key
        (F.row_number().over(by_key) - F.rank().over(by_key) + 1).alias("_rn"),
        F.sum(is_chan.cast("int")).over(key).alias("n_channel"),
        F.sum(is_local.cast("int")).over(key).alias("n_local"),
        F.sum((is_chan & ok).cast("int")).over(key).alias("n_channel_ok"),
        F.first(F.when(is_chan, F.struct(*travelled, "fee", "coupon_amount", refund_key.alias("_rk"))),
                ignorenulls=True).over(key).alias("_c"),
        F.first(F.when(is_local, F.struct(*travelled)), ignorenulls=True).over(key).alias("_l"),
        F.min(F.when(pay_ok, F.col("channel"))).over(order).alias("_pay_min"),
        F.max(F.when(pay_ok, F.col("channel"))).over(order).alias("_pay_max"),
        F.collect_list(F.when(pay_ok | refund_ok, fact)).over(order).alias("_facts"),
    ).filter(~_is("side", "HISTORY"))
    df = df.withColumns({n: _restored(n, day) for n in ("first_seen", "paid_at", "carried", *_SLOTS)})
    c = F.col("_c")
    here = F.filter("_facts", lambda x: x["ch"] == F.col("channel"))
    paid = F.array_max(F.transform(F.filter(here, lambda x: ~x["r"]), lambda x: x["a"]))
    upto = F.filter(here, lambda x: x["r"] & (x["k"] <= c["_rk"]))
    total = F.aggregate(upto, F.lit(0).cast(MONEY), lambda acc, x: (acc + x["a"]).cast(MONEY))
    is_refund = txn_type == "REFUND"
    df = (df.withColumn("multi_channel", F.coalesce(F.col("_pay_min") != F.col("_pay_max"), F.lit(False)))
            .withColumn("paid_amount", F.when(is_refund & c.isNotNull(), paid))
            .withColumn("refunded_total", F.when(is_refund & c.isNotNull(), total)))
    over = _is("status", "SUCCESS", record=c) & F.col("paid_amount").isNotNull() & \
        (F.col("refunded_total") > F.col("paid_amount"))
    return (df.withColumn("over_refund", F.coalesce(is_refund & over, F.lit(False)))
              .drop("_pay_min", "_pay_max", "_facts", "_codes", "_raw"))


def classify(records: DataFrame, params: ClassifyParams) -> DataFrame:
    """Give every record exactly one category; one shuffle (by order number) and one sort for all of them.

    Output: the record columns plus ``category``, ``resolution``, ``age_days``,
    ``emits`` (this record carries the key's discrepancy row), ``n_channel_ok``
    and the two primaries ``l`` and ``c`` (structs) used to build the rows.
    HISTORY records (earlier dates) inform the order facts and get no outcome.
    """
    side, status = F.col("side"), F.col("status")
    is_chan = side == "CHANNEL"
    is_pay = F.col("txn_type") == "PAYMENT"

    df = _keyed(records, params)
    rn_side = F.when(is_chan, F.col("_rn")).otherwise(F.col("_rn") - F.col("n_channel"))
    df = df.withColumn("rn_side", rn_side).drop("_rn", "_h", "_rank")

    day = params.day

    def l(name: str) -> Column:  # a field of the local / channel primary, as it was
        return _restored(name, day, F.col("_l"))

    def c(name: str) -> Column:
        return _restored(name, day, F.col("_c"))

    has_l, has_c = F.col("n_local") > 0, F.col("n_channel") > 0
    both = has_l & has_c
    l_ok = F.when(is_pay, _is("status", "PAID", record=F.col("_l"))).otherwise(
        _is("status", "SUCCESS", record=F.col("_l")))
    c_ok = _is("status", "SUCCESS", record=F.col("_c"))
    dup = F.col("n_channel_ok") > 1
    cur_diff = l("currency") != c("currency")
    amt_diff = l("amount") != c("amount")

    facts = {"is_pay": is_pay, "has_l": has_l, "has_c": has_c, "both": both, "l_ok": l_ok, "c_ok": c_ok,
             "dup": dup, "cur_diff": cur_diff, "amt_diff": amt_diff, "over_refund": F.col("over_refund"),
             "fee_bad": c("_fee_bad"), "multi_channel": F.col("multi_channel")}
    df = df.withColumn("_pair", compiled(PAIR, facts))
    pair = F.col("_pair")

    # One-sided (jobs.rules.ONE_SIDED): of the lone primary.
    lone = {f: F.when(has_l, l(f)).otherwise(c(f)) for f in ("first_seen", "time", "carried", "carried_as")}
    lone_age = F.datediff(F.lit(params.day), F.to_date(lone["first_seen"]))
    in_window = lone["time"] >= _by_channel(params.window_starts, NO_WINDOW)
    final_one = (F.when(has_l & is_pay, FINAL["LOCAL", True]).when(has_l, FINAL["LOCAL", False])
                 .when(is_pay, FINAL["CHANNEL", True]).otherwise(FINAL["CHANNEL", False]))
    carried_break = lone["carried"] & lone["carried_as"].isin(*BREAKS)
    one_sided = compiled(ONE_SIDED, {"carried_break": carried_break, "carried": lone["carried"],
                                     "aged": lone_age >= params.max_carry_days, "in_window": in_window},
                         {CARRIED_AS: lone["carried_as"], FINAL_ONE_SIDED: final_one})
    any_carried = (has_l & l("carried")) | (has_c & c("carried"))
    pair_age = F.datediff(F.lit(params.day), F.to_date(F.least(
        F.when(has_l, l("first_seen")), F.when(has_c, c("first_seen")))))
    is_one_sided = pair.isin(_ONE_LOCAL, _ONE_CHANNEL)
    pair_age_days = F.when(is_one_sided, lone_age).when(any_carried, pair_age).otherwise(0)

    extra = F.col("rn_side") > 1
    # HELD records sit in keys of their own (the key holds the channel) and the order facts read channel
    # records only, so they change nothing for the others.
    category = compiled(RECORD, {"held": side == "HELD", "local_extra": ~is_chan & extra,
                                 "channel_extra": is_chan & extra, "ok": status == "SUCCESS",
                                 "one_sided": is_one_sided,
                                 "matched_late": (pair == "MATCHED") & both & any_carried},
                        {ONE_SIDED_OUTCOME: one_sided, PAIR_OUTCOME: pair})
    age = (F.when(extra, F.datediff(F.lit(params.day), F.to_date(F.col("first_seen"))))
           .otherwise(pair_age_days))
    still_open = pair.isin(_ONE_LOCAL, _ONE_CHANNEL) & carried_break
    df = (df.withColumn("category", category).withColumn("age_days", age.cast("int"))
            .withColumn("still_open", still_open & ~extra).drop("_pair"))
    df = df.withColumn("expected_fee", F.when(F.col("category") == "FEE_MISMATCH",
                                              _expected_fee(params.rules, F.col("_c"))))

    listed = ~F.col("category").isin("MATCHED", LOCAL_DUPLICATE_KEY, NOT_RECONCILED) & ~F.col("still_open")
    emits = listed & (is_chan | (~extra & ~has_c))  # a pair's row is carried by its channel primary
    resolution = F.create_map(*[F.lit(x) for kv in RESOLUTIONS.items() for x in kv])[F.col("category")]
    df = (df.withColumn("emits", emits)
            .withColumn("resolution", F.coalesce(resolution, F.when(F.col("category") == NOT_RECONCILED,
                                                                    F.lit(NOT_RECONCILED)),
                                                 F.lit("INTEGRITY_FAILURE"))))
    # The primaries as the rows show them, built only where a row is (Spark defers a column used once).
    return df.withColumns({
        "c": F.when(F.col("_c").isNotNull(), F.struct(*[c(n) for n in _CHANNEL_FIELDS])),
        "l": F.when(F.col("_l").isNotNull(), F.struct(*[l(n) for n in _LOCAL_FIELDS])),
    }).drop("_c", "_l")


def with_details(outcomes: DataFrame, std: DataFrame) -> DataFrame:
    """``outcomes`` with the DETAIL_FIELDS as columns: those of fresh channel records found again among the
    day's standard records ``std`` (by key, source_line and file), those of carried items from ``_rest``,
    blank for local records. Meant for the few listed outcomes: ``std`` is filtered by a broadcast of their keys.

    ``_matches`` tells, for a fresh channel record, how many standard records it found (exactly 1 unless the
    standard files changed under the run); the job checks it.
    """
    join = list(_IDENTITY)
    fresh = (F.col("side") == "CHANNEL") & ~F.col("carried")
    wanted = outcomes.filter(fresh).select(*join)
    # The details are read and built only for the rows that pass the semi-join (the generated code reads a
    # column where it is used), so the scan of every standard record costs little more than its key columns.
    found = (std.select(*_identity(), *DETAIL_FIELDS)
             .join(F.broadcast(wanted), join, "left_semi")
             .groupBy(*join).agg(F.first(_details()).alias("_d"), F.count(F.lit(1)).alias("_n")))
    df = outcomes.join(F.broadcast(found), join, "left")
    rest = F.coalesce(F.when(fresh, F.col("_d")).otherwise(F.col("_rest")),
                      F.struct(*[_blank(n) for n in DETAIL_FIELDS]))
    return df.select(*[c for c in outcomes.columns if c not in ("_rest", "_fid")],
                     *[rest[n].alias(n) for n in DETAIL_FIELDS],
                     F.when(fresh, F.coalesce(F.col("_n"), F.lit(0))).alias("_matches"))


# -- outputs ----------------------------------------------------------------------------------------------------

def _shown(df: DataFrame):
    """The local and channel sides a record's discrepancy row shows."""
    is_chan = F.col("side") == "CHANNEL"
    lx = F.when(is_chan & (F.col("rn_side") > 1), F.lit(None)).otherwise(F.col("l"))
    cx = F.when(is_chan, F.struct(*_SHOWN_FIELDS))  # a local record carries a row only when it has no channel side
    return lx, cx


def _note(lx: Column, cx: Column, rejected: Column) -> Column:
    """The row's note; ``rejected`` is the first rejected statement row naming the order (or null)."""
    cat = F.col("category")
    return (
        F.when(cat.isin("AMOUNT_MISMATCH", "REFUND_AMOUNT_MISMATCH"),
               F.format_string("local %s, channel %s, difference %s", lx["amount"], cx["amount"],
                               cx["amount"] - lx["amount"]))
        .when(cat == "CURRENCY_MISMATCH", F.format_string("local %s, channel %s", lx["currency"], cx["currency"]))
        .when(cat == "STATUS_MISMATCH", F.format_string("local %s, channel %s", lx["status"], cx["status"]))
        .when(cat == "DUPLICATE_CHANNEL",
              F.format_string("%d SUCCESS records at the channel for one key", F.col("n_channel_ok")))
        .when(cat == "DUPLICATE_ACROSS_CHANNELS",
              F.lit("the order was also paid at another channel: refund one of the payments"))
        .when(cat == "REFUND_EXCEEDS_PAYMENT",
              F.format_string("refunds total %s, more than the payment %s", cx["refunded_total"],
                              cx["paid_amount"]))
        .when(cat == "FEE_MISMATCH",
              F.format_string("fee %s, contracted rate gives %s", cx["fee"], F.col("expected_fee")))
        .when(cat == "LOCAL_UNPAID_CHANNEL_PAID",
              F.format_string("local %s, channel SUCCESS: mark paid", lx["status"]))
        .when(cat == "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED",
              F.format_string("local refund %s, channel SUCCESS: mark refunded", lx["status"]))
        .when(cat.isin("LOCAL_ONLY", "REFUND_LOCAL_ONLY", "CHANNEL_ONLY", "REFUND_CHANNEL_ONLY") &
              (F.col("age_days") > 0),
              F.format_string("still one-sided after %d days of carrying", F.col("age_days")))
        .when(cat.isin("LOCAL_ONLY", "REFUND_LOCAL_ONLY", "PENDING_CUTOFF") & cx.isNull() & rejected.isNotNull(),
              F.format_string("no channel record read: the channel's row for this order was rejected (%s line %d: "
                              "%s); see %s", rejected["source_file"], rejected["source_line"], rejected["reason"],
                              F.lit(ROW_REJECTED)))
        .when(cat.isin("LOCAL_ONLY", "REFUND_LOCAL_ONLY"), F.lit("no channel record"))
        .when(cat.isin("CHANNEL_ONLY", "REFUND_CHANNEL_ONLY"), F.lit("no local record"))
        .when(cat == "PENDING_CUTOFF",
              F.when(F.col("age_days") > 0, F.format_string("carried since %s", F.col("first_seen")))
              .otherwise(F.lit("near the cut-off: the other side may arrive in the next day's data")))
        .when((cat == "CLEARED_LATE") & F.coalesce(lx["carried_as"].isin(*BREAKS), F.lit(False)),
              F.format_string("clears %s reported on %s", lx["carried_as"], lx["first_seen"]))
        .when((cat == "CLEARED_LATE") & F.coalesce(cx["carried_as"].isin(*BREAKS), F.lit(False)),
              F.format_string("clears %s reported on %s", cx["carried_as"], cx["first_seen"]))
        .when(cat == "CLEARED_LATE", F.format_string(
            "carried since %s, matched today", F.least(lx["first_seen"], cx["first_seen"])))
        .otherwise(F.lit(""))
    )


_REJECTED = T.StructType([T.StructField("source_file", T.StringType()), T.StructField("source_line", T.LongType()),
                          T.StructField("reason", T.StringType())])
RAW_IN_NOTE = 500  # characters of a rejected line's (masked) text shown in its note


def discrepancies(outcomes: DataFrame, day: str, rejects: DataFrame | None = None) -> DataFrame:
    """One row per listed outcome (DESIGN.md columns), both sides side by side.

    ``rejects`` (``schemas.outputs.REJECT_COLUMNS``, the channels' ``_rejects.csv``) adds a
    CHANNEL_ROW_REJECTED row per rejected statement row, and a one-sided local row whose order a rejected row
    names says so in its note instead of "no channel record".
    """
    listed = outcomes.filter("emits")
    if rejects is None:
        listed = listed.withColumn("_rejected", F.lit(None).cast(_REJECTED))
    else:
        first = (rejects.filter(F.coalesce(F.col("order_no"), F.lit("")) != "")
                 .groupBy("channel", "order_no")
                 .agg(F.min(F.struct(F.col("source_file"), F.col("source_line").cast("long"), F.col("reason"))
                            .cast(_REJECTED)).alias("_rejected")))
        listed = listed.join(F.broadcast(first), ["channel", "order_no"], "left")
    lx, cx = _shown(listed)
    rows = listed.select(
        F.lit(day).alias("date"), "channel", "category", "resolution", "order_no", "refund_no",
        lx["amount"].alias("local_amount"), cx["amount"].alias("channel_amount"),
        lx["status"].alias("local_status"), cx["status"].alias("channel_status"),
        F.coalesce(lx["currency"], cx["currency"]).alias("currency"), cx["channel_txn_id"].alias("channel_txn_id"),
        lx["time"].alias("local_time"), cx["time"].alias("channel_time"), "age_days",
        cx["source_file"].alias("source_file"), cx["source_line"].alias("source_line"),
        _note(lx, cx, F.col("_rejected")).alias("note"),
    )
    return rows if rejects is None else rows.unionByName(rejected_rows(rejects, day, rows.schema))


def rejected_rows(rejects: DataFrame, day: str, schema: T.StructType) -> DataFrame:
    """A CHANNEL_ROW_REJECTED discrepancy row (with ``schema``'s columns and types) per rejected statement row:
    its file and line, the order it names when that could be read, the reason and the line as sent (masked)."""
    raw = F.coalesce(F.col("raw"), F.lit(""))
    shown = F.when(F.length(raw) > RAW_IN_NOTE, F.concat(F.substring(raw, 1, RAW_IN_NOTE), F.lit("…"))).otherwise(raw)
    values = {
        "date": F.lit(day), "channel": F.col("channel"), "category": F.lit(ROW_REJECTED),
        "resolution": F.lit(RESOLUTIONS[ROW_REJECTED]), "order_no": F.coalesce(F.col("order_no"), F.lit("")),
        "refund_no": F.lit(""), "age_days": F.lit(0), "source_file": F.col("source_file"),
        "source_line": F.col("source_line"),
        "note": F.concat(F.lit("rejected by the normalizer: "), F.coalesce(F.col("reason"), F.lit("")),
                         F.lit(" | line as sent: "), shown),
    }
    return rejects.select(*[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema.fields])


def corrections(outcomes: DataFrame, day: str, already: DataFrame | None = None) -> DataFrame:
    """Auto-fixes: one correction per key whose category has an action.

    ``already`` (a frame with ``idempotency_key``) lists corrections emitted on
    an earlier date or already applied: they are not emitted again.
    """
    action = F.create_map(*[F.lit(x) for kv in CORRECTION_ACTIONS.items() for x in kv])[F.col("category")]
    _, cx = _shown(outcomes)
    rows = outcomes.filter(F.col("emits") & F.col("category").isin(*CORRECTION_ACTIONS))
    fixes = rows.select(
        F.lit(day).alias("date"), "channel", "order_no", "refund_no", action.alias("action"),
        cx["amount"].alias("amount"), cx["channel_txn_id"].alias("channel_txn_id"),
        F.sha2(F.concat_ws("|", "channel", "txn_type", "order_no", "refund_no", action), 256)
         .alias("idempotency_key"),
    )
    if already is not None:
        fixes = fixes.join(F.broadcast(already.select("idempotency_key").distinct()), "idempotency_key",
                           "left_anti").select(*fixes.columns)
    return fixes


def open_items(outcomes: DataFrame) -> DataFrame:
    """Records carried to D+1: every record of a PENDING_CUTOFF outcome and every open one-sided break."""
    carried = F.col("category").isin(*CARRIED_CATEGORIES)
    return outcomes.filter(carried).select(
        "side", "first_seen", "age_days", F.col("category").alias("carried_as"), *standard.COLUMNS,
        "created_at", "paid_at")


def content_digest() -> Column:
    """An aggregate: a digest of the open items' content (a decimal string), the sum of a 64-bit hash of each
    item's values as text, an empty value and a missing one alike (the CSV holds both as nothing).

    The next date checks the open_items.csv it reads against the digest recorded in summary.json: a file cut
    inside a value or edited keeps its count and amount, not its digest. A sum, so neither the order of the rows
    nor that of the columns counts (a file re-saved with CRLF, a BOM or its columns reordered is the same).
    """
    text = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in OPEN_ITEM_COLUMNS]
    return F.sum(F.xxhash64(*text).cast(T.DecimalType(20, 0))).cast("string")


# The totals group by (channel, category, side, carried); in ``slim`` the last three travel as one small int
# (``_g``), which is cheaper to keep for every record and to group by than three strings.
_GROUP_CATEGORIES = (*RESOLUTIONS, NOT_RECONCILED, LOCAL_DUPLICATE_KEY)
_GROUP_SIDES = ("LOCAL", "CHANNEL", "HELD")


def _group_code(category: Column, side: Column, carried: Column) -> Column:
    return (_code(category, _GROUP_CATEGORIES) * 8 + _code(side, _GROUP_SIDES) * 2 + carried.cast("int")).cast("int")


def slim_outcomes(outcomes: DataFrame) -> DataFrame:
    """What the job keeps of the outcomes: the totals' columns for every record, the whole record only
    for those that are listed, carried or an integrity problem (``_row``; null for the rest)."""
    needed = F.col("emits") | F.col("category").isin("PENDING_CUTOFF", LOCAL_DUPLICATE_KEY, *BREAKS)
    code = _group_code(F.col("category"), F.col("side"), F.col("carried"))
    return outcomes.select("channel", code.alias("_g"), "amount", "fee", "emits",
                           F.when(needed, F.struct(*outcomes.columns)).alias("_row"))


def listed_rows(slim: DataFrame) -> DataFrame:
    """The full outcome records kept by ``slim_outcomes`` (input of discrepancies, corrections, open items)."""
    return slim.filter(F.col("_row").isNotNull()).select("_row.*")


def category_totals(slim: DataFrame) -> DataFrame:
    """Counts and amounts per channel, category, side and carried of ``slim_outcomes`` (small: collected for
    summary.json)."""
    totals = slim.groupBy("channel", "_g").agg(
        F.count(F.lit(1)).alias("records"), F.sum("amount").alias("amount"), F.sum("fee").alias("fee"),
        F.sum(F.col("emits").cast("int")).alias("rows"))
    g = F.col("_g")

    return totals.select(
        # 0 (not in the list) stays visible as UNKNOWN instead of becoming another name
        "channel", _name(F.expr("_g div 8"), _GROUP_CATEGORIES, F.lit("UNKNOWN")).alias("category"),
        _name(F.expr("(_g % 8) div 2"), _GROUP_SIDES, F.lit("UNKNOWN")).alias("side"),
        (g % 2 == 1).alias("carried"), "records", "amount", "fee", "rows")
