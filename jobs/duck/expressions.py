"""SQL expressions the DuckDB classification is built of: literals, per-channel values and the contracted fee
(jobs.rules: fees), exact in decimals, never DOUBLE."""

from __future__ import annotations

from decimal import Decimal

from jobs.rules import ClassifyParams

MONEY = "DECIMAL(18,2)"
RATE = "DECIMAL(12,8)"


def lit(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(values) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


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


# Statement files a file-id CASE names at most (``file_id_case``); past it the id comes another way.
MAX_FILE_IDS = 256


def file_id_case(column: str, names) -> str:
    """SQL: the file id (``jobs.sparkhash.xxhash64``: the file's place in PRIMARY_ORDER) of the source file
    named in text column ``column`` ('' for none), as one CASE over the few ``names`` (a join costs more)."""
    from jobs.sparkhash import xxhash64

    return (f"CASE coalesce({column}, '') " + " ".join(f"WHEN {lit(n)} THEN {xxhash64(n)}" for n in sorted(names))
            + " END")


def blank_if_null(col: str) -> str:
    return f"coalesce({col}, '')"
