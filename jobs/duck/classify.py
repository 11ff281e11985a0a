"""The classification in DuckDB SQL: the rules of jobs/rules.py compiled into CASE expressions over the facts
this module computes with hash aggregates and joins.

Tables in, on one connection: ``local_in`` (LocalRecord columns), ``std_in`` (today's standard records),
``open_in`` (the opening open items), ``hist_in`` (earlier dates' standard records, the refund lookback) and
``fids`` (source_file -> Spark's xxhash64 of it: the file's place in PRIMARY_ORDER). Tables out: ``totals``
(per channel, category, side and carried) and ``rows`` (the records that are listed, carried or broken, with
their outcome), as jobs/transforms.classify, slim_outcomes and with_details give them.

Where the Spark engine shuffles every record by order and sorts it into one window, DuckDB groups records by
key in one hash aggregate and classifies each key once: the facts are the same, and the outputs byte-equal
(tests/test_engines_differential.py, and the suite's cross-check of every end-to-end run).
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
    """SQL: the contracted fee of a channel record, its channel's rate and rounding, negative for a refund; null
    without a rate (jobs.rules: fees)."""
    sign = "CASE WHEN txn_type = 'PAYMENT' THEN 1 ELSE -1 END"
    base = f"(({amount}) - coalesce({coupon}, 0))"
    rated = {k: f"CAST({_round(f'{base} * CAST({lit(r.fee_rate)} AS {RATE})', r.fee_rounding)} * {sign} AS {MONEY})"
             for k, r in params.rules.items() if r.fee_rate is not None}
    return by_channel(rated, f"CAST(NULL AS {MONEY})")


def fee_off(params: ClassifyParams, expected: str, fee: str) -> str:
    """Whether a channel record's fee is off its ``expected`` one by more than its channel's tolerance (never,
    without a rate)."""
    tol = by_channel({k: f"CAST({lit(r.fee_tolerance)} AS {MONEY})" for k, r in params.rules.items()},
                     f"CAST(0.01 AS {MONEY})")
    return f"({expected} IS NOT NULL AND abs({fee} - {expected}) > {tol})"


def _t(col: str) -> str:
    return f"coalesce({col}, '')"


def records_sql(params: ClassifyParams, available: list[str]) -> str:
    """Every record of the date (and the lookback's SUCCESS channel records) in one narrow shape: what the
    comparison reads, and where the rest of the record is (``src``: 0 local_in, 1 std_in, 2 open_in, 3 hist_in;
    ``srow``: its rowid there)."""
    d = lit(params.day)
    scope = _in(available) if available else "('')"
    local = f"""
        SELECT CASE WHEN channel IN {scope} THEN 'LOCAL' ELSE 'HELD' END AS side,
               {_t('channel')} AS channel, {_t('txn_type')} AS txn_type, {_t('order_no')} AS order_no,
               {_t('refund_no')} AS refund_no, {_t('status')} AS status, {_t('currency')} AS currency,
               CAST(amount AS {MONEY}) AS amount, CAST(NULL AS {MONEY}) AS fee, CAST(NULL AS {MONEY}) AS coupon_amount,
               '' AS channel_refund_id, CAST(NULL AS BIGINT) AS source_line, CAST(NULL AS BIGINT) AS fid,
               coalesce(nullif(paid_at, ''), created_at, '') AS time, {d} AS first_seen, false AS carried,
               '' AS carried_as, 0 AS src, rowid AS srow
        FROM local_in"""
    channel = f"""
        SELECT 'CHANNEL', {_t('s.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid, {_t('txn_time')}, {d}, false, '', 1, s.rowid
        FROM std_in s JOIN fids f ON f.source_file = coalesce(s.source_file, '')"""
    carried = f"""
        SELECT {_t('side')}, {_t('o.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid,
               CASE WHEN side = 'LOCAL' THEN coalesce(nullif(paid_at, ''), created_at) ELSE txn_time END,
               {_t('first_seen')}, true, coalesce(nullif(carried_as, ''), 'PENDING_CUTOFF'), 2, o.rowid
        FROM open_in o JOIN fids f ON f.source_file = coalesce(o.source_file, '')
        WHERE o.channel IN {scope}"""
    history = f"""
        SELECT 'HISTORY', {_t('h.channel')}, {_t('txn_type')}, {_t('order_no')}, {_t('refund_no')},
               {_t('status')}, {_t('currency')}, amount, fee, coupon_amount, {_t('channel_refund_id')},
               source_line, f.fid, {_t('txn_time')}, '', false, '', 3, h.rowid
        FROM hist_in h JOIN fids f ON f.source_file = coalesce(h.source_file, '')
        WHERE status = 'SUCCESS'"""
    return " UNION ALL ".join((local, channel, carried, history))


def _nulls_first(col: str, default: str) -> str:
    return f"'{col}_': {col} IS NOT NULL, '{col}': coalesce({col}, {default})"


# PRIMARY_ORDER as one value (a missing value first), for arg_min; then status and amount, so that records equal
# in all of PRIMARY_ORDER (which the rules never meet: a statement line is unique) still pick one the same way.
_SORT_KEY = ("{'rank': rank, " + _nulls_first("time", "''") + ", 'crid': channel_refund_id, "
             + _nulls_first("fid", "0") + ", " + _nulls_first("source_line", "0") + ", 'status': status, "
             + _nulls_first("amount", "0") + "}")
_REFUND_ORDER = "time NULLS FIRST, refund_no, channel_refund_id NULLS FIRST, fid NULLS FIRST, source_line NULLS FIRST"
_L_FIELDS = ("rid", "status", "amount", "currency", "time", "carried", "first_seen", "carried_as")
_C_FIELDS = (*_L_FIELDS, "fee", "coupon_amount", "channel_refund_id", "fid", "source_line")
KEY = "channel, txn_type, order_no, refund_no"


def _struct(fields) -> str:
    return "{" + ", ".join(f"'{n}': {n}" for n in fields) + "}"


def classify(con, params: ClassifyParams, available: list[str]) -> None:
    """Create ``totals`` (records, amount, fee and listed rows per channel, category, side and carried) and
    ``rows`` (every record that is listed, carried or an integrity problem, with its outcome) from the input
    tables (see the module docstring).

    Records meet by key in one hash aggregate (``keys``: counts and the two primaries by PRIMARY_ORDER), the
    pair is classified once per key, and only the few records that are not their side's primary (``extras``)
    are joined back to their key; held records (a channel not reconciled) never meet anything.
    """
    rank = "CASE " + " ".join(f"WHEN side = {lit(s)} THEN {r * 2}" for s, r in SIDE_RANK.items()) + " END"
    ok_first = "CASE WHEN (side = 'CHANNEL' AND status = 'SUCCESS') OR (side <> 'CHANNEL' AND carried) THEN 0 " \
               "ELSE 1 END"
    con.execute(f"CREATE OR REPLACE TEMP TABLE rec AS SELECT *, {rank} + {ok_first} AS rank "
                f"FROM ({records_sql(params, available)})")
    key_cols = KEY
    # Counts per key, and a record of each side: the primary where the side has one record (nearly all keys).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE keys0 AS
        SELECT {key_cols},
            count(*) FILTER (WHERE side = 'CHANNEL') AS n_channel,
            count(*) FILTER (WHERE side = 'LOCAL') AS n_local,
            count(*) FILTER (WHERE side = 'CHANNEL' AND status = 'SUCCESS') AS n_channel_ok,
            min(rowid) FILTER (WHERE side = 'CHANNEL') AS c_any, min(rowid) FILTER (WHERE side = 'LOCAL') AS l_any
        FROM rec WHERE side IN ('CHANNEL', 'LOCAL') GROUP BY ALL""")
    # The primaries of keys with more than one record on a side, by PRIMARY_ORDER.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE primaries AS
        SELECT {key_cols},
            arg_min(rowid, {_SORT_KEY}) FILTER (WHERE side = 'CHANNEL') AS c_rid,
            arg_min(rowid, {_SORT_KEY}) FILTER (WHERE side = 'LOCAL') AS l_rid
        FROM rec SEMI JOIN (SELECT {key_cols} FROM keys0 WHERE n_channel > 1 OR n_local > 1) USING ({key_cols})
        WHERE side IN ('CHANNEL', 'LOCAL') GROUP BY ALL""")
    c_cols = ", ".join(f"c.{f} AS c_{f}" for f in _C_FIELDS if f != "rid")
    l_cols = ", ".join(f"l.{f} AS l_{f}" for f in _L_FIELDS if f != "rid")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE keys AS
        WITH ids AS (
            SELECT k.* EXCLUDE (c_any, l_any),
                CASE WHEN n_channel > 1 THEN p.c_rid ELSE c_any END AS c_rid,
                CASE WHEN n_local > 1 THEN p.l_rid ELSE l_any END AS l_rid
            FROM keys0 k LEFT JOIN primaries p USING ({key_cols}))
        SELECT ids.*, {c_cols}, {l_cols}
        FROM ids LEFT JOIN rec c ON c.rowid = ids.c_rid LEFT JOIN rec l ON l.rowid = ids.l_rid""")
    _order_facts(con)
    _pairs(con, params)
    _extras(con, params)
    _totals(con)
    _rows(con)


def _order_facts(con) -> None:
    """Of an order: paid (SUCCESS) at more than one channel (``multi``); for orders with a refund key, what it
    was paid at the channel (``order_paid``) and each SUCCESS refund's running total at its channel in
    REFUND_ORDER, peers included as Spark's ``<=`` on the refund key includes them (``refund_cum``)."""
    at_channel = "side IN ('CHANNEL', 'HISTORY') AND status = 'SUCCESS'"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE multi AS SELECT order_no FROM rec
        WHERE {at_channel} AND txn_type = 'PAYMENT' GROUP BY order_no HAVING min(channel) <> max(channel)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE refunded AS
        SELECT DISTINCT order_no, channel FROM keys WHERE txn_type = 'REFUND' AND n_channel > 0""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE order_paid AS
        SELECT r.order_no, r.channel, max(r.amount) AS paid FROM rec r SEMI JOIN refunded f
            ON f.order_no = r.order_no AND f.channel = r.channel
        WHERE {at_channel} AND txn_type = 'PAYMENT' GROUP BY r.order_no, r.channel""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE refund_cum AS
        SELECT DISTINCT channel, order_no, refund_no, time, channel_refund_id, fid, source_line, cum FROM (
            SELECT *, sum(amount) OVER (PARTITION BY order_no, channel ORDER BY {_REFUND_ORDER}) AS cum FROM rec
            WHERE {at_channel} AND txn_type = 'REFUND')""")


def _record_category(params: ClassifyParams, *, held: str, local_extra: str, channel_extra: str, ok: str) -> str:
    """jobs.rules.RECORD compiled over a table with the pair's facts (``pairs``' columns)."""
    d = lit(params.day)
    is_pay = "txn_type = 'PAYMENT'"
    lone = _lone()
    lone_age = f"datediff('day', TRY_CAST({lone['first_seen']} AS DATE), DATE {d})"
    windows = by_channel({k: lit(v) for k, v in params.window_starts.items()}, lit(NO_WINDOW))
    final_one = (f"CASE WHEN n_local > 0 AND {is_pay} THEN {lit(FINAL['LOCAL', True])} "
                 f"WHEN n_local > 0 THEN {lit(FINAL['LOCAL', False])} "
                 f"WHEN {is_pay} THEN {lit(FINAL['CHANNEL', True])} ELSE {lit(FINAL['CHANNEL', False])} END")
    one_sided = compiled(ONE_SIDED, {"carried_break": _carried_break(), "carried": lone["carried"],
                                     "aged": f"{lone_age} >= {params.max_carry_days}",
                                     "in_window": f"({lone['time']}) >= {windows}"},
                         {CARRIED_AS: f"({lone['carried_as']})", FINAL_ONE_SIDED: final_one})
    return compiled(RECORD, {"held": held, "local_extra": local_extra, "channel_extra": channel_extra, "ok": ok,
                             "one_sided": _is_one_sided(),
                             "matched_late": f"pair = 'MATCHED' AND n_local > 0 AND n_channel > 0 AND {_any_carried()}"},
                    {ONE_SIDED_OUTCOME: one_sided, PAIR_OUTCOME: "pair"})


def _lone() -> dict[str, str]:
    return {f: f"CASE WHEN n_local > 0 THEN l_{f} ELSE c_{f} END" for f in ("first_seen", "time", "carried",
                                                                         "carried_as")}


def _carried_break() -> str:
    lone = _lone()
    return f"({lone['carried']}) AND ({lone['carried_as']}) IN {_in(BREAKS)}"


def _is_one_sided() -> str:
    return f"pair IN {_in((ONE_LOCAL, ONE_CHANNEL))}"


def _any_carried() -> str:
    return "((n_local > 0 AND l_carried) OR (n_channel > 0 AND c_carried))"


def _resolution(category: str) -> str:
    return (f"CASE {category} " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in RESOLUTIONS.items())
            + " WHEN 'NOT_RECONCILED' THEN 'NOT_RECONCILED' ELSE 'INTEGRITY_FAILURE' END")


def _listed(category: str) -> str:
    return f"{category} NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY', 'NOT_RECONCILED')"


def _pairs(con, params: ClassifyParams) -> None:
    """``pairs``: per key, the pair's outcome (jobs.rules.PAIR), the primaries' category and age, whether a
    carried break stays open, and whether each primary carries a row."""
    d = lit(params.day)
    is_pay = "txn_type = 'PAYMENT'"
    facts = {
        "is_pay": is_pay, "has_l": "n_local > 0", "has_c": "n_channel > 0", "both": "n_local > 0 AND n_channel > 0",
        "l_ok": f"CASE WHEN {is_pay} THEN l_status = 'PAID' ELSE l_status = 'SUCCESS' END",
        "c_ok": "c_status = 'SUCCESS'", "dup": "n_channel_ok > 1",
        "cur_diff": "l_currency <> c_currency", "amt_diff": "l_amount <> c_amount",
        "over_refund": "over_refund", "fee_bad": fee_off(params, "c_expected_fee", "c_fee"),
        "multi_channel": "multi_channel",
    }
    lone_age = f"datediff('day', TRY_CAST({_lone()['first_seen']} AS DATE), DATE {d})"
    pair_age = (f"datediff('day', TRY_CAST(least(CASE WHEN n_local > 0 THEN l_first_seen END, "
                f"CASE WHEN n_channel > 0 THEN c_first_seen END) AS DATE), DATE {d})")
    age = f"CASE WHEN {_is_one_sided()} THEN {lone_age} WHEN {_any_carried()} THEN {pair_age} ELSE 0 END"
    category = _record_category(params, held="false", local_extra="false", channel_extra="false", ok="false")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pairs AS
        WITH priced AS (SELECT *, {expected_fee(params, 'c_amount', 'c_coupon_amount')} AS c_expected_fee FROM keys),
        facts AS (
            SELECT k.*, m.order_no IS NOT NULL AS multi_channel,
                CASE WHEN k.txn_type = 'REFUND' AND c_rid IS NOT NULL THEN q.paid END AS paid_amount,
                CASE WHEN k.txn_type = 'REFUND' AND c_rid IS NOT NULL THEN coalesce(r.cum, 0) END AS refunded_total
            FROM priced k
            LEFT JOIN multi m ON m.order_no = k.order_no
            LEFT JOIN order_paid q ON k.txn_type = 'REFUND' AND q.order_no = k.order_no AND q.channel = k.channel
            LEFT JOIN refund_cum r ON k.txn_type = 'REFUND' AND r.channel = k.channel AND r.order_no = k.order_no
                AND r.refund_no = k.refund_no AND r.time = k.c_time AND r.channel_refund_id = k.c_channel_refund_id
                AND r.fid = k.c_fid AND r.source_line = k.c_source_line),
        refunds AS (
            SELECT *, coalesce(txn_type = 'REFUND' AND c_status = 'SUCCESS' AND paid_amount IS NOT NULL
                               AND refunded_total > paid_amount, false) AS over_refund FROM facts),
        paired AS (SELECT *, {compiled(PAIR, facts)} AS pair FROM refunds),
        categorized AS (
            SELECT *, {category} AS category, CAST({age} AS INTEGER) AS age_days,
                   coalesce({_is_one_sided()} AND {_carried_break()}, false) AS still_open FROM paired)
        SELECT *,
            {_listed('category')} AND NOT still_open AS emits_c,
            {_listed('category')} AND NOT still_open AND n_channel = 0 AS emits_l,
            CASE WHEN category = 'FEE_MISMATCH' THEN c_expected_fee END AS expected_fee
        FROM categorized""")


def _extras(con, params: ClassifyParams) -> None:
    """``extras``: the records that are not their side's primary, each with its own category (jobs.rules.RECORD:
    a further SUCCESS channel record is a duplicate, a further attempt is matched, a further local record is
    an integrity failure) and its key's facts."""
    d = lit(params.day)
    category = _record_category(params, held="false", local_extra="side <> 'CHANNEL'",
                                channel_extra="side = 'CHANNEL'", ok="status = 'SUCCESS'")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE extras AS
        WITH extra AS (
            SELECT r.*, r.rowid AS rid, p.* EXCLUDE ({KEY})
            FROM rec r JOIN (SELECT * FROM pairs WHERE n_channel > 1 OR n_local > 1) p USING ({KEY})
            WHERE r.side IN ('CHANNEL', 'LOCAL') AND r.rowid <> coalesce(p.c_rid, -1)
                AND r.rowid <> coalesce(p.l_rid, -1))
        SELECT * EXCLUDE (pair, category, age_days), {category} AS category,
               CAST(datediff('day', TRY_CAST(first_seen AS DATE), DATE {d}) AS INTEGER) AS age_days
        FROM extra""")


def _totals(con) -> None:
    """``totals``: records, amount, fee and listed rows per channel, category, side and carried."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE totals AS
        SELECT channel, category, side, carried, count(*) AS records, sum(amount) AS amount, sum(fee) AS fee,
               sum(CASE WHEN emits THEN 1 ELSE 0 END) AS rows
        FROM (
            SELECT channel, category, 'CHANNEL' AS side, c_carried AS carried, c_amount AS amount, c_fee AS fee,
                   emits_c AS emits FROM pairs WHERE n_channel > 0
            UNION ALL SELECT channel, category, 'LOCAL', l_carried, l_amount, NULL, emits_l FROM pairs WHERE n_local > 0
            UNION ALL SELECT channel, category, side, carried, amount, fee, emits FROM (
                SELECT *, side = 'CHANNEL' AND category NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY') AS emits FROM extras)
            UNION ALL SELECT channel, 'NOT_RECONCILED', 'HELD', false, amount, NULL, false FROM rec WHERE side = 'HELD')
        GROUP BY ALL""")


_DETAIL_SOURCES = {1: "std_in", 2: "open_in"}


def _rows(con) -> None:
    """``rows``: every record that carries a discrepancy row, is carried to D+1 or is a local duplicate, as the
    whole record (its details fetched from its input table) with its outcome; ``rn_side`` 1 for a primary."""
    carried = _in(("PENDING_CUTOFF", *BREAKS))
    key_facts = ("n_channel", "n_local", "n_channel_ok", "multi_channel", "paid_amount", "refunded_total",
                 "over_refund", "expected_fee", "category", "age_days")
    local_primary = "CASE WHEN l_rid IS NOT NULL THEN {" + ", ".join(f"'{f}': l_{f}" for f in _L_FIELDS
                                                                   if f != "rid") + "} END AS l"
    facts = ", ".join(f"p.{f}" for f in key_facts) + ", " + local_primary
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE picked AS
        SELECT c_rid AS rid, 1 AS rn_side, emits_c AS emits, {facts} FROM pairs p
            WHERE n_channel > 0 AND (emits_c OR category IN {carried})
        UNION ALL SELECT l_rid, 1, emits_l, {facts} FROM pairs p
            WHERE n_local > 0 AND (emits_l OR category IN {carried})
        UNION ALL SELECT rid, 2, side = 'CHANNEL' AND {_listed('category')}, {facts} FROM extras p
            WHERE (side = 'CHANNEL' AND {_listed('category')}) OR category = 'LOCAL_DUPLICATE_KEY'""")
    details = ", ".join(f"coalesce(s.{n}, o.{n}, '') AS {n}" for n in DETAILS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE rows AS
        SELECT r.* EXCLUDE (rank, src, srow), k.* EXCLUDE (rid), {details},
               coalesce(lo.created_at, o.created_at, '') AS created_at,
               coalesce(lo.paid_at, o.paid_at, '') AS paid_at,
               CASE k.category {" ".join(f"WHEN {lit(a)} THEN {lit(b)}" for a, b in RESOLUTIONS.items())}
                    ELSE 'INTEGRITY_FAILURE' END AS resolution
        FROM picked k JOIN rec r ON r.rowid = k.rid
        LEFT JOIN std_in s ON r.src = 1 AND s.rowid = r.srow
        LEFT JOIN open_in o ON r.src = 2 AND o.rowid = r.srow
        LEFT JOIN local_in lo ON r.src = 0 AND lo.rowid = r.srow""")
