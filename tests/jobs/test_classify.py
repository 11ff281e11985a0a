"""The classification transform on small frames: each category, carry-forward, one outcome per record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from jobs import transforms as tx
from schemas import local as local_schema
from schemas import standard
from schemas.outputs import open_item_spark_schema

D = "2026-11-20"
PARAMS = tx.ClassifyParams(day=D, window_starts={"wechatpay": "2026-11-20 23:30:00"}, max_carry_days=3,
                           rules={"wechatpay": tx.ChannelRules(fee_rate=Decimal("0.006"))})


def L(order_no, amount, status="PAID", *, refund_no="", currency="CNY", paid_at="2026-11-20 10:00:05",
      created_at="2026-11-20 10:00:00"):
    txn_type = "REFUND" if refund_no else "PAYMENT"
    return (order_no, refund_no, txn_type, "wechatpay", currency, Decimal(amount), status, created_at, paid_at)


_line = iter(range(2, 10**6))


def C(order_no, amount, status="SUCCESS", *, refund_no="", currency="CNY", time="2026-11-20 10:00:06", fee=None,
      txn_id=None):
    amount = Decimal(amount)
    fee = Decimal(fee) if fee is not None else (amount * Decimal("0.006")).quantize(Decimal("0.01"))
    txn_type = "REFUND" if refund_no else "PAYMENT"
    return ("wechatpay", "1601959334", txn_type, order_no, refund_no, txn_id or f"42{order_no}", "", status,
            currency, amount, -fee if refund_no else fee, Decimal("0.00"), time, "openid", "OTHERS", "bill.csv",
            next(_line))


def run(spark, local=(), channel=(), items=(), params=PARAMS):
    ldf = spark.createDataFrame(list(local), local_schema.spark_schema())
    cdf = spark.createDataFrame(list(channel), standard.spark_schema())
    idf = spark.createDataFrame(list(items), open_item_spark_schema())
    records = (tx.local_records(ldf, params.day).unionByName(tx.channel_records(cdf, params.day))
               .unionByName(tx.open_item_records(idf)))
    return tx.with_details(tx.classify(records, params), cdf)


def categories(outcomes):
    return sorted((r.side, r.order_no, r.refund_no, r.category)
                  for r in outcomes.select("side", "order_no", "refund_no", "category").collect())


def test_each_payment_category(spark):
    out = run(spark, local=[
        L("M1", "10.00"), L("U1", "10.00", "UNPAID", paid_at=""), L("A1", "10.00"), L("X1", "10.00", currency="HKD"),
        L("S1", "10.00"), L("D1", "10.00"), L("F1", "100.00"), L("LO", "10.00"), L("N1", "5.00", "CLOSED", paid_at=""),
    ], channel=[
        C("M1", "10.00"), C("U1", "10.00"), C("A1", "9.99"), C("X1", "10.00"), C("S1", "10.00", "REVOKED"),
        C("D1", "10.00", txn_id="t1"), C("D1", "10.00", txn_id="t2"), C("F1", "100.00", fee="1.20"),
        C("CO", "3.00"), C("N2", "4.00", "CLOSED"),
    ])
    got = dict(((s, o), c) for s, o, _, c in categories(out))
    assert got == {
        ("LOCAL", "M1"): "MATCHED", ("CHANNEL", "M1"): "MATCHED",
        ("LOCAL", "U1"): "LOCAL_UNPAID_CHANNEL_PAID", ("CHANNEL", "U1"): "LOCAL_UNPAID_CHANNEL_PAID",
        ("LOCAL", "A1"): "AMOUNT_MISMATCH", ("CHANNEL", "A1"): "AMOUNT_MISMATCH",
        ("LOCAL", "X1"): "CURRENCY_MISMATCH", ("CHANNEL", "X1"): "CURRENCY_MISMATCH",
        ("LOCAL", "S1"): "STATUS_MISMATCH", ("CHANNEL", "S1"): "STATUS_MISMATCH",
        ("LOCAL", "D1"): "DUPLICATE_CHANNEL", ("CHANNEL", "D1"): "DUPLICATE_CHANNEL",
        ("LOCAL", "F1"): "FEE_MISMATCH", ("CHANNEL", "F1"): "FEE_MISMATCH",
        ("LOCAL", "LO"): "LOCAL_ONLY", ("CHANNEL", "CO"): "CHANNEL_ONLY",
        ("LOCAL", "N1"): "MATCHED", ("CHANNEL", "N2"): "MATCHED",
    }
    rows = {r.order_no: r for r in tx.discrepancies(out, D).collect()}
    assert set(rows) == {"U1", "A1", "X1", "S1", "D1", "F1", "LO", "CO"}
    assert rows["A1"].local_amount == Decimal("10.00") and rows["A1"].channel_amount == Decimal("9.99")
    assert "difference -0.01" in rows["A1"].note
    assert "contracted rate gives 0.60" in rows["F1"].note
    # the duplicate key lists two rows: the pair, and the second channel record on its own
    assert len([r for r in tx.discrepancies(out, D).collect() if r.order_no == "D1"]) == 2


def test_each_refund_category(spark):
    out = run(spark, local=[
        L("O1", "5.00", "SUCCESS", refund_no="R1"), L("O2", "5.00", "PROCESSING", refund_no="R2", paid_at=""),
        L("O3", "5.00", "SUCCESS", refund_no="R3"), L("O4", "5.00", "SUCCESS", refund_no="R4"),
        L("O6", "5.00", "FAILED", refund_no="R6", paid_at=""),
        L("O1", "20.00"),  # the payment of O1 is a separate key from its refund
    ], channel=[
        C("O1", "5.00", refund_no="R1"), C("O2", "5.00", refund_no="R2"), C("O3", "4.00", refund_no="R3"),
        C("O5", "5.00", refund_no="R5"), C("O1", "20.00"),
    ])
    got = {(s, o, r): c for s, o, r, c in categories(out)}
    assert got[("LOCAL", "O1", "R1")] == got[("CHANNEL", "O1", "R1")] == "MATCHED"
    assert got[("LOCAL", "O1", "")] == "MATCHED"
    assert got[("LOCAL", "O2", "R2")] == "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED"
    assert got[("LOCAL", "O3", "R3")] == "REFUND_AMOUNT_MISMATCH"
    assert got[("LOCAL", "O4", "R4")] == "REFUND_LOCAL_ONLY"
    assert got[("CHANNEL", "O5", "R5")] == "REFUND_CHANNEL_ONLY"
    assert got[("LOCAL", "O6", "R6")] == "MATCHED"
    (fix,) = tx.corrections(out, D).collect()
    assert (fix.order_no, fix.refund_no, fix.action, fix.amount) == ("O2", "R2", "MARK_REFUNDED", Decimal("5.00"))
    assert len(fix.idempotency_key) == 64


def test_one_sided_records_in_the_cutoff_window_are_carried(spark):
    out = run(spark, local=[L("LATE", "8.00", paid_at="2026-11-20 23:58:00")],
              channel=[C("EDGE", "9.00", time="2026-11-20 23:59:50"), C("EARLY", "9.00", time="2026-11-20 23:29:59")])
    got = {o: c for _, o, _, c in categories(out)}
    assert got == {"LATE": "PENDING_CUTOFF", "EDGE": "PENDING_CUTOFF", "EARLY": "CHANNEL_ONLY"}
    items = {r.order_no: r for r in tx.open_items(out).collect()}
    assert {k: v.carried_as for k, v in items.items()} == {
        "LATE": "PENDING_CUTOFF", "EDGE": "PENDING_CUTOFF", "EARLY": "CHANNEL_ONLY"}  # a break stays open
    assert items["LATE"].side == "LOCAL" and items["LATE"].paid_at == "2026-11-20 23:58:00"
    assert items["EDGE"].side == "CHANNEL" and items["EDGE"].first_seen == D and items["EDGE"].age_days == 0


def _item(side, order_no, amount, first_seen, *, time="2026-11-19 23:58:00", carried_as="PENDING_CUTOFF"):
    chan = side == "CHANNEL"
    return (side, first_seen, 0, carried_as, "wechatpay", "1601959334" if chan else "", "PAYMENT", order_no, "",
            "42" + order_no if chan else "", "", "SUCCESS" if chan else "PAID", "CNY", Decimal(amount),
            Decimal("0.05") if chan else None, Decimal("0.00") if chan else None, time if chan else "",
            "", "", "old.csv" if chan else "", 7 if chan else None, "" if chan else time, "" if chan else time)


def test_carried_items_clear_late_age_and_expire(spark):
    params = tx.ClassifyParams(day="2026-11-21", window_starts={"wechatpay": "2026-11-21 23:30:00"},
                               max_carry_days=3, rules={})
    out = run(spark, params=params,
              local=[L("P1", "8.00", paid_at="2026-11-21 00:00:20")],
              channel=[C("P2", "9.00", time="2026-11-21 00:03:00"), C("P3", "7.50", time="2026-11-21 00:01:00")],
              items=[_item("CHANNEL", "P1", "8.00", "2026-11-20"), _item("LOCAL", "P2", "9.00", "2026-11-20"),
                     _item("LOCAL", "P3", "7.00", "2026-11-20"),
                     _item("LOCAL", "OLD", "6.00", "2026-11-18"), _item("LOCAL", "YOUNG", "6.00", "2026-11-19")])
    rows = {(r.side, r.order_no): (r.category, r.age_days) for r in out.collect()}
    assert rows[("LOCAL", "P1")] == rows[("CHANNEL", "P1")] == ("CLEARED_LATE", 1)
    assert rows[("LOCAL", "P2")] == ("CLEARED_LATE", 1)
    assert rows[("LOCAL", "P3")] == ("AMOUNT_MISMATCH", 1)   # found its counterpart, but it disagrees
    assert rows[("LOCAL", "OLD")] == ("LOCAL_ONLY", 3)        # carried max_carry_days: now a break
    assert rows[("LOCAL", "YOUNG")] == ("PENDING_CUTOFF", 2)  # still carried
    cleared = [r for r in tx.discrepancies(out, "2026-11-21").collect() if r.category == "CLEARED_LATE"]
    assert sorted(r.order_no for r in cleared) == ["P1", "P2"]
    assert all(r.note == "carried since 2026-11-20, matched today" for r in cleared)


def test_the_primary_of_a_key_is_its_earliest_success_whatever_the_input_order(spark):
    """A key with a failed attempt and two SUCCESS records: the earliest SUCCESS pairs with the local record, the
    later one is listed on its own, the failed attempt is counted and not listed."""
    out = run(spark, local=[L("P", "10.00")], channel=[
        C("P", "10.00", time="2026-11-20 10:30:00", txn_id="late"),
        C("P", "10.00", "REVOKED", time="2026-11-20 09:00:00", txn_id="failed"),
        C("P", "10.00", time="2026-11-20 10:00:00", txn_id="early")])
    got = {(r.side, r.channel_txn_id): (r.category, r.emits) for r in out.collect()}
    assert got == {("LOCAL", ""): ("DUPLICATE_CHANNEL", False), ("CHANNEL", "early"): ("DUPLICATE_CHANNEL", True),
                   ("CHANNEL", "late"): ("DUPLICATE_CHANNEL", True), ("CHANNEL", "failed"): ("MATCHED", False)}
    rows = {r.channel_txn_id: r for r in tx.discrepancies(out, D).collect()}
    assert rows["early"].local_amount == Decimal("10.00") and rows["late"].local_amount is None


def test_refunds_add_up_in_time_order_not_refund_number_order(spark):
    """R1 comes last in time: it is the refund that takes the total (60 + 30 + 20) past the payment of 100."""
    out = run(spark, local=[L("TO", "100.00"), L("TO", "20.00", "SUCCESS", refund_no="R1"),
                            L("TO", "60.00", "SUCCESS", refund_no="R2"), L("TO", "30.00", "SUCCESS", refund_no="R3")],
              channel=[C("TO", "20.00", refund_no="R1", time="2026-11-20 13:00:00"), C("TO", "100.00"),
                       C("TO", "60.00", refund_no="R2", time="2026-11-20 11:00:00"),
                       C("TO", "30.00", refund_no="R3", time="2026-11-20 12:00:00")])
    got = {(s, r): c for s, _, r, c in categories(out)}
    assert got == {(s, r): ("REFUND_EXCEEDS_PAYMENT" if r == "R1" else "MATCHED")
                   for s in ("LOCAL", "CHANNEL") for r in ("", "R1", "R2", "R3")}
    (row,) = tx.discrepancies(out, D).collect()
    assert row.refund_no == "R1" and row.note == "refunds total 110.00, more than the payment 100.00"


def test_values_sent_as_null_through_the_shuffle_come_back_exactly(spark):
    """first_seen (the run's date for fresh records) and paid_at (equal to time when paid) travel as null;
    every record gets its own values back, unpaid, paid, carried and channel alike."""
    carried = list(_item("LOCAL", "OLD", "4.00", "2026-11-18"))
    carried[-1] = "2026-11-18 09:00:09"  # a paid_at of its own, not created_at: time is paid_at
    out = run(spark, local=[L("PAID", "1.00"), L("UNPAID", "2.00", "UNPAID", paid_at=""),
                            L("SAME", "3.00", created_at="2026-11-20 10:00:05")],
              channel=[C("PAID", "1.00")], items=[tuple(carried)])
    got = {(r.side, r.order_no): (r.first_seen, r.created_at, r.paid_at, r.time) for r in out.collect()}
    assert got == {
        ("LOCAL", "PAID"): (D, "2026-11-20 10:00:00", "2026-11-20 10:00:05", "2026-11-20 10:00:05"),
        ("LOCAL", "UNPAID"): (D, "2026-11-20 10:00:00", "", "2026-11-20 10:00:00"),
        ("LOCAL", "SAME"): (D, "2026-11-20 10:00:05", "2026-11-20 10:00:05", "2026-11-20 10:00:05"),
        ("LOCAL", "OLD"): ("2026-11-18", "2026-11-19 23:58:00", "2026-11-18 09:00:09", "2026-11-18 09:00:09"),
        ("CHANNEL", "PAID"): (D, "", "", "2026-11-20 10:00:06")}
    lone = {r.order_no: r for r in out.filter("side = 'LOCAL'").collect()}
    assert lone["OLD"].l.first_seen == "2026-11-18" and lone["PAID"].l.first_seen == D
    assert lone["PAID"].c.first_seen == D


def test_coded_columns_come_back_exactly_and_compare_alike_usual_or_not(spark):
    """status, currency, carried_as and carried cross the shuffle as codes; a value outside the usual lists
    travels as itself. Either way the record gets its own value back and comparisons treat both alike."""
    old = list(_item("LOCAL", "OLD", "4.00", "2026-11-19", carried_as="RETIRED_NAME"))
    out = run(spark, local=[L("XB1", "1.00", currency="XBT"), L("XB2", "1.00", currency="XBT"),
                            L("XB3", "1.00", currency="XBT"), L("ST1", "1.00", "paid")],
              channel=[C("XB1", "1.00", currency="XBT"), C("XB2", "1.00", currency="XBC"), C("XB3", "1.00"),
                       C("ST1", "1.00")],
              items=[tuple(old)])
    rows = {(r.side, r.order_no): r for r in out.collect()}
    assert {k: r.category for k, r in rows.items()} == {
        ("LOCAL", "XB1"): "MATCHED", ("CHANNEL", "XB1"): "MATCHED",
        ("LOCAL", "XB2"): "CURRENCY_MISMATCH", ("CHANNEL", "XB2"): "CURRENCY_MISMATCH",
        ("LOCAL", "XB3"): "CURRENCY_MISMATCH", ("CHANNEL", "XB3"): "CURRENCY_MISMATCH",
        ("LOCAL", "ST1"): "LOCAL_UNPAID_CHANNEL_PAID", ("CHANNEL", "ST1"): "LOCAL_UNPAID_CHANNEL_PAID",
        ("LOCAL", "OLD"): "PENDING_CUTOFF"}
    assert (rows[("CHANNEL", "XB2")].currency, rows[("CHANNEL", "XB2")].c.currency) == ("XBC", "XBC")
    assert (rows[("CHANNEL", "XB2")].l.currency, rows[("CHANNEL", "XB3")].c.currency) == ("XBT", "CNY")
    assert (rows[("LOCAL", "ST1")].status, rows[("CHANNEL", "ST1")].l.status) == ("paid", "paid")
    assert rows[("CHANNEL", "ST1")].c.status == "SUCCESS" and rows[("CHANNEL", "ST1")].c._fee_bad is False
    assert (rows[("LOCAL", "OLD")].carried_as, rows[("LOCAL", "OLD")].carried) == ("RETIRED_NAME", True)
    assert (rows[("LOCAL", "XB1")].carried_as, rows[("LOCAL", "XB1")].carried) == ("", False)
    assert {r.side for r in rows.values()} == {"LOCAL", "CHANNEL"}
    notes = {r.order_no: r.note for r in tx.discrepancies(out, D).collect()}
    assert notes["XB2"] == "local XBT, channel XBC" and notes["ST1"] == "local paid, channel SUCCESS: mark paid"


def test_a_key_exported_twice_locally_is_flagged_not_guessed(spark):
    out = run(spark, local=[L("K1", "1.00"), L("K1", "1.00")], channel=[C("K1", "1.00")])
    cats = sorted(r.category for r in out.filter("side = 'LOCAL'").collect())
    assert cats == ["LOCAL_DUPLICATE_KEY", "MATCHED"]


@pytest.mark.parametrize("rate, fee, expected", [("0.006", "0.06", "MATCHED"), ("0.006", "0.08", "FEE_MISMATCH"),
                                                 (None, "5.00", "MATCHED")])
def test_fee_check_uses_the_contracted_rate_and_tolerance(spark, rate, fee, expected):
    params = tx.ClassifyParams(day=D, window_starts={}, rules={
        "wechatpay": tx.ChannelRules(fee_rate=Decimal(rate) if rate else None, fee_tolerance=Decimal("0.01"))})
    out = run(spark, params=params, local=[L("F", "10.00")], channel=[C("F", "10.00", fee=fee)])
    assert {r.category for r in out.collect()} == {expected}


# -- the hard cases ---------------------------------------------------------------------------------------------

def test_partial_refunds_match_one_by_one_and_the_one_exceeding_the_payment_is_flagged(spark):
    out = run(spark, local=[L("PR", "100.00"), L("PR", "60.00", "SUCCESS", refund_no="R1"),
                            L("PR", "30.00", "SUCCESS", refund_no="R2"), L("PR", "20.00", "SUCCESS", refund_no="R3")],
              channel=[C("PR", "100.00"),
                       C("PR", "60.00", refund_no="R1", time="2026-11-20 11:00:00"),
                       C("PR", "30.00", refund_no="R2", time="2026-11-20 12:00:00"),
                       C("PR", "20.00", refund_no="R3", time="2026-11-20 13:00:00")])
    got = {(s, r): c for s, _, r, c in categories(out)}
    assert got[("LOCAL", "")] == got[("LOCAL", "R1")] == got[("LOCAL", "R2")] == "MATCHED"
    assert got[("LOCAL", "R3")] == got[("CHANNEL", "R3")] == "REFUND_EXCEEDS_PAYMENT"
    (row,) = [r for r in tx.discrepancies(out, D).collect() if r.refund_no == "R3"]
    assert row.note == "refunds total 110.00, more than the payment 100.00"


def test_refunds_of_an_order_paid_on_an_earlier_date_use_its_history(spark):
    hist = spark.createDataFrame([C("OLDPAY", "50.00", time="2026-11-18 09:00:00"),
                                  C("OLDPAY", "40.00", refund_no="RA", time="2026-11-19 09:00:00")],
                                 standard.spark_schema())
    ldf = spark.createDataFrame([L("OLDPAY", "20.00", "SUCCESS", refund_no="RB")], local_schema.spark_schema())
    cdf = spark.createDataFrame([C("OLDPAY", "20.00", refund_no="RB")], standard.spark_schema())
    records = (tx.local_records(ldf, D).unionByName(tx.channel_records(cdf, D))
               .unionByName(tx.history_records(hist)))
    out = tx.classify(records, PARAMS)
    assert sorted((r.side, r.category) for r in out.collect()) == [
        ("CHANNEL", "REFUND_EXCEEDS_PAYMENT"), ("LOCAL", "REFUND_EXCEEDS_PAYMENT")]  # history gets no outcome


def test_the_same_order_paid_at_two_channels_is_a_duplicate_across_channels(spark):
    params = tx.ClassifyParams(day=D, window_starts={"wechatpay": "2026-11-20 23:30:00",
                                                     "alipay": "2026-11-20 23:30:00"}, rules={})
    alipay = list(C("TWICE", "88.00"))
    alipay[0], alipay[5] = "alipay", "2088TWICE"
    out = run(spark, params=params, local=[L("TWICE", "88.00")], channel=[C("TWICE", "88.00"), tuple(alipay)])
    got = {(r.side, r.channel): r.category for r in out.collect()}
    assert got == {("LOCAL", "wechatpay"): "MATCHED", ("CHANNEL", "wechatpay"): "MATCHED",
                   ("CHANNEL", "alipay"): "DUPLICATE_ACROSS_CHANNELS"}
    (row,) = tx.discrepancies(out, D).collect()
    assert row.channel == "alipay" and row.resolution == "MANUAL_REVIEW" and "refund one" in row.note


def test_a_break_stays_open_without_being_listed_again_and_is_cleared_when_its_match_arrives(spark):
    day2 = tx.ClassifyParams(day="2026-11-21", window_starts={"wechatpay": "2026-11-21 23:30:00"}, rules={})
    still = run(spark, params=day2, items=[_item("LOCAL", "LO1", "5.00", "2026-11-19", carried_as="LOCAL_ONLY")])
    (rec,) = still.collect()
    assert (rec.category, rec.age_days, rec.emits) == ("LOCAL_ONLY", 2, False)
    assert [r.carried_as for r in tx.open_items(still).collect()] == ["LOCAL_ONLY"]
    cleared = run(spark, params=day2, channel=[C("LO1", "5.00", time="2026-11-21 08:00:00")],
                  items=[_item("LOCAL", "LO1", "5.00", "2026-11-19", carried_as="LOCAL_ONLY")])
    (row,) = tx.discrepancies(cleared, "2026-11-21").collect()
    assert (row.category, row.age_days) == ("CLEARED_LATE", 2)
    assert row.note == "clears LOCAL_ONLY reported on 2026-11-19"
    assert tx.open_items(cleared).count() == 0


@pytest.mark.parametrize("rounding, fee, expected", [("HALF_UP", "0.05", "MATCHED"), ("HALF_EVEN", "0.04", "MATCHED"),
                                                     ("DOWN", "0.04", "MATCHED"), ("UP", "0.05", "MATCHED"),
                                                     ("HALF_EVEN", "0.05", "FEE_MISMATCH")])
def test_fee_rounding_rule_comes_from_the_contract(spark, rounding, fee, expected):
    # 7.50 x 0.006 = 0.045 exactly: half-up gives 0.05, half-even 0.04, down 0.04, up 0.05
    params = tx.ClassifyParams(day=D, window_starts={}, rules={
        "wechatpay": tx.ChannelRules(fee_rate=Decimal("0.006"), fee_tolerance=Decimal("0"), fee_rounding=rounding)})
    out = run(spark, params=params, local=[L("R", "7.50")], channel=[C("R", "7.50", fee=fee)])
    assert {r.category for r in out.collect()} == {expected}


def test_every_category_costs_one_shuffle_one_sort_and_one_window(spark):
    """One window operator over the order, so Spark plans exactly one Exchange, one Sort and one Window; the Sort
    orders the records of a key too (the window picks its primaries by that order)."""
    ldf = spark.createDataFrame([], local_schema.spark_schema())
    cdf = spark.createDataFrame([], standard.spark_schema())
    idf = spark.createDataFrame([], open_item_spark_schema())
    records = (tx.local_records(ldf, D).unionByName(tx.channel_records(cdf, D))
               .unionByName(tx.open_item_records(idf)).unionByName(tx.history_records(cdf)))
    previous = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")  # the static plan shows every Exchange
    try:
        plan = tx.classify(records, PARAMS)._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", previous)
    assert plan.count("Exchange") == 1, plan
    assert plan.count("Sort [") == 1, plan
    assert plan.count("Window [") == 1, plan
    (sort,) = [line for line in plan.splitlines() if "Sort [" in line]
    sorted_by = [part.strip().split("#")[0] for part in sort.split("Sort [", 1)[1].split("]", 1)[0].split(",")]
    assert sorted_by == list(tx._SORT), sort


def test_listed_channel_records_get_their_details_back_and_carried_items_keep_their_own(spark):
    """The shuffle carries no DETAIL_FIELDS for fresh channel records; ``with_details`` finds them again by key,
    line and file, also when two files of the day have a record of the same key on the same line."""
    day2 = tx.ClassifyParams(day="2026-11-21", window_starts={"wechatpay": "2026-11-21 23:30:00"}, rules={})
    a = list(C("DUP", "5.00", time="2026-11-21 08:00:00", txn_id="tA"))
    b = list(C("DUP", "5.00", time="2026-11-21 08:00:00", txn_id="tB"))
    b[15], b[16], b[1], b[13] = "second.csv", a[16], "1609999999", "openid-b"  # same line, another file
    out = run(spark, params=day2, channel=[tuple(a), tuple(b), C("ONE", "3.00", time="2026-11-21 08:00:00")],
              items=[_item("CHANNEL", "OLD", "4.00", "2026-11-18", carried_as="CHANNEL_ONLY")])
    got = {(r.order_no, r.channel_txn_id): r for r in out.collect()}
    assert set(got) == {("DUP", "tA"), ("DUP", "tB"), ("ONE", "42ONE"), ("OLD", "42OLD")}
    assert (got["DUP", "tB"].source_file, got["DUP", "tB"].merchant_id, got["DUP", "tB"].payer_id) == \
        ("second.csv", "1609999999", "openid-b")
    assert (got["DUP", "tA"].source_file, got["DUP", "tA"].payer_id) == ("bill.csv", "openid")
    assert (got["OLD", "42OLD"].source_file, got["OLD", "42OLD"].source_line) == ("old.csv", 7)
    assert {r._matches for r in out.collect() if r.order_no != "OLD"} == {1}
    rows = {r.channel_txn_id: r for r in tx.discrepancies(out, "2026-11-21").collect()}
    assert rows["tB"].source_file == "second.csv" and rows["42ONE"].category == "CHANNEL_ONLY"


def test_category_totals_decode_the_grouped_code_back_to_names(spark):
    out = tx.classify(
        tx.local_records(spark.createDataFrame([L("M1", "10.00"), L("LO", "2.00"), L("H1", "1.00")],
                                               local_schema.spark_schema()), D, F.col("order_no") != "H1")
        .unionByName(tx.channel_records(spark.createDataFrame([C("M1", "10.00")], standard.spark_schema()), D))
        .unionByName(tx.open_item_records(spark.createDataFrame(
            [_item("CHANNEL", "P9", "4.00", "2026-11-19")], open_item_spark_schema()))),
        PARAMS)
    totals = sorted((r.channel, r.category, r.side, r.carried, r.records, r.amount, r.rows)
                    for r in tx.category_totals(tx.slim_outcomes(out)).collect())
    assert totals == [
        ("wechatpay", "LOCAL_ONLY", "LOCAL", False, 1, Decimal("2.00"), 1),
        ("wechatpay", "MATCHED", "CHANNEL", False, 1, Decimal("10.00"), 0),
        ("wechatpay", "MATCHED", "LOCAL", False, 1, Decimal("10.00"), 0),
        ("wechatpay", "NOT_RECONCILED", "HELD", False, 1, Decimal("1.00"), 0),
        ("wechatpay", "PENDING_CUTOFF", "CHANNEL", True, 1, Decimal("4.00"), 1),
    ]


def test_a_listed_channel_record_missing_from_the_standard_records_is_reported_not_blanked(spark):
    out = tx.classify(tx.channel_records(spark.createDataFrame([C("GONE", "3.00")], standard.spark_schema()), D),
                      PARAMS)
    (rec,) = tx.with_details(out, spark.createDataFrame([], standard.spark_schema())).collect()
    assert (rec.category, rec._matches) == ("CHANNEL_ONLY", 0)  # the job stops on _matches != 1
