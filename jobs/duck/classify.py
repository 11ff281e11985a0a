"""The classification in DuckDB SQL: the rules of jobs/rules.py, compiled by jobs/duck/outcomes.py into CASE
expressions, over the facts this module computes with sorts, aggregates and joins.

Tables in, on one connection: ``local_in`` (LocalRecord columns), ``std_in`` (today's standard records),
``open_in`` (the opening open items), ``hist_in`` (earlier dates' standard records, the refund lookback) and
``fids`` (source_file -> Spark's xxhash64 of it: the file's place in PRIMARY_ORDER; a record read from a
Parquet copy holds it as ``_fid``). Tables out: ``totals`` (per channel, category, side and carried) and
``rows`` (the records that are listed, carried or broken, with their outcome), as jobs/transforms.classify,
slim_outcomes and with_details give them.

Where the Spark engine shuffles every record by order and sorts it into one window, DuckDB finds the few keys
with more than one record on a side, joins the two sides' primaries in one hash join by key and classifies
each key once: the facts are the same, and the outputs byte-equal
(tests/test_engines_differential.py, and the suite's cross-check of every end-to-end run).
"""

from __future__ import annotations

from jobs.duck.expressions import MAX_FILE_IDS, MONEY, blank_if_null, file_id_case, lit, sql_in
from jobs.duck.outcomes import FACT_NAMES, listed, pair_chain, record_category, with_facts
from jobs.duck.read import DETAIL_ONLY, details_from_parquet
from jobs.rules import BREAKS, SIDE_RANK, ClassifyParams
from schemas.outputs import RESOLUTIONS

DETAILS = ("merchant_id", "channel_txn_id", "txn_time", "payer_id", "bank", "source_file")


SRC_BITS = 40  # a record's id: its input table (0 local_in, 1 std_in, 2 open_in, 3 hist_in) << 40 | its rowid there
SOURCES = ("local_in", "std_in", "open_in", "hist_in")


def _rid(src: int, alias: str) -> str:
    return f"(CAST({src << SRC_BITS} AS BIGINT) + {alias}.rowid)"


def _rank(side: str, ok: str, carried: str) -> str:
    """PRIMARY_ORDER's rank (jobs.rules.rank) of a record with SQL ``side``, ``ok`` (SUCCESS) and ``carried``."""
    side_rank = "CASE " + " ".join(f"WHEN {side} = {lit(n)} THEN {r * 2}" for n, r in SIDE_RANK.items()) + " ELSE 2 END"
    return f"({side_rank} + CASE WHEN ({side} = 'CHANNEL' AND {ok}) OR ({side} <> 'CHANNEL' AND {carried}) THEN 0 ELSE 1 END)"


# The key (channel, txn_type, order_no, refund_no) as the join and the duplicate search compare it: (order_no,
# kind, ext). ``kind`` numbers the few (channel, txn_type) pairs of the run's channels, ``ext`` is then the
# refund_no; any other pair is kind -1 with all three texts in ``ext``, each prefixed by its length. One-to-one
# either way, so equal codes are equal keys; a join on one small integer and two texts instead of four texts is a
# third faster (the texts are compared on every match: a low-cardinality text costs as much as the order number).
JOIN_KEY = ("order_no", "kind", "ext")
TXN_TYPES = ("PAYMENT", "REFUND")


def key_code(available: list[str], channel: str, txn_type: str, refund_no: str) -> tuple[str, str]:
    """SQL (kind, ext) of a key whose parts are the SQL texts ``channel``, ``txn_type`` and ``refund_no`` (never
    NULL), as JOIN_KEY says."""
    channels = sorted(set(available))
    if not channels:
        known, kind = "false", "-1"
    else:
        known = f"{channel} IN {sql_in(channels)} AND {txn_type} IN {sql_in(TXN_TYPES)}"
        pairs = [(ch, t) for ch in channels for t in TXN_TYPES]
        kind = "CASE " + " ".join(f"WHEN {channel} = {lit(ch)} AND {txn_type} = {lit(t)} THEN {i}"
                                  for i, (ch, t) in enumerate(pairs)) + " ELSE -1 END"
    spelled = " || ".join(f"CAST(length({v}) AS VARCHAR) || ':' || {v}" for v in (channel, txn_type)) + f" || {refund_no}"
    return f"CAST({kind} AS SMALLINT)", f"CASE WHEN {known} THEN {refund_no} ELSE {spelled} END"


def record_selects(con, params: ClassifyParams, available: list[str]) -> dict[tuple[str, int], tuple[str, str]]:
    """(side, source) -> (the select list of a side's record over input table SOURCES[source] as ``x``, the
    condition that makes it one): what the views ``crec`` and ``lrec`` unite, and what ``_rows`` computes again
    for the few records it lists."""
    d = lit(params.day)
    scope = sql_in(available) if available else "('')"
    common = ("channel", "txn_type", "order_no", "refund_no", "status", "currency")
    files = [r[0] for r in con.execute("SELECT source_file FROM fids").fetchall()]
    # the file's id: none when every record holds it, else a CASE over the few statement files
    if not files:
        fid = "CAST(NULL AS BIGINT)"
    elif len(files) > MAX_FILE_IDS:
        fid = "(SELECT f.fid FROM fids f WHERE f.source_file = coalesce(x.source_file, ''))"
    else:
        fid = file_id_case("x.source_file", files)
    # a record read from a Parquet copy holds its file's id (jobs/duck/read.py)
    std_fid = f"coalesce(x._fid, {fid})"
    keys = ", ".join(f"{blank_if_null('x.' + c)} AS {c}" for c in common)
    kind, ext = key_code(available, *(blank_if_null("x." + c) for c in ("channel", "txn_type", "refund_no")))
    keys += f", {kind} AS kind, {ext} AS ext"
    ok_rank = "CASE WHEN x.status = 'SUCCESS' THEN 0 ELSE 1 END"
    carried_as = "coalesce(nullif(x.carried_as, ''), 'PENDING_CUTOFF')"
    return {
        ("CHANNEL", 1): (f"""{keys}, x.amount, x.fee, x.coupon_amount, {blank_if_null('x.channel_refund_id')} AS channel_refund_id,
            x.source_line, {std_fid} AS fid, {blank_if_null('x.txn_time')} AS time, {d} AS first_seen, false AS carried,
            '' AS carried_as, {ok_rank} AS rank, {_rid(1, 'x')} AS rid""", "true"),
        ("CHANNEL", 2): (f"""{keys}, x.amount, x.fee, x.coupon_amount, {blank_if_null('x.channel_refund_id')} AS channel_refund_id,
            x.source_line, {fid} AS fid, x.txn_time AS time, {blank_if_null('x.first_seen')} AS first_seen, true AS carried,
            {carried_as} AS carried_as, {ok_rank} AS rank, {_rid(2, 'x')} AS rid""",
                         f"x.channel IN {scope} AND x.side = 'CHANNEL'"),
        ("LOCAL", 0): (f"""{keys}, CAST(x.amount AS {MONEY}) AS amount,
            coalesce(nullif(x.paid_at, ''), x.created_at, '') AS time, {d} AS first_seen, false AS carried,
            '' AS carried_as, 3 AS rank, {_rid(0, 'x')} AS rid, '' AS channel_refund_id,
            CAST(NULL AS BIGINT) AS fid, CAST(NULL AS BIGINT) AS source_line""", f"x.channel IN {scope}"),
        ("LOCAL", 2): (f"""{keys}, x.amount, coalesce(nullif(x.paid_at, ''), x.created_at) AS time,
            {blank_if_null('x.first_seen')} AS first_seen, true AS carried, {carried_as} AS carried_as, 2 AS rank,
            {_rid(2, 'x')} AS rid, {blank_if_null('x.channel_refund_id')} AS channel_refund_id, {fid} AS fid, x.source_line""",
                       f"x.channel IN {scope} AND x.side = 'LOCAL'"),
        ("HIST", 3): (f"""{keys}, x.amount, {blank_if_null('x.channel_refund_id')} AS channel_refund_id, x.source_line,
            {std_fid} AS fid, {blank_if_null('x.txn_time')} AS time""", "x.status = 'SUCCESS'"),
    }


def create_views(con, selects: dict[tuple[str, int], tuple[str, str]], available: list[str]) -> None:
    """The records of the date as views over the input tables, one per side (nothing is copied):
    ``crec`` the channel side (today's statements and carried channel items), ``lrec`` the local side (today's
    export and carried local items), ``held`` the export's records of channels not reconciled in this run and
    ``hrec`` the lookback's SUCCESS channel records (order facts only). A record's ``rid`` finds it again."""
    scope = sql_in(available) if available else "('')"

    def union(side: str) -> str:
        return " UNION ALL BY NAME ".join(f"SELECT {cols} FROM {SOURCES[src]} x WHERE {where}"
                                          for (s, src), (cols, where) in selects.items() if s == side)

    con.execute(f"CREATE OR REPLACE TEMP VIEW crec AS {union('CHANNEL')}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW lrec AS {union('LOCAL')}")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW held AS
        SELECT {blank_if_null('channel')} AS channel, CAST(amount AS {MONEY}) AS amount FROM local_in
        WHERE channel IS NULL OR channel NOT IN {scope}""")
    con.execute(f"CREATE OR REPLACE TEMP VIEW hrec AS {union('HIST')}")


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
# What the pair's classification needs of a side's primary (``pair_chain``): its record's own facts, not its texts.
_SLIM = {side: ("rid", "amount", "currency", "carried", *(("fee",) if side == "c" else ()), *FACT_NAMES[side])
         for side in ("c", "l")}
KEY = "channel, txn_type, order_no, refund_no"
_KEY_COLS = ("channel", "txn_type", "order_no", "refund_no")
# What ``kept`` holds beside ``pairs``' columns for a key a record of which is listed, carried or not its side's
# primary: the rest of the pair's facts, for the rows and the extras.
_FACTS = ("pair", "multi_channel", "paid_amount", "refunded_total", "over_refund", "l_first", "c_first",
          *(f"l_{f}" for f in _L_FIELDS if f not in ("rid", "amount", "carried")),
          *(f"c_{f}" for f in ("status", "currency", "time", "first_seen", "carried_as")),
          *(f"{side}_{f}" for side in ("c", "l") for f in FACT_NAMES[side]))


def classify(con, params: ClassifyParams, available: list[str]) -> None:
    """Create ``totals`` (records, amount, fee and listed rows per channel, category, side and carried) and
    ``rows`` (every record that is listed, carried or an integrity problem, with its outcome) from the input
    tables (see the module docstring).

    Each side's primaries (the only record of its key on that side, nearly always; else the first by
    PRIMARY_ORDER) meet in one hash join by key, the pair is classified once per key, and the few records that
    are not their side's primary (``extras``) get their own category; held records never meet anything.
    """
    selects = record_selects(con, params, available)
    create_views(con, selects, available)
    _order_facts(con, len(available) > 1)
    for side, extra in (("c", ", count(*) FILTER (WHERE status = 'SUCCESS') AS n_ok"), ("l", ", 0 AS n_ok")):
        view, side_name = f"{side}rec", {"c": "CHANNEL", "l": "LOCAL"}[side]
        # keys with more than one record on this side (few), their counts and their primary: the records whose
        # key's hash equals a neighbour's in hash order (a sort of 8-byte values: half the time of a hash
        # aggregate of 10M groups), fetched by rid (``{side}mem``), then grouped by the key itself (a hash can
        # collide); ``{side}dupr``: the rids of every record of those keys
        members = f"""
            SELECT rid FROM (
                SELECT h, rid, lag(h) OVER w AS prev, lead(h) OVER w AS next
                FROM (SELECT hash({", ".join(JOIN_KEY)}) AS h, rid FROM {view}) WINDOW w AS (ORDER BY h))
            WHERE h = prev OR h = next"""
        con.execute(f"CREATE OR REPLACE TEMP TABLE {side}mem AS {_by_rid(selects, side_name, members)}")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {side}dup AS
            SELECT {KEY}, count(*) AS n{extra}, arg_min(rid, {_SORT_KEY}) AS primary_rid
            FROM {side}mem GROUP BY ALL HAVING count(*) > 1""")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {side}dupr AS SELECT rid FROM {side}mem SEMI JOIN {side}dup "
                    f"USING ({KEY})")
        # the side's primaries with what the pair needs of them (``_SLIM``): few columns for the join to carry
        cols = ", ".join(f"{f} AS {side}_{f}" for f in _SLIM[side])
        ok = "CASE WHEN ok THEN 1 ELSE 0 END" if side == "c" else "0"
        singles = with_facts(params, side, f"SELECT * FROM {view} ANTI JOIN {side}dupr USING (rid)")
        primaries = with_facts(params, side,
                               f"SELECT m.* FROM {side}mem m SEMI JOIN {side}dup d ON d.primary_rid = m.rid")
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW {side}prim AS
            SELECT {KEY}, kind, ext, {cols}, 1 AS n_{side}, {ok} AS n_{side}_ok FROM ({singles})
            UNION ALL
            SELECT r.channel, r.txn_type, r.order_no, r.refund_no, r.kind, r.ext,
                   {", ".join(f"r.{f}" for f in _SLIM[side])},
                   d.n, d.n_ok
            FROM ({primaries}) r JOIN {side}dup d ON d.primary_rid = r.rid""")
    keys = ", ".join(f"coalesce(c.{k}, l.{k}) AS {k}" for k in _KEY_COLS)
    on = " AND ".join(f"c.{k} = l.{k}" for k in JOIN_KEY)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW keys AS
        SELECT {keys}, coalesce(c.n_c, 0) AS n_channel, coalesce(c.n_c_ok, 0) AS n_channel_ok,
               coalesce(l.n_l, 0) AS n_local, {", ".join(f"c.c_{f}" for f in _SLIM["c"])},
               {", ".join(f"l.l_{f}" for f in _SLIM["l"])}
        FROM cprim c FULL OUTER JOIN lprim l ON {on}""")
    _pairs(con, params, len(available) > 1, selects)
    _extras(con, params)
    _totals(con)
    _rows(con, selects)


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
        several AS (SELECT order_no, channel FROM refund_fact_rows GROUP BY ALL HAVING count(*) > 1),
        running AS (  -- a window over the few orders refunded more than once (a window of 400k one-row
                      -- partitions costs 8x a hash aggregate); a lone refund's running total is its amount
            SELECT rid, order_no, channel, amount AS cum FROM refund_fact_rows ANTI JOIN several USING (order_no, channel)
            UNION ALL
            SELECT rid, order_no, channel,
                   sum(amount) OVER (PARTITION BY order_no, channel ORDER BY {_REFUND_ORDER}) AS cum
            FROM refund_fact_rows SEMI JOIN several USING (order_no, channel))
        SELECT r.rid, r.cum, p.paid FROM running r LEFT JOIN paid p USING (order_no, channel)
        WHERE r.rid IS NOT NULL""")


_PAIR_COLS = ("n_channel", "n_local", "n_channel_ok", "c_carried", "c_amount", "c_fee", "l_carried", "l_amount",
              "category", "age_days", "emits_c", "emits_l")


def _pairs(con, params: ClassifyParams, channels: bool, selects: dict[tuple[str, int], tuple[str, str]]) -> None:
    """``pairs``: the keys' outcomes (``pair_chain``) summed by what the totals need, a ``kept`` key a group of
    its own with its primaries' rids; ``kept``: the kept keys (about 1%) with all of their pair's facts, computed
    again through the same chain from their primaries (by rid): cheaper than a table of every key's facts."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pairs AS {pair_chain(params, channels, 'keys')}
        SELECT channel, category, n_channel > 0 AS has_c, n_local > 0 AS has_l, c_carried, l_carried, emits_c,
               emits_l, CASE WHEN kept THEN c_rid END AS c_rid, CASE WHEN kept THEN l_rid END AS l_rid,
               count(*) AS keys, sum(c_amount) AS c_amount, sum(c_fee) AS c_fee, sum(l_amount) AS l_amount
        FROM emitting GROUP BY ALL""")
    primaries = {side: _by_rid(selects, side.upper(), f"SELECT {side[0]}_rid FROM pairs WHERE {side[0]}_rid IS NOT NULL")
                 for side in ("channel", "local")}  # below: a side's counts as ``{side}prim`` gives them
    kept_keys = f"""
        SELECT {", ".join(f"coalesce(c.{k}, l.{k}) AS {k}" for k in _KEY_COLS)},
               CASE WHEN p.c_rid IS NULL THEN 0 ELSE coalesce(cd.n, 1) END AS n_channel,
               CASE WHEN p.c_rid IS NULL THEN 0
                    ELSE coalesce(cd.n_ok, CASE WHEN c.status = 'SUCCESS' THEN 1 ELSE 0 END) END AS n_channel_ok,
               CASE WHEN p.l_rid IS NULL THEN 0 ELSE coalesce(ld.n, 1) END AS n_local,
               {", ".join(f"c.{f} AS c_{f}" for f in (*_C_FIELDS, *FACT_NAMES["c"], "expected_fee"))},
               {", ".join(f"l.{f} AS l_{f}" for f in (*_L_FIELDS, *FACT_NAMES["l"]))},
               CASE WHEN c.txn_type = 'REFUND' THEN c.paid END AS paid_amount,
               CASE WHEN c.txn_type = 'REFUND' THEN coalesce(c.cum, 0) END AS refunded_total
        FROM pairs p LEFT JOIN ({with_facts(params, "c", primaries['channel'])}) c ON c.rid = p.c_rid
        LEFT JOIN ({with_facts(params, "l", primaries['local'])}) l ON l.rid = p.l_rid
        LEFT JOIN cdup cd ON cd.primary_rid = p.c_rid LEFT JOIN ldup ld ON ld.primary_rid = p.l_rid
        WHERE p.c_rid IS NOT NULL OR p.l_rid IS NOT NULL"""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kept AS {pair_chain(params, channels, f'({kept_keys})')}
        SELECT channel, txn_type, order_no, refund_no, c_rid, l_rid, {", ".join(_PAIR_COLS)}, {", ".join(_FACTS)},
               CASE WHEN category = 'FEE_MISMATCH' THEN c_expected_fee END AS expected_fee
        FROM emitting""")


def _by_rid(selects: dict[tuple[str, int], tuple[str, str]], side: str, rids: str) -> str:
    """SQL: the records of ``side`` (as its view computes them) whose rid SQL ``rids`` gives (its first column),
    found by rowid in their input tables."""
    return " UNION ALL BY NAME ".join(
        f"SELECT {cols} FROM {SOURCES[src]} x WHERE ({where}) AND x.rowid IN (SELECT r - {src << SRC_BITS} "
        f"FROM ({rids}) t(r) WHERE r >= {src << SRC_BITS} AND r < {(src + 1) << SRC_BITS})"
        for (s, src), (cols, where) in selects.items() if s == side)


def _extras(con, params: ClassifyParams) -> None:
    """``extras``: the records that are not their side's primary, each with its own category (jobs.rules.RECORD:
    a further SUCCESS channel record is a duplicate, a further attempt is matched, a further local record is
    an integrity failure) and its key's facts."""
    d = lit(params.day)
    category = record_category(params, held="false", local_extra="side <> 'CHANNEL'",
                               channel_extra="side = 'CHANNEL'", ok="status = 'SUCCESS'")
    pair_facts = ", ".join([f"p.{k}" for k in (*_KEY_COLS, "n_channel", "n_local", "n_channel_ok", "c_rid", "l_rid",
                                                "c_carried", "c_amount", "l_carried", "l_amount")]
                           + [f"p.{f}" for f in (*_FACTS, "expected_fee")])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE extras AS
        WITH extra AS (
            SELECT 'CHANNEL' AS side, r.rid, r.status, r.amount, r.fee, r.carried, r.first_seen, {pair_facts}
            FROM cmem r JOIN cdup d ON d.channel = r.channel AND d.txn_type = r.txn_type AND d.order_no = r.order_no
                AND d.refund_no = r.refund_no AND r.rid <> d.primary_rid
            JOIN kept p ON p.channel = r.channel AND p.txn_type = r.txn_type AND p.order_no = r.order_no
                AND p.refund_no = r.refund_no
            UNION ALL BY NAME
            SELECT 'LOCAL' AS side, r.rid, r.status, r.amount, NULL AS fee, r.carried, r.first_seen, {pair_facts}
            FROM lmem r JOIN ldup d ON d.channel = r.channel AND d.txn_type = r.txn_type AND d.order_no = r.order_no
                AND d.refund_no = r.refund_no AND r.rid <> d.primary_rid
            JOIN kept p ON p.channel = r.channel AND p.txn_type = r.txn_type AND p.order_no = r.order_no
                AND p.refund_no = r.refund_no)
        SELECT * EXCLUDE (pair), {category} AS category,
               CAST(datediff('day', TRY_CAST(first_seen AS DATE), DATE {d}) AS INTEGER) AS age_days
        FROM extra""")


def _totals(con) -> None:
    """``totals``: records, amount, fee and listed rows per channel, category, side and carried."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE totals AS
        SELECT channel, category, side, carried, CAST(sum(records) AS BIGINT) AS records, sum(amount) AS amount,
               sum(fee) AS fee, CAST(sum(CASE WHEN emits THEN records ELSE 0 END) AS BIGINT) AS rows
        FROM (
            SELECT channel, category, 'CHANNEL' AS side, c_carried AS carried, keys AS records, c_amount AS amount,
                   c_fee AS fee, emits_c AS emits FROM pairs WHERE has_c
            UNION ALL SELECT channel, category, 'LOCAL', l_carried, keys, l_amount, NULL, emits_l FROM pairs WHERE has_l
            UNION ALL SELECT channel, category, side, carried, 1, amount, fee,
                side = 'CHANNEL' AND category NOT IN ('MATCHED', 'LOCAL_DUPLICATE_KEY') FROM extras
            UNION ALL SELECT channel, 'NOT_RECONCILED', 'HELD', false, 1, amount, NULL, false FROM held)
        GROUP BY ALL""")


def _rows(con, selects: dict[tuple[str, int], tuple[str, str]]) -> None:
    """``rows``: every record that carries a discrepancy row, is carried to D+1 or is a local duplicate, as the
    whole record (fetched again from its input table by its rid) with its outcome; ``rn_side`` 1 for a primary."""
    carried = sql_in(("PENDING_CUTOFF", *BREAKS))
    # the same facts of a primary (from ``kept``) and of an extra (from ``extras``, which has them of its key)
    facts = ", ".join(f"p.{f}" for f in ("n_channel", "n_local", "n_channel_ok", "category", "age_days",
                                         "multi_channel", "paid_amount", "refunded_total", "over_refund",
                                         "expected_fee")) \
        + ", CASE WHEN l_rid IS NOT NULL THEN {" + ", ".join(f"'{f}': p.l_{f}" for f in _L_FIELDS if f != "rid") \
        + "} END AS l"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE picked AS
        SELECT 'CHANNEL' AS side, c_rid AS rid, 1 AS rn_side, emits_c AS emits, {facts} FROM kept p
            WHERE n_channel > 0 AND (emits_c OR category IN {carried})
        UNION ALL SELECT 'LOCAL', l_rid, 1, emits_l, {facts} FROM kept p
            WHERE n_local > 0 AND (emits_l OR category IN {carried})
        UNION ALL SELECT side, rid, 2, side = 'CHANNEL' AND {listed('category')}, {facts} FROM extras p
            WHERE (side = 'CHANNEL' AND {listed('category')}) OR category = 'LOCAL_DUPLICATE_KEY'""")
    resolution = ("CASE k.category " + " ".join(f"WHEN {lit(a)} THEN {lit(b)}" for a, b in RESOLUTIONS.items())
                  + " ELSE 'INTEGRITY_FAILURE' END AS resolution")
    blank = ", ".join(f"'' AS {n}" for n in DETAILS)
    parts = []
    for (side, src), (cols, where) in selects.items():
        if side == "HIST":
            continue
        table, base = SOURCES[src], src << SRC_BITS
        # the record as the classification saw it (its side's select list), computed again for the picked records
        # only; its details from its table (and, read from a Parquet copy, from the copy)
        ids = (f"SELECT rid - {base} FROM picked WHERE side = {lit(side)} AND rid >= {base} "
               f"AND rid < {base + (1 << SRC_BITS)}")
        details = blank if src == 0 else ", ".join(
            f"coalesce(r.{n}, d.{n}, '') AS {n}" if src == 1 and n in DETAIL_ONLY else f"{blank_if_null('r.' + n)} AS {n}"
            for n in DETAILS)
        raw = ", ".join(f"x.{n} AS {n}" for n in {0: ("created_at", "paid_at"), 1: (*DETAILS, "_pq_file", "_pq_row"),
                                                   2: (*DETAILS, "created_at", "paid_at")}[src])
        created = ("coalesce(r.created_at, '') AS created_at, coalesce(r.paid_at, '') AS paid_at" if src != 1
                   else "'' AS created_at, '' AS paid_at")
        fetched = ""
        if src == 1:  # the DETAIL_ONLY columns of the picked records read from Parquet, fetched once
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE fetched AS
                SELECT d.* FROM ({details_from_parquet(con, table)}) d
                SEMI JOIN (SELECT x._pq_file, x._pq_row FROM {table} x WHERE x.rowid IN ({ids})) p
                    ON p._pq_file = d._pq_file AND p._pq_row = d._pq_row""")
            fetched = "LEFT JOIN fetched d ON d._pq_file = r._pq_file AND d._pq_row = r._pq_row"
        fee = "r.fee, r.coupon_amount, r.channel_refund_id, r.source_line" if side == "CHANNEL" else \
            f"CAST(NULL AS {MONEY}) AS fee, CAST(NULL AS {MONEY}) AS coupon_amount, '' AS channel_refund_id, " \
            "CAST(NULL AS BIGINT) AS source_line"
        parts.append(f"""
            SELECT {lit(side)} AS side, r.channel, r.txn_type, r.order_no, r.refund_no, r.status, r.currency,
                   r.amount, {fee}, r.time, r.first_seen, r.carried, r.carried_as, {details},
                   {created},
                   k.* EXCLUDE (side, rid), {resolution}
            FROM picked k
            JOIN (SELECT {cols}, {raw} FROM {table} x WHERE ({where}) AND x.rowid IN ({ids})) r
                ON r.rid = k.rid AND k.side = {lit(side)}
            {fetched}""")
    con.execute("CREATE OR REPLACE TEMP TABLE rows AS " + " UNION ALL BY NAME ".join(parts))
