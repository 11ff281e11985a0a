"""A key's outcome in DuckDB SQL: the rules tables of jobs/rules.py compiled into CASE expressions over the
key's facts, and the facts of one record they are built from.

A record's own facts (``with_facts``: complete, in the cut-off window, fee off the contract, an over-refund,
and its first date and category when carried) are computed before the records of a key meet, over the record
alone: the join of the two sides then carries a few booleans per record instead of its statuses, times and
fees, and the chain (``pair_chain``) combines them as jobs/rules.py says. The kept keys (jobs/duck/classify.py)
compute the same facts with the same functions.
"""

from __future__ import annotations

from jobs.duck.expressions import by_channel, expected_fee, fee_off, lit, sql_in
from jobs.rules import (BREAKS, CARRIED_AS, FINAL, FINAL_ONE_SIDED, NO_WINDOW, ONE_CHANNEL, ONE_LOCAL, ONE_SIDED,
                        ONE_SIDED_OUTCOME, PAIR, PAIR_OUTCOME, RECORD, ClassifyParams)

# A side's facts of its record (``with_facts``), as columns ``{c|l}_{name}`` of a key.
FACT_NAMES = {"c": ("ok", "in_window", "since", "was", "fee_bad", "over_refund"),
              "l": ("ok", "in_window", "since", "was")}


def compiled(table, facts: dict[str, str], values: dict[str, str] | None = None) -> str:
    """A rules table of jobs/rules.py as one CASE expression (the SQL twin of ``jobs.transforms.compiled``)."""
    values = values or {}

    def outcome(o) -> str:
        if isinstance(o, tuple):
            return f"CASE WHEN {facts['is_pay']} THEN {lit(o[0])} ELSE {lit(o[1])} END"
        return values[o] if o in values else lit(o)

    whens = []
    for conds, o in table:
        if not conds:
            return "CASE " + " ".join(whens) + f" ELSE {outcome(o)} END" if whens else outcome(o)
        whens.append(f"WHEN {' AND '.join(f'({facts[c]})' for c in conds)} THEN {outcome(o)}")
    return "CASE " + " ".join(whens) + " END"


def with_facts(params: ClassifyParams, side: str, records: str) -> str:
    """SQL: the records of SQL ``records`` (a side's columns as its view gives them) with their own facts,
    FACT_NAMES[side], and for the channel side its refund facts (``paid``, ``cum``) and ``expected_fee``.

    ``ok``: complete (a SUCCESS channel record; a PAID local payment or SUCCESS local refund). ``in_window``: its
    time inside its channel's cut-off window. ``since`` and ``was``: its first date and the category it was
    carried as, when carried (else NULL: a record of today has the date and ''). ``fee_bad``: its fee off the
    contracted one by more than the tolerance. ``over_refund``: a SUCCESS refund that takes its order's refunds
    at the channel past the payment."""
    windows = by_channel({k: lit(v) for k, v in params.window_starts.items()}, lit(NO_WINDOW))
    facts = {
        "ok": "status = 'SUCCESS'" if side == "c" else
        "CASE WHEN txn_type = 'PAYMENT' THEN status = 'PAID' ELSE status = 'SUCCESS' END",
        "in_window": f"time >= {windows}",
        "since": "CASE WHEN carried THEN first_seen END",
        "was": "CASE WHEN carried THEN carried_as END",
    }
    if side == "l":
        return f"SELECT r.*, {', '.join(f'{sql} AS {name}' for name, sql in facts.items())} FROM ({records}) r"
    facts["fee_bad"] = fee_off(params, "expected_fee", "fee")
    facts["over_refund"] = ("coalesce(txn_type = 'REFUND' AND status = 'SUCCESS' AND paid IS NOT NULL "
                            "AND coalesce(cum, 0) > paid, false)")
    return f"""
        SELECT *, {', '.join(f'{sql} AS {name}' for name, sql in facts.items())} FROM (
            SELECT r.*, f.paid, f.cum, {expected_fee(params, 'r.amount', 'r.coupon_amount')} AS expected_fee
            FROM ({records}) r LEFT JOIN refund_facts f ON f.rid = r.rid)"""


def _lone() -> dict[str, str]:
    """The lone record's first date, window, carried and category (of a one-sided key)."""
    return {"in_window": "CASE WHEN n_local > 0 THEN l_in_window ELSE c_in_window END",
            "carried": "CASE WHEN n_local > 0 THEN l_carried ELSE c_carried END",
            "first_seen": "CASE WHEN n_local > 0 THEN l_first ELSE c_first END",
            "carried_as": "CASE WHEN n_local > 0 THEN coalesce(l_was, '') ELSE coalesce(c_was, '') END"}


def _firsts(params: ClassifyParams) -> str:
    """``l_first``, ``c_first``: each side's first date (the date itself for a record of today)."""
    d = lit(params.day)
    return f"coalesce(l_since, {d}) AS l_first, coalesce(c_since, {d}) AS c_first"


def _carried_break() -> str:
    lone = _lone()
    return f"({lone['carried']}) AND ({lone['carried_as']}) IN {sql_in(BREAKS)}"


def _is_one_sided() -> str:
    return f"pair IN {sql_in((ONE_LOCAL, ONE_CHANNEL))}"


def _any_carried() -> str:
    return "((n_local > 0 AND l_carried) OR (n_channel > 0 AND c_carried))"


def listed(category: str) -> str:
    return f"{category} NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY', 'NOT_RECONCILED')"


def record_category(params: ClassifyParams, *, held: str, local_extra: str, channel_extra: str, ok: str) -> str:
    """jobs.rules.RECORD compiled over a relation with the pair's facts (``pair_chain``'s columns, ``l_first``
    and ``c_first`` included)."""
    d = lit(params.day)
    is_pay = "txn_type = 'PAYMENT'"
    lone = _lone()
    lone_age = f"datediff('day', TRY_CAST({lone['first_seen']} AS DATE), DATE {d})"
    final_one = (f"CASE WHEN n_local > 0 AND {is_pay} THEN {lit(FINAL['LOCAL', True])} "
                 f"WHEN n_local > 0 THEN {lit(FINAL['LOCAL', False])} "
                 f"WHEN {is_pay} THEN {lit(FINAL['CHANNEL', True])} ELSE {lit(FINAL['CHANNEL', False])} END")
    one_sided = compiled(ONE_SIDED, {"carried_break": _carried_break(), "carried": lone["carried"],
                                     "aged": f"{lone_age} >= {params.max_carry_days}",
                                     "in_window": lone["in_window"]},
                         {CARRIED_AS: f"({lone['carried_as']})", FINAL_ONE_SIDED: final_one})
    matched_late = f"pair = 'MATCHED' AND n_local > 0 AND n_channel > 0 AND {_any_carried()}"
    return compiled(RECORD, {"held": held, "local_extra": local_extra, "channel_extra": channel_extra, "ok": ok,
                             "one_sided": _is_one_sided(), "matched_late": matched_late},
                    {ONE_SIDED_OUTCOME: one_sided, PAIR_OUTCOME: "pair"})


def pair_chain(params: ClassifyParams, channels: bool, source: str) -> str:
    """A WITH chain over ``source`` (a relation of keys: their counts, each side's primary's rid, amount, currency,
    carried, fee and FACT_NAMES as ``{c|l}_{fact}``) ending in ``emitting``: the pair's facts, its outcome
    (jobs.rules.PAIR), the primaries' category and age, whether a carried break stays open, whether each primary
    carries a row (``emits_c``, ``emits_l``) and whether the key is ``kept``."""
    d = lit(params.day)
    is_pay = "txn_type = 'PAYMENT'"
    facts = {
        "is_pay": is_pay, "has_l": "n_local > 0", "has_c": "n_channel > 0", "both": "n_local > 0 AND n_channel > 0",
        "l_ok": "l_ok", "c_ok": "c_ok", "dup": "n_channel_ok > 1",
        "cur_diff": "l_currency <> c_currency", "amt_diff": "l_amount <> c_amount",
        "over_refund": "over_refund", "fee_bad": "c_fee_bad", "multi_channel": "multi_channel",
    }
    lone_age = f"datediff('day', TRY_CAST({_lone()['first_seen']} AS DATE), DATE {d})"
    pair_age = (f"datediff('day', TRY_CAST(least(CASE WHEN n_local > 0 THEN l_first END, "
                f"CASE WHEN n_channel > 0 THEN c_first END) AS DATE), DATE {d})")
    age = f"CASE WHEN {_is_one_sided()} THEN {lone_age} WHEN {_any_carried()} THEN {pair_age} ELSE 0 END"
    category = record_category(params, held="false", local_extra="false", channel_extra="false", ok="false")
    return f"""
        WITH refunds AS (
            SELECT k.*, {"m.order_no IS NOT NULL" if channels else "false"} AS multi_channel,
                   coalesce(c_over_refund, false) AS over_refund, {_firsts(params)}
            FROM {source} k {"LEFT JOIN multi m ON m.order_no = k.order_no" if channels else ""}),
        paired AS (SELECT *, {compiled(PAIR, facts)} AS pair FROM refunds),
        categorized AS (
            SELECT *, {category} AS category, CAST({age} AS INTEGER) AS age_days,
                   coalesce({_is_one_sided()} AND {_carried_break()}, false) AS still_open FROM paired),
        listing AS (
            SELECT *, {listed('category')} AND NOT still_open AS emits_c,
                   {listed('category')} AND NOT still_open AND n_channel = 0 AS emits_l FROM categorized),
        emitting AS (
            SELECT *, emits_c OR emits_l OR category IN {sql_in(('PENDING_CUTOFF', *BREAKS))} OR n_channel > 1
                      OR n_local > 1 AS kept FROM listing)"""
