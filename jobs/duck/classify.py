"""The classification in DuckDB SQL: the rules of jobs/rules.py compiled into CASE expressions over the facts
this module computes with window functions and aggregates.

Tables in, on one connection: ``local_in`` (LocalRecord columns), ``std_in`` (today's standard records),
``open_in`` (the opening open items), ``hist_in`` (earlier dates' standard records, the refund lookback) and
``fids`` (source_file -> Spark's xxhash64 of it: the file's place in PRIMARY_ORDER). Table out: ``outcomes``,
one row per record of this date with its category, as jobs/transforms.classify gives them (held records
included; earlier dates' records only inform the order facts).

Where the Spark engine packs a record into codes for its one shuffle, DuckDB sorts plain columns: the facts
are the same (tests/test_engines_differential.py and the suite's cross-check hold the outputs byte-equal).
"""

from __future__ import annotations

from decimal import Decimal

from jobs.rules import (BREAKS, CARRIED_AS, FINAL, FINAL_ONE_SIDED, NO_WINDOW, ONE_CHANNEL, ONE_LOCAL, ONE_SIDED,
                        ONE_SIDED_OUTCOME, PAIR, PAIR_OUTCOME, RECORD, SIDE_RANK, ClassifyParams)
from schemas.outputs import RESOLUTIONS

MONEY = "DECIMAL(18,2)"
RATE = "DECIMAL(12,8)"
DETAILS = ("merchant_id", "channel_txn_id", "txn_time", "payer_id", "bank", "source_file")


def lit(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _in(values) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


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


def by_channel(mapping: dict, default: str, column: str = "channel") -> str:
    """A per-channel value as one CASE (few channels)."""
    if not mapping:
        return default
    return ("CASE " + " ".join(f"WHEN {column} = {lit(k)} THEN {v}" for k, v in sorted(mapping.items()))
            + f" ELSE {default} END")


def _round(value: str, rule: str) -> str:
    """``value`` rounded to the cent by a fee rounding rule, exactly (decimals, never DOUBLE)."""
    if rule == "HALF_EVEN":
        y = f"(({value}) * 100)"
        f = f"floor({y})"
        return (f"(CASE WHEN {y} - {f} > 0.5 THEN {f} + 1 WHEN {y} - {f} < 0.5 THEN {f} "
                f"WHEN {f} % 2 = 0 THEN {f} ELSE {f} + 1 END) * 0.01")
    if rule in ("DOWN", "UP"):  # toward / away from zero, at the cent
        step = "floor" if rule == "DOWN" else "ceil"
        return f"CAST(sign({value}) * {step}(abs({value}) * 100) * 0.01 AS {MONEY})"
    return f"round({value}, 2)"


def expected_fee(params: ClassifyParams, amount: str, coupon: str) -> str:
    """The contracted fee of a channel record (null without a rate); negative for a refund."""
    rates = {k: f"CAST({lit(r.fee_rate)} AS {RATE})" for k, r in params.rules.items() if r.fee_rate is not None}
    base = f"(({amount}) - coalesce({coupon}, 0)) * {by_channel(rates, f'CAST(NULL AS {RATE})')}"
    rounded = by_channel({k: _round(base, r.fee_rounding) for k, r in params.rules.items()}, _round(base, "HALF_UP"))
    return f"CAST(({rounded}) * CASE WHEN txn_type = 'PAYMENT' THEN 1 ELSE -1 END AS {MONEY})"


def fee_off(params: ClassifyParams) -> str:
    tol = by_channel({k: f"CAST({lit(r.fee_tolerance)} AS {MONEY})" for k, r in params.rules.items()},
                     f"CAST(0.01 AS {MONEY})")
    expected = expected_fee(params, "amount", "coupon_amount")
    return f"(({expected}) IS NOT NULL AND abs(fee - ({expected})) > {tol})"


def _t(col: str) -> str:
    return f"coalesce({col}, '')"


def records_sql(params: ClassifyParams, available: list[str]) -> str:
    """Every record of the date (and the lookback's SUCCESS channel records) in one shape."""
    d = lit(params.day)
    scope = _in(available) if available else "('')"
    fee_bad = fee_off(params)
    details_blank = ", ".join(f"'' AS {n}" for n in DETAILS)

    def details(alias: str) -> str:
        return ", ".join(f"{_t(alias + n)} AS {n}" for n in DETAILS)
    local = f"""
        SELECT CASE WHEN channel IN {scope} THEN 'LOCAL' ELSE 'HELD' END AS side,
               {_t('channel')} AS channel, {_t('txn_type')} AS txn_type, {_t('order_no')} AS order_no,
               {_t('refund_no')} AS refund_no, {_t('status')} AS status, {_t('currency')} AS currency,
               CAST(amount AS {MONEY}) AS amount, CAST(NULL AS {MONEY}) AS fee, CAST(NULL AS {MONEY}) AS coupon_amount,
               '' AS channel_refund_id, CAST(NULL AS BIGINT) AS source_line, CAST(NULL AS BIGINT) AS fid,
               {_t('created_at')} AS created_at, {_t('paid_at')} AS paid_at,
               coalesce(nullif(paid_at, ''), created_at, '') AS time, {d} AS first_seen, false AS carried,
               '' AS carried_as, {details_blank}, CAST(NULL AS BOOLEAN) AS fee_bad
        FROM local_in"""
    channel = f"""
        SELECT 'CHANNEL' AS side, {_t('s.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid, '' AS created_at, '' AS paid_at, {_t('txn_time')} AS time, {d}, false, '',
               {details('s.')},
               {fee_bad}
        FROM std_in s JOIN fids f ON f.source_file = coalesce(s.source_file, '')"""
    carried = f"""
        SELECT {_t('side')}, {_t('o.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid, {_t('created_at')}, {_t('paid_at')},
               CASE WHEN side = 'LOCAL' THEN coalesce(nullif(paid_at, ''), created_at) ELSE txn_time END,
               {_t('first_seen')}, true, coalesce(nullif(carried_as, ''), 'PENDING_CUTOFF'),
               {details('o.')},
               CASE WHEN side = 'CHANNEL' THEN {fee_bad} END
        FROM open_in o JOIN fids f ON f.source_file = coalesce(o.source_file, '')
        WHERE o.channel IN {scope}"""
    history = f"""
        SELECT 'HISTORY', {_t('h.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid, '', '', {_t('txn_time')}, '', false, '', {details_blank}, NULL
        FROM hist_in h JOIN fids f ON f.source_file = coalesce(h.source_file, '')
        WHERE status = 'SUCCESS'"""
    return " UNION ALL ".join((local, channel, carried, history))


_ORDER = "rank, time NULLS FIRST, channel_refund_id NULLS FIRST, fid NULLS FIRST, source_line NULLS FIRST, " \
         "status, amount NULLS FIRST, created_at"
_REFUND_ORDER = "time NULLS FIRST, refund_no, channel_refund_id NULLS FIRST, fid NULLS FIRST, source_line NULLS FIRST"
_L_FIELDS = ("status", "amount", "currency", "time", "carried", "first_seen", "carried_as")
_C_FIELDS = (*_L_FIELDS, "fee", "coupon_amount", "fee_bad", "channel_refund_id", "fid", "source_line")


def _struct(fields) -> str:
    return "{" + ", ".join(f"'{n}': {n}" for n in fields) + "}"


def classify(con, params: ClassifyParams, available: list[str]) -> None:
    """Create ``outcomes`` from the input tables (see the module docstring)."""
    rank = "CASE " + " ".join(f"WHEN side = {lit(s)} THEN {r * 2}" for s, r in SIDE_RANK.items()) + " END"
    ok_first = "CASE WHEN (side = 'CHANNEL' AND status = 'SUCCESS') OR (side <> 'CHANNEL' AND carried) THEN 0 " \
               "ELSE 1 END"
    con.execute(f"CREATE OR REPLACE TEMP TABLE rec AS SELECT *, {rank} + {ok_first} AS rank "
                f"FROM ({records_sql(params, available)})")
    at_channel = "side IN ('CHANNEL', 'HISTORY') AND status = 'SUCCESS'"
    # Of the order: who it was paid at, for how much at each channel, and each SUCCESS refund's running total
    # at its channel in REFUND_ORDER (peers included, as Spark's ``<=`` on the refund key includes them).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE order_pay AS
        SELECT order_no, min(channel) AS pay_min, max(channel) AS pay_max FROM rec
        WHERE {at_channel} AND txn_type = 'PAYMENT' GROUP BY order_no""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE order_paid AS
        SELECT order_no, channel, max(amount) AS paid FROM rec
        WHERE {at_channel} AND txn_type = 'PAYMENT' GROUP BY order_no, channel""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE refund_cum AS
        SELECT DISTINCT channel, order_no, refund_no, time, channel_refund_id, fid, source_line, cum FROM (
            SELECT *, sum(amount) OVER (PARTITION BY order_no, channel ORDER BY {_REFUND_ORDER}) AS cum FROM rec
            WHERE {at_channel} AND txn_type = 'REFUND')""")
    key = "channel, txn_type, order_no, refund_no"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE keyed AS
        SELECT * FROM (
            SELECT *,
                row_number() OVER w AS rn,
                sum(CASE WHEN side = 'CHANNEL' THEN 1 ELSE 0 END) OVER wf AS n_channel,
                sum(CASE WHEN side IN ('LOCAL', 'HELD') THEN 1 ELSE 0 END) OVER wf AS n_local,
                sum(CASE WHEN side = 'CHANNEL' AND status = 'SUCCESS' THEN 1 ELSE 0 END) OVER wf AS n_channel_ok,
                first_value(CASE WHEN side = 'CHANNEL' THEN {_struct(_C_FIELDS)} END IGNORE NULLS) OVER wf AS c,
                first_value(CASE WHEN side IN ('LOCAL', 'HELD') THEN {_struct(_L_FIELDS)} END IGNORE NULLS)
                    OVER wf AS l
            FROM rec
            WINDOW w AS (PARTITION BY {key} ORDER BY {_ORDER}),
                   wf AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
        WHERE side <> 'HISTORY'""")
    _classified(con, params)


def _classified(con, params: ClassifyParams) -> None:
    d = lit(params.day)
    is_pay = "txn_type = 'PAYMENT'"
    facts = {
        "is_pay": is_pay, "has_l": "n_local > 0", "has_c": "n_channel > 0", "both": "n_local > 0 AND n_channel > 0",
        "l_ok": f"CASE WHEN {is_pay} THEN l.status = 'PAID' ELSE l.status = 'SUCCESS' END",
        "c_ok": "c.status = 'SUCCESS'", "dup": "n_channel_ok > 1",
        "cur_diff": "l.currency <> c.currency", "amt_diff": "l.amount <> c.amount",
        "over_refund": "over_refund", "fee_bad": "c.fee_bad", "multi_channel": "multi_channel",
    }
    lone = {f: f"CASE WHEN n_local > 0 THEN l.{f} ELSE c.{f} END" for f in ("first_seen", "time", "carried",
                                                                         "carried_as")}
    lone_age = f"datediff('day', TRY_CAST({lone['first_seen']} AS DATE), DATE {d})"
    windows = by_channel({k: lit(v) for k, v in params.window_starts.items()}, lit(NO_WINDOW))
    final_one = (f"CASE WHEN n_local > 0 AND {is_pay} THEN {lit(FINAL['LOCAL', True])} "
                 f"WHEN n_local > 0 THEN {lit(FINAL['LOCAL', False])} "
                 f"WHEN {is_pay} THEN {lit(FINAL['CHANNEL', True])} ELSE {lit(FINAL['CHANNEL', False])} END")
    carried_break = f"({lone['carried']}) AND ({lone['carried_as']}) IN {_in(BREAKS)}"
    one_sided = compiled(ONE_SIDED, {"carried_break": carried_break, "carried": lone["carried"],
                                     "aged": f"{lone_age} >= {params.max_carry_days}",
                                     "in_window": f"({lone['time']}) >= {windows}"},
                         {CARRIED_AS: f"({lone['carried_as']})", FINAL_ONE_SIDED: final_one})
    any_carried = "((n_local > 0 AND l.carried) OR (n_channel > 0 AND c.carried))"
    is_one_sided = f"pair IN {_in((ONE_LOCAL, ONE_CHANNEL))}"
    pair_age = (f"datediff('day', TRY_CAST(least(CASE WHEN n_local > 0 THEN l.first_seen END, "
                f"CASE WHEN n_channel > 0 THEN c.first_seen END) AS DATE), DATE {d})")
    extra = "rn_side > 1"
    is_chan = "side = 'CHANNEL'"
    category = compiled(RECORD, {"held": "side = 'HELD'", "local_extra": f"NOT ({is_chan}) AND {extra}",
                                 "channel_extra": f"{is_chan} AND {extra}", "ok": "status = 'SUCCESS'",
                                 "one_sided": is_one_sided,
                                 "matched_late": f"pair = 'MATCHED' AND n_local > 0 AND n_channel > 0 AND {any_carried}"},
                        {ONE_SIDED_OUTCOME: one_sided, PAIR_OUTCOME: "pair"})
    age = (f"CASE WHEN {extra} THEN datediff('day', TRY_CAST(first_seen AS DATE), DATE {d}) "
           f"WHEN {is_one_sided} THEN {lone_age} WHEN {any_carried} THEN {pair_age} ELSE 0 END")
    still_open = f"coalesce({is_one_sided} AND {carried_break} AND NOT ({extra}), false)"
    resolution = "CASE category " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in RESOLUTIONS.items()) + \
                 " WHEN 'NOT_RECONCILED' THEN 'NOT_RECONCILED' ELSE 'INTEGRITY_FAILURE' END"
    listed = "category NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY', 'NOT_RECONCILED') AND NOT still_open"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE outcomes AS
        WITH facts AS (
            SELECT k.* EXCLUDE (rank),
                CASE WHEN side = 'CHANNEL' THEN rn ELSE rn - n_channel END AS rn_side,
                coalesce(p.pay_min <> p.pay_max, false) AS multi_channel,
                CASE WHEN txn_type = 'REFUND' AND c IS NOT NULL THEN q.paid END AS paid_amount,
                CASE WHEN txn_type = 'REFUND' AND c IS NOT NULL THEN coalesce(r.cum, 0) END AS refunded_total
            FROM keyed k
            LEFT JOIN order_pay p ON p.order_no = k.order_no
            LEFT JOIN order_paid q ON k.txn_type = 'REFUND' AND q.order_no = k.order_no AND q.channel = k.channel
            LEFT JOIN refund_cum r ON k.txn_type = 'REFUND' AND r.channel = k.channel AND r.order_no = k.order_no
                AND r.refund_no = k.refund_no AND r.time = k.c.time AND r.channel_refund_id = k.c.channel_refund_id
                AND r.fid = k.c.fid AND r.source_line = k.c.source_line),
        refunds AS (
            SELECT *, coalesce(txn_type = 'REFUND' AND c.status = 'SUCCESS' AND paid_amount IS NOT NULL
                               AND refunded_total > paid_amount, false) AS over_refund FROM facts),
        paired AS (SELECT *, {compiled(PAIR, facts)} AS pair FROM refunds),
        categorized AS (SELECT *, {category} AS category, CAST({age} AS INTEGER) AS age_days,
                               {still_open} AS still_open FROM paired)
        SELECT * EXCLUDE (pair, still_open), {resolution} AS resolution,
               {listed} AND ({is_chan} OR (NOT ({extra}) AND NOT (n_channel > 0))) AS emits,
               CASE WHEN category = 'FEE_MISMATCH' THEN {expected_fee(params, 'c.amount', 'c.coupon_amount')}
               END AS expected_fee
        FROM categorized""")
