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

    def rated(r) -> str:
        exact = f"CAST({_round(f'{base} * CAST({lit(r.fee_rate)} AS {RATE})', r.fee_rounding)} * {sign} AS {MONEY})"
        narrow = _narrow_rate(r.fee_rate)
        if narrow is None:
            return exact
        # the same value in 64-bit decimals, where the amount is small enough (128-bit products cost 5x)
        width, rate = narrow
        fast = (f"CAST({_round(f'CAST({base} AS DECIMAL({width},2)) * {rate}', r.fee_rounding)} * {sign} "
                f"AS {MONEY})")
        return f"CASE WHEN abs({base}) < {10 ** (width - 2)} THEN {fast} ELSE {exact} END"

    return by_channel({k: rated(r) for k, r in params.rules.items() if r.fee_rate is not None},
                      f"CAST(NULL AS {MONEY})")


def _narrow_rate(rate: Decimal) -> tuple[int, str] | None:
    """(the amount's width, the rate as a narrow SQL decimal) such that amount x rate is a 64-bit decimal
    (width + the rate's digits <= 18) with room for amounts of 10 billion; None for a rate with more digits."""
    sign, digits, exponent = Decimal(rate).normalize().as_tuple()
    scale = max(0, -exponent)
    precision = max(len(digits) + max(0, exponent), scale, 1)
    width = 18 - precision
    if width < 12:
        return None
    return width, f"CAST({format(Decimal(rate), 'f')} AS DECIMAL({precision},{scale}))"


def fee_off(params: ClassifyParams, expected: str, fee: str) -> str:
    """Whether a channel record's fee is off its ``expected`` one by more than its channel's tolerance (never,
    without a rate)."""
    tol = by_channel({k: f"CAST({lit(r.fee_tolerance)} AS {MONEY})" for k, r in params.rules.items()},
                     f"CAST(0.01 AS {MONEY})")
    return f"({expected} IS NOT NULL AND abs({fee} - {expected}) > {tol})"


def _t(col: str) -> str:
    return f"coalesce({col}, '')"


SRC_BITS = 40  # a record's id: its input table (0 local_in, 1 std_in, 2 open_in, 3 hist_in) << 40 | its rowid there
SOURCES = ("local_in", "std_in", "open_in", "hist_in")


def _rid(src: int, alias: str) -> str:
    return f"(CAST({src << SRC_BITS} AS BIGINT) + {alias}.rowid)"


def _rank(side: str, ok: str, carried: str) -> str:
    """PRIMARY_ORDER's rank (jobs.rules.rank) of a record with SQL ``side``, ``ok`` (SUCCESS) and ``carried``."""
    side_rank = "CASE " + " ".join(f"WHEN {side} = {lit(n)} THEN {r * 2}" for n, r in SIDE_RANK.items()) + " ELSE 2 END"
    return f"({side_rank} + CASE WHEN ({side} = 'CHANNEL' AND {ok}) OR ({side} <> 'CHANNEL' AND {carried}) THEN 0 ELSE 1 END)"


def create_views(con, params: ClassifyParams, available: list[str]) -> None:
    """The records of the date as views over the input tables, one per side (nothing is copied):
    ``crec`` the channel side (today's statements and carried channel items), ``lrec`` the local side (today's
    export and carried local items), ``held`` the export's records of channels not reconciled in this run and
    ``hrec`` the lookback's SUCCESS channel records (order facts only). A record's ``rid`` finds it again."""
    d = lit(params.day)
    scope = _in(available) if available else "('')"
    common = ("channel", "txn_type", "order_no", "refund_no", "status", "currency")
    files = con.execute("SELECT source_file, fid FROM fids").fetchall()

    def fid(alias: str) -> str:  # the file's id: a CASE over the few statement files (a join costs more)
        if not files or len(files) > 256:
            return f"(SELECT f.fid FROM fids f WHERE f.source_file = coalesce({alias}.source_file, ''))"
        return (f"CASE coalesce({alias}.source_file, '') "
                + " ".join(f"WHEN {lit(n)} THEN {int(h)}" for n, h in files) + " END")

    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW crec AS
        SELECT {", ".join(f"{_t('s.' + c)} AS {c}" for c in common)}, s.amount, s.fee, s.coupon_amount,
               {_t('s.channel_refund_id')} AS channel_refund_id, s.source_line, {fid('s')} AS fid,
               {_t('s.txn_time')} AS time,
               {d} AS first_seen, false AS carried, '' AS carried_as,
               CASE WHEN s.status = 'SUCCESS' THEN 0 ELSE 1 END AS rank, {_rid(1, 's')} AS rid
        FROM std_in s
        UNION ALL
        SELECT {", ".join(f"{_t('o.' + c)} AS {c}" for c in common)}, o.amount, o.fee, o.coupon_amount,
               {_t('o.channel_refund_id')}, o.source_line, {fid('o')}, o.txn_time, {_t('o.first_seen')}, true,
               coalesce(nullif(o.carried_as, ''), 'PENDING_CUTOFF'), CASE WHEN o.status = 'SUCCESS' THEN 0 ELSE 1 END,
               {_rid(2, 'o')}
        FROM open_in o WHERE o.channel IN {scope} AND o.side = 'CHANNEL'""")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW lrec AS
        SELECT {", ".join(f"{_t('l.' + c)} AS {c}" for c in common)}, CAST(l.amount AS {MONEY}) AS amount,
               coalesce(nullif(l.paid_at, ''), l.created_at, '') AS time, {d} AS first_seen, false AS carried,
               '' AS carried_as, 3 AS rank, {_rid(0, 'l')} AS rid, '' AS channel_refund_id,
               CAST(NULL AS BIGINT) AS fid, CAST(NULL AS BIGINT) AS source_line
        FROM local_in l WHERE l.channel IN {scope}
        UNION ALL
        SELECT {", ".join(f"{_t('o.' + c)} AS {c}" for c in common)}, o.amount,
               coalesce(nullif(o.paid_at, ''), o.created_at), {_t('o.first_seen')}, true,
               coalesce(nullif(o.carried_as, ''), 'PENDING_CUTOFF'), 2, {_rid(2, 'o')},
               {_t('o.channel_refund_id')}, {fid('o')}, o.source_line
        FROM open_in o WHERE o.channel IN {scope} AND o.side = 'LOCAL'""")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW held AS
        SELECT {_t('channel')} AS channel, CAST(amount AS {MONEY}) AS amount FROM local_in
        WHERE channel IS NULL OR channel NOT IN {scope}""")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW hrec AS
        SELECT {", ".join(f"{_t('h.' + c)} AS {c}" for c in common)}, h.amount, {_t('h.channel_refund_id')}
               AS channel_refund_id, h.source_line, {fid('h')} AS fid, {_t('h.txn_time')} AS time
        FROM hist_in h WHERE h.status = 'SUCCESS'""")


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
_KEY_COLS = ("channel", "txn_type", "order_no", "refund_no")
# What ``pairs`` keeps of a key only where a record of it is listed, carried or not its side's primary (``x``):
# the rest of the pair's facts, for the rows and the extras.
_FACTS = ("pair", "multi_channel", "paid_amount", "refunded_total", "over_refund",
          *(f"l_{f}" for f in _L_FIELDS if f not in ("rid", "amount", "carried")),
          *(f"c_{f}" for f in ("status", "currency", "time", "first_seen", "carried_as")))


def classify(con, params: ClassifyParams, available: list[str]) -> None:
    """Create ``totals`` (records, amount, fee and listed rows per channel, category, side and carried) and
    ``rows`` (every record that is listed, carried or an integrity problem, with its outcome) from the input
    tables (see the module docstring).

    Each side's primaries (the only record of its key on that side, nearly always; else the first by
    PRIMARY_ORDER) meet in one hash join by key, the pair is classified once per key, and the few records that
    are not their side's primary (``extras``) get their own category; held records never meet anything.
    """
    create_views(con, params, available)
    for side, fields, extra in (("c", _C_FIELDS, ", count(*) FILTER (WHERE status = 'SUCCESS') AS n_ok"),
                                ("l", _L_FIELDS, ", 0 AS n_ok")):
        view = f"{side}rec"
        # keys with more than one record on this side (few), their counts and their primary: found by a hash of
        # the key first (an 8-byte group instead of four strings), then checked by the key itself
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {side}dup AS
            WITH candidates AS (SELECT hash({KEY}) AS h FROM {view} GROUP BY h HAVING count(*) > 1)
            SELECT {KEY}, count(*) AS n{extra}, arg_min(rid, {_SORT_KEY}) AS primary_rid
            FROM {view} WHERE hash({KEY}) IN (SELECT h FROM candidates)
            GROUP BY ALL HAVING count(*) > 1""")
        cols = ", ".join(f"{f} AS {side}_{f}" for f in fields)
        ok = "CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END" if side == "c" else "0"
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW {side}prim AS
            SELECT {KEY}, {cols}, 1 AS n_{side}, {ok} AS n_{side}_ok FROM {view} ANTI JOIN {side}dup USING ({KEY})
            UNION ALL
            SELECT r.channel, r.txn_type, r.order_no, r.refund_no, {", ".join(f"r.{f}" for f in fields)}, d.n, d.n_ok
            FROM {view} r JOIN {side}dup d ON d.primary_rid = r.rid""")
    keys = ", ".join(f"coalesce(c.{k}, l.{k}) AS {k}" for k in _KEY_COLS)
    on = " AND ".join(f"c.{k} = l.{k}" for k in _KEY_COLS)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW keys AS
        SELECT {keys}, coalesce(c.n_c, 0) AS n_channel, coalesce(c.n_c_ok, 0) AS n_channel_ok,
               coalesce(l.n_l, 0) AS n_local, {", ".join(f"c.c_{f}" for f in _C_FIELDS)},
               {", ".join(f"l.l_{f}" for f in _L_FIELDS)}
        FROM cprim c FULL OUTER JOIN lprim l ON {on}""")
    _order_facts(con, len(available) > 1)
    _pairs(con, params, len(available) > 1)
    _extras(con, params)
    _totals(con)
    _rows(con)


def _order_facts(con, channels: bool) -> None:
    """Of an order, from today's and carried SUCCESS channel records and the lookback's: paid at more than one
    channel (``multi``; only with more than one channel), and for each SUCCESS refund at the channel
    (``refund_facts``, by the refund's rid) what the order was paid there and the running total of its
    refunds there in REFUND_ORDER, peers included as Spark's ``<=`` on the refund key includes them."""
    cols = "channel, txn_type, order_no, refund_no, amount, time, channel_refund_id, fid, source_line"
    facts = f"SELECT rid, {cols} FROM crec WHERE status = 'SUCCESS' UNION ALL SELECT NULL, {cols} FROM hrec"
    multi = (f"SELECT order_no FROM ({facts}) WHERE txn_type = 'PAYMENT' GROUP BY order_no "
             f"HAVING min(channel) <> max(channel)") if channels else \
        "SELECT CAST(NULL AS VARCHAR) AS order_no WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP TABLE multi AS {multi}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE refund_fact_rows AS SELECT * FROM ({facts}) WHERE txn_type = 'REFUND'")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE refund_facts AS
        WITH paid AS (
            SELECT p.order_no, p.channel, max(p.amount) AS paid FROM ({facts}) p
            SEMI JOIN (SELECT DISTINCT order_no, channel FROM refund_fact_rows) r
                ON r.order_no = p.order_no AND r.channel = p.channel
            WHERE p.txn_type = 'PAYMENT' GROUP BY p.order_no, p.channel),
        running AS (
            SELECT rid, order_no, channel,
                   sum(amount) OVER (PARTITION BY order_no, channel ORDER BY {_REFUND_ORDER}) AS cum
            FROM refund_fact_rows)
        SELECT r.rid, r.cum, p.paid FROM running r LEFT JOIN paid p USING (order_no, channel)
        WHERE r.rid IS NOT NULL""")


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


def _pairs(con, params: ClassifyParams, channels: bool) -> None:
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
            SELECT k.*, {"m.order_no IS NOT NULL" if channels else "false"} AS multi_channel,
                CASE WHEN k.txn_type = 'REFUND' AND c_rid IS NOT NULL THEN f.paid END AS paid_amount,
                CASE WHEN k.txn_type = 'REFUND' AND c_rid IS NOT NULL THEN coalesce(f.cum, 0) END AS refunded_total
            FROM priced k
            {"LEFT JOIN multi m ON m.order_no = k.order_no" if channels else ""}
            LEFT JOIN refund_facts f ON f.rid = k.c_rid),
        refunds AS (
            SELECT *, coalesce(txn_type = 'REFUND' AND c_status = 'SUCCESS' AND paid_amount IS NOT NULL
                               AND refunded_total > paid_amount, false) AS over_refund FROM facts),
        paired AS (SELECT *, {compiled(PAIR, facts)} AS pair FROM refunds),
        categorized AS (
            SELECT *, {category} AS category, CAST({age} AS INTEGER) AS age_days,
                   coalesce({_is_one_sided()} AND {_carried_break()}, false) AS still_open FROM paired),
        emitting AS (
            SELECT *, {_listed('category')} AND NOT still_open AS emits_c,
                   {_listed('category')} AND NOT still_open AND n_channel = 0 AS emits_l FROM categorized)
        SELECT channel, txn_type, CASE WHEN kept THEN order_no END AS order_no,
               CASE WHEN kept THEN refund_no END AS refund_no, n_channel, n_local, n_channel_ok,
               CASE WHEN kept THEN c_rid END AS c_rid, CASE WHEN kept THEN l_rid END AS l_rid, c_carried, c_amount,
               c_fee, l_carried, l_amount, category, age_days, emits_c, emits_l,
               CASE WHEN kept THEN {{{", ".join(f"'{f}': {f}" for f in _FACTS)},
                           'expected_fee': CASE WHEN category = 'FEE_MISMATCH' THEN c_expected_fee END}} END AS x
        FROM (SELECT *, emits_c OR emits_l OR category IN {_in(('PENDING_CUTOFF', *BREAKS))} OR n_channel > 1
                        OR n_local > 1 AS kept FROM emitting)""")


def _extras(con, params: ClassifyParams) -> None:
    """``extras``: the records that are not their side's primary, each with its own category (jobs.rules.RECORD:
    a further SUCCESS channel record is a duplicate, a further attempt is matched, a further local record is
    an integrity failure) and its key's facts."""
    d = lit(params.day)
    category = _record_category(params, held="false", local_extra="side <> 'CHANNEL'",
                                channel_extra="side = 'CHANNEL'", ok="status = 'SUCCESS'")
    pair_facts = ", ".join([f"p.{k}" for k in (*_KEY_COLS, "n_channel", "n_local", "n_channel_ok", "c_rid", "l_rid",
                                                "c_carried", "c_amount", "l_carried", "l_amount")]
                           + [f"p.x.{f} AS {f}" for f in (*_FACTS, "expected_fee")])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE extras AS
        WITH extra AS (
            SELECT 'CHANNEL' AS side, r.rid, r.status, r.amount, r.fee, r.carried, r.first_seen, {pair_facts}
            FROM crec r JOIN cdup d ON d.channel = r.channel AND d.txn_type = r.txn_type AND d.order_no = r.order_no
                AND d.refund_no = r.refund_no AND r.rid <> d.primary_rid
            JOIN pairs p ON p.channel = r.channel AND p.txn_type = r.txn_type AND p.order_no = r.order_no
                AND p.refund_no = r.refund_no
            UNION ALL BY NAME
            SELECT 'LOCAL' AS side, r.rid, r.status, r.amount, NULL AS fee, r.carried, r.first_seen, {pair_facts}
            FROM lrec r JOIN ldup d ON d.channel = r.channel AND d.txn_type = r.txn_type AND d.order_no = r.order_no
                AND d.refund_no = r.refund_no AND r.rid <> d.primary_rid
            JOIN pairs p ON p.channel = r.channel AND p.txn_type = r.txn_type AND p.order_no = r.order_no
                AND p.refund_no = r.refund_no)
        SELECT * EXCLUDE (pair), {category} AS category,
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
            UNION ALL SELECT channel, category, side, carried, amount, fee,
                side = 'CHANNEL' AND category NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY') FROM extras
            UNION ALL SELECT channel, 'NOT_RECONCILED', 'HELD', false, amount, NULL, false FROM held)
        GROUP BY ALL""")


def _rows(con) -> None:
    """``rows``: every record that carries a discrepancy row, is carried to D+1 or is a local duplicate, as the
    whole record (fetched again from its input table by its rid) with its outcome; ``rn_side`` 1 for a primary."""
    carried = _in(("PENDING_CUTOFF", *BREAKS))
    own = ", ".join(f"p.{f}" for f in ("n_channel", "n_local", "n_channel_ok", "category", "age_days"))
    kept = ", ".join(f"p.x.{f} AS {f}" for f in ("multi_channel", "paid_amount", "refunded_total", "over_refund",
                                                 "expected_fee"))
    local_primary = "CASE WHEN l_rid IS NOT NULL THEN {" + ", ".join(
        f"'{f}': " + (f"p.l_{f}" if f in ("amount", "carried") else f"p.x.l_{f}") for f in _L_FIELDS if f != "rid"
    ) + "} END AS l"
    facts = f"{own}, {kept}, {local_primary}"
    extra_facts = f"{own}, {', '.join(f'p.{f}' for f in ('multi_channel', 'paid_amount', 'refunded_total', 'over_refund', 'expected_fee'))}, " \
        + "CASE WHEN l_rid IS NOT NULL THEN {" + ", ".join(f"'{f}': p.l_{f}" for f in _L_FIELDS if f != "rid") + "} END AS l"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE picked AS
        SELECT 'CHANNEL' AS side, c_rid AS rid, 1 AS rn_side, emits_c AS emits, {facts} FROM pairs p
            WHERE n_channel > 0 AND (emits_c OR category IN {carried})
        UNION ALL SELECT 'LOCAL', l_rid, 1, emits_l, {facts} FROM pairs p
            WHERE n_local > 0 AND (emits_l OR category IN {carried})
        UNION ALL SELECT side, rid, 2, side = 'CHANNEL' AND {_listed('category')}, {extra_facts} FROM extras p
            WHERE (side = 'CHANNEL' AND {_listed('category')}) OR category = 'LOCAL_DUPLICATE_KEY'""")
    resolution = ("CASE k.category " + " ".join(f"WHEN {lit(a)} THEN {lit(b)}" for a, b in RESOLUTIONS.items())
                  + " ELSE 'INTEGRITY_FAILURE' END AS resolution")
    blank = ", ".join(f"'' AS {n}" for n in DETAILS)
    parts = []
    for src, table in enumerate(SOURCES[:3]):
        view = "crec" if src == 1 else "lrec" if src == 0 else None
        # the record as the classification saw it, from its side's view (by rid); its details from its table
        for side_view, side in (("crec", "CHANNEL"), ("lrec", "LOCAL")):
            if view is not None and view != side_view:
                continue
            details = blank if (src == 0) else ", ".join(f"{_t('t.' + n)} AS {n}" for n in DETAILS)
            created = ("coalesce(t.created_at, '') AS created_at, coalesce(t.paid_at, '') AS paid_at" if src != 1
                       else "'' AS created_at, '' AS paid_at")
            fee = "r.fee, r.coupon_amount, r.channel_refund_id, r.source_line" if side == "CHANNEL" else \
                f"CAST(NULL AS {MONEY}) AS fee, CAST(NULL AS {MONEY}) AS coupon_amount, '' AS channel_refund_id, " \
                "CAST(NULL AS BIGINT) AS source_line"
            parts.append(f"""
                SELECT {lit(side)} AS side, r.channel, r.txn_type, r.order_no, r.refund_no, r.status, r.currency,
                       r.amount, {fee}, r.time, r.first_seen, r.carried, r.carried_as, {details},
                       {created},
                       k.* EXCLUDE (side, rid), {resolution}
                FROM picked k JOIN {side_view} r ON r.rid = k.rid AND k.side = {lit(side)}
                JOIN {table} t ON t.rowid = k.rid - {src << SRC_BITS}
                WHERE k.rid >= {src << SRC_BITS} AND k.rid < {(src + 1) << SRC_BITS}""")
    con.execute("CREATE OR REPLACE TEMP TABLE rows AS " + " UNION ALL BY NAME ".join(parts))
