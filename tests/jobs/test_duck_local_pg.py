"""The DuckDB engine's read of the replica (jobs/duck/local_pg.py) gives what the Spark JDBC read gives.

A real PostgreSQL (tests/pg.py) holds a few rows chosen for their edges: the
day's bounds in the business zone (``timestamp`` and ``timestamptz``, both
daylight-saving changes), text CSV could mangle (commas, quotes, newlines,
blanks, backslashes, non-ASCII), NULL against empty text, amounts a DOUBLE
would round. Each is read by ``load_local_pg`` and by ``read_jdbc`` through
the session's SparkSession and the rows compared value for value; failures
are compared class, exit status and message.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
import time
from decimal import Decimal

import duckdb
import pytest

from core.errors import ConfigError, FatalError, IntegrityError, ReconError, UnavailableError
from jobs.duck.local_pg import load_local_pg, pg_conninfo
from jobs.local_jdbc import describe_source, read_jdbc
from jobs.local_orders import parse_local_orders_config
from schemas import local as local_schema
from tests.pg import free_port

PASSWORD_VAR = "RECON_TEST_DUCK_PG_PASSWORD"
SHANGHAI, BERLIN = "Asia/Shanghai", "Europe/Berlin"
D1, D2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
FALL_BACK, SPRING_FORWARD = dt.date(2026, 10, 25), dt.date(2026, 3, 29)  # Berlin's 25- and 23-hour days
ODD_ORDER = 'P5,"quoted"\nsecond line'

SCHEMA = """
CREATE TABLE orders (id bigserial PRIMARY KEY, order_no text NOT NULL, channel text, currency char(3),
                     amount numeric(18,2), status text, created_at timestamp NOT NULL, paid_at timestamp);
CREATE TABLE refunds (id bigserial PRIMARY KEY, order_no text NOT NULL, refund_no text NOT NULL, channel text,
                      currency char(3), amount numeric(18,2), status text, created_at timestamptz NOT NULL,
                      paid_at timestamptz);
CREATE VIEW local_orders AS
  SELECT id, order_no, '' AS refund_no, 'PAYMENT' AS txn_type, channel, currency, amount, status,
         created_at::timestamptz AS created_at, paid_at::timestamptz AS paid_at FROM orders
  UNION ALL
  SELECT id + 1000000, order_no, refund_no, 'REFUND', channel, currency, amount, status, created_at, paid_at
  FROM refunds;
CREATE SCHEMA other;
CREATE VIEW other.local_orders AS SELECT * FROM public.local_orders WHERE txn_type = 'REFUND';
"""
ORDERS = [  # wall time of the business zone
    ("P1", "wechatpay", "CNY", "12.30", "PAID", "2026-11-20 10:00:00", "2026-11-20 10:00:05"),
    ("P2", "wechatpay", "CNY", "0.10", "PAID", "2026-11-19 23:50:00", "2026-11-20 00:00:00"),  # D1 from its start
    ("P3", "alipay", "CNY", "7.00", "PAID", "2026-11-20 23:59:31", "2026-11-21 00:00:20"),     # paid on D2: D2 only
    ("P4", "alipay", "CNY", "-0.01", "UNPAID", "2026-11-20 23:59:59", None),                   # D1 by created_at
    (ODD_ORDER, " wechat pay ", "CNY", "9999999999999999.99", "PAID", "2026-11-20 12:00:00", None),
    ("订单-六", "ali\\pay", "USD", "0.00", "", "2026-11-20 13:00:00", "2026-11-20 13:00:00"),
    ("P7", "wechatpay", None, "5.00", "PAID", "2026-11-21 00:00:00", None),                     # D2; no currency
    ("P8", "wechatpay", "EUR", "1.00", "PAID", "2026-03-29 02:30:00", None),                  # not a Berlin time
]
REFUNDS = [
    ("P1", "RF1", "wechatpay", "CNY", "1.00", "SUCCESS", "2026-11-20 01:00:00+08", "2026-11-20 15:59:59+00"),
    ("P1", "", "wechatpay", "CNY", "2.00", "SUCCESS", "2026-11-20 02:00:00+08", "2026-11-20 16:00:00+00"),  # D2
    ("P2", "RF3", "alipay", "CNY", "3.00", "PROCESSING", "2026-11-19 16:00:00+00", None),     # D1 00:00:00
    ("P9", "RF5", "paypal", "EUR", "5.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-24 22:00:00+00"),
    ("P9", "RF6", "paypal", "EUR", "6.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-25 00:30:00+00"),
    ("P9", "RF7", "paypal", "EUR", "7.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-25 01:30:00+00"),
    ("P9", "RF8", "paypal", "EUR", "8.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-25 22:59:59+00"),
    ("P9", "RF9", "paypal", "EUR", "9.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-25 23:00:00+00"),
    ("P9", "RF10", "paypal", "EUR", "10.00", "SUCCESS", "2026-10-24 20:00:00+00", "2026-10-24 21:59:59+00"),
    ("P9", "RF11", "paypal", "EUR", "11.00", "SUCCESS", "2026-03-28 20:00:00+00", "2026-03-28 23:00:00+00"),
    ("P9", "RF12", "paypal", "EUR", "12.00", "SUCCESS", "2026-03-28 20:00:00+00", "2026-03-29 21:59:59+00"),
    ("P9", "RF13", "paypal", "EUR", "13.00", "SUCCESS", "2026-03-28 20:00:00+00", "2026-03-29 22:00:00+00"),
]
ORDERS_QUERY = ("SELECT id, order_no, NULL::text AS refund_no, 'PAYMENT' AS txn_type, channel, currency, amount, "
                "status, created_at, paid_at FROM orders WHERE order_no LIKE '%'")


@pytest.fixture(scope="module")
def shop(postgres):
    """A database holding ORDERS / REFUNDS; the password in PASSWORD_VAR while the module runs."""
    name = postgres.create_database("duck_shop")
    with postgres.connect(name) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO orders (order_no, channel, currency, amount, status, created_at, paid_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)", ORDERS)
            cur.executemany("INSERT INTO refunds (order_no, refund_no, channel, currency, amount, status, "
                            "created_at, paid_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", REFUNDS)
    os.environ[PASSWORD_VAR] = postgres.password
    try:
        yield postgres, name
    finally:
        os.environ.pop(PASSWORD_VAR, None)
        postgres.drop_database(name)


def conf(shop, url_params: str = "", **extra) -> dict:
    """A parsed [local_orders] table for the shop database (table local_orders unless a query is given)."""
    server, name = shop
    raw = {"format": "jdbc", "url": server.jdbc_url_for(name) + url_params, "user": server.user}
    if "password_file" not in extra:
        raw["password_env"] = PASSWORD_VAR
    raw.update(extra)
    if "query" not in raw:
        raw.setdefault("table", "local_orders")
    return parse_local_orders_config(raw, None)


def duck_rows(cfg: dict, day: dt.date, zone: str, con=None) -> list[tuple]:
    con = con or duckdb.connect()
    load_local_pg(con, cfg, day, zone)
    types = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = 'local_raw' ORDER BY ordinal_position").fetchall()
    assert types == [(c, "DECIMAL(18,2)" if c == "amount" else "VARCHAR") for c in local_schema.COLUMNS]
    return ordered(con.execute("SELECT * FROM local_raw").fetchall())


def spark_rows(spark, cfg: dict, day: dt.date, zone: str) -> list[tuple]:
    return ordered(tuple(r) for r in read_jdbc(spark, cfg, day, zone).collect())


def ordered(rows) -> list[tuple]:
    return sorted(rows, key=lambda t: tuple((v is not None, str(v)) for v in t))


def failure(call) -> ReconError:
    """The ReconError ``call`` raises; a Spark error raised by an action is told as the job tells it."""
    from jobs.read_errors import spark_error

    try:
        call()
    except ReconError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a Spark action: told as jobs.reconcile tells it
        told = spark_error(exc, date=D1.isoformat())
        assert told is not None, exc
        return told
    pytest.fail("no error")


# -- the JDBC URL ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("jdbc:postgresql://replica.internal:6432/shop", dict(host="replica.internal", port="6432", dbname="shop")),
    ("jdbc:postgresql://replica/shop%20db?sslmode=verify-ca&sslrootcert=/etc/ca.pem&prepareThreshold=0"
     "&socketTimeout=5&tcpKeepAlive=true",
     dict(host="replica", port="5432", dbname="shop db", sslmode="verify-ca", sslrootcert="/etc/ca.pem")),
    ("jdbc:postgresql://a:5433,[::1]:5434,b/shop?targetServerType=preferSecondary&ApplicationName=nightly",
     dict(host="a,::1,b", port="5433,5434,5432", dbname="shop", target_session_attrs="prefer-standby",
          application_name="nightly")),
    ("jdbc:postgresql://h/shop?ssl=true", dict(host="h", port="5432", dbname="shop", sslmode="verify-full")),
    ("jdbc:postgresql://h/shop?ssl=true&sslfactory=org.postgresql.ssl.NonValidatingFactory",
     dict(host="h", port="5432", dbname="shop", sslmode="require")),
    ("jdbc:postgresql://h/shop?ssl=true&sslmode=prefer", dict(host="h", port="5432", dbname="shop", sslmode="prefer")),
    ("jdbc:postgresql://h/shop?currentSchema=ops,public",
     dict(host="h", port="5432", dbname="shop", options="-c search_path=ops,public")),
    ("jdbc:postgresql://h/", dict(host="h", port="5432")),
])
def test_jdbc_url_becomes_libpq_parameters(url, expected):
    assert pg_conninfo(url) == expected


# -- the same rows ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, day, zone, expected", [
    pytest.param({"num_partitions": 3}, D1, SHANGHAI, 7, id="view-D1-hash-partitions"),
    pytest.param({}, D2, SHANGHAI, 3, id="view-D2"),
    pytest.param({"query": ORDERS_QUERY, "num_partitions": 2, "partition_column": "id", "lower_bound": 1,
                  "upper_bound": 9}, D1, SHANGHAI, 5, id="query-id-partitions"),
    pytest.param({}, FALL_BACK, BERLIN, 4, id="berlin-25-hour-day"),
    pytest.param({"password_file": True}, SPRING_FORWARD, BERLIN, 3, id="berlin-23-hour-day-password-file"),
    pytest.param({"url_params": "?currentSchema=other&prepareThreshold=0&ApplicationName=recon%20test"}, D1,
                 SHANGHAI, 2, id="current-schema"),
    pytest.param({}, dt.date(2026, 1, 1), SHANGHAI, 0, id="no-rows"),
])
def test_rows_equal_the_spark_read(spark, shop, tmp_path, options, day, zone, expected):
    options = dict(options)
    if options.pop("password_file", False):
        secret = tmp_path / "db-password"
        secret.write_text(shop[0].password + "\n", encoding="utf-8")
        secret.chmod(0o600)
        options["password_file"] = str(secret)
    url_params = options.pop("url_params", "")
    cfg = conf(shop, url_params, **options)
    got = duck_rows(cfg, day, zone)
    assert got == spark_rows(spark, cfg, day, zone)
    assert len(got) == expected
    assert all(r[5] is None or r[5].as_tuple().exponent == -2 for r in got)


def test_values_arrive_exactly(shop):
    """What CSV could change arrives unchanged: quoted text, blanks, NULL against '', money beyond a DOUBLE."""
    con = duckdb.connect()
    load_local_pg(con, conf(shop), D2, SHANGHAI)  # replaced by the next load
    rows = {(r[0], r[1]): r for r in duck_rows(conf(shop), D1, SHANGHAI, con)}
    assert rows[(ODD_ORDER, None)] == (ODD_ORDER, None, "PAYMENT", " wechat pay ", "CNY",
                                       Decimal("9999999999999999.99"), "PAID", "2026-11-20 12:00:00", None)
    assert rows[("订单-六", None)][3:7] == ("ali\\pay", "USD", Decimal("0.00"), None)  # status '' -> NULL
    assert rows[("P2", None)][5:] == (Decimal("0.10"), "PAID", "2026-11-19 23:50:00", "2026-11-20 00:00:00")
    assert rows[("P1", "RF1")][7:] == ("2026-11-20 01:00:00", "2026-11-20 23:59:59")  # timestamptz in the zone
    assert rows[("P2", "RF3")][7:] == ("2026-11-20 00:00:00", None)
    assert ("P3", None) not in rows and ("P1", None) in rows  # P3 paid on D2; P1's '' refund is D2's
    assert con.execute("SELECT sum(amount) FROM local_raw").fetchone()[0] == Decimal("10000000000000016.38")


def test_daylight_saving_days_are_business_days(shop):
    fall = duck_rows(conf(shop), FALL_BACK, BERLIN)
    assert sorted((r[1], r[8]) for r in fall) == [
        ("RF5", "2026-10-25 00:00:00"), ("RF6", "2026-10-25 02:30:00"), ("RF7", "2026-10-25 02:30:00"),
        ("RF8", "2026-10-25 23:59:59")]
    spring = duck_rows(conf(shop), SPRING_FORWARD, BERLIN)
    # P8's wall time 02:30 does not exist that night: read as timestamptz (the view) it is 03:30
    assert sorted((r[1] or r[0], r[7] if r[8] is None else r[8]) for r in spring) == [
        ("P8", "2026-03-29 03:30:00"), ("RF11", "2026-03-29 00:00:00"), ("RF12", "2026-03-29 23:59:59")]


# -- the same failures -----------------------------------------------------------------------------------------------

BAD_AMOUNT = ("SELECT order_no, NULL AS refund_no, 'PAYMENT' AS txn_type, channel, currency, "
              "CASE WHEN order_no = 'P1' THEN {value} ELSE amount END AS amount, status, created_at, paid_at "
              "FROM orders WHERE order_no <> 'P8'")


@pytest.mark.parametrize("value", [pytest.param("amount + 0.001", id="three-decimals"),
                                   pytest.param("NULL", id="null-amount")])
def test_an_inexact_amount_fails_as_on_spark(spark, shop, value):
    cfg = conf(shop, query=BAD_AMOUNT.format(value=value))
    con = duckdb.connect()
    con.execute("CREATE TABLE local_raw AS SELECT 1 AS earlier")
    duck = failure(lambda: load_local_pg(con, cfg, D1, SHANGHAI))
    on_spark = failure(lambda: read_jdbc(spark, cfg, D1, SHANGHAI).collect())
    assert type(duck) is type(on_spark) is IntegrityError and duck.exit_code == 4
    assert str(duck) == str(on_spark)
    assert "local order P1  has an amount with more than 2 decimals in " + describe_source(cfg) in str(duck)
    assert con.execute("SELECT * FROM local_raw").fetchall() == [(1,)]  # the earlier table is untouched


@pytest.mark.parametrize("change, kind, said", [
    pytest.param({"password": "not-the-password"}, FatalError, "refused user postgres (FATAL: password "
                 "authentication failed", id="wrong-password"),
    pytest.param({"table": "no_such_table"}, ConfigError, 'ERROR: relation "no_such_table" does not exist',
                 id="missing-table"),
    pytest.param({"query": "SELECT order_no, channel FROM orders"}, ConfigError, "column src.refund_no does not",
                 id="missing-column"),
    pytest.param({"num_partitions": 2, "partition_column": "no_such_column", "lower_bound": 1, "upper_bound": 9},
                 ConfigError, "column src.no_such_column does not exist", id="missing-partition-column"),
    pytest.param({"zone": "Mars/Olympus_Mons"}, ConfigError, "unknown business time zone", id="unknown-zone"),
    pytest.param({"password_env": "RECON_TEST_NOT_SET"}, ConfigError, "RECON_TEST_NOT_SET", id="password-not-set"),
])
def test_failures_are_the_spark_paths(spark, shop, monkeypatch, change, kind, said):
    change = dict(change)
    zone = change.pop("zone", SHANGHAI)
    if "password" in change:
        monkeypatch.setenv(PASSWORD_VAR, change.pop("password"))
    cfg = conf(shop, **change)
    duck = failure(lambda: load_local_pg(duckdb.connect(), cfg, D1, zone))
    on_spark = failure(lambda: read_jdbc(spark, cfg, D1, zone))
    assert type(duck) is type(on_spark) is kind
    assert (duck.exit_code, str(duck)) == (on_spark.exit_code, str(on_spark))
    assert said in str(duck)
    if "ERROR" in said or "FATAL" in said:  # the database's words, after the source they come from
        assert str(duck).startswith(f"[date {D1.isoformat()}] {describe_source(cfg)}: ")
    assert shop[0].password not in str(duck) and "not-the-password" not in str(duck)


def test_an_unreachable_replica_is_unavailable_as_on_spark(spark, shop):
    server, name = shop
    cfg = conf(shop)
    cfg["url"] = f"jdbc:postgresql://127.0.0.1:{free_port()}/{name}"  # nothing listens there
    duck = failure(lambda: load_local_pg(duckdb.connect(), cfg, D1, SHANGHAI))
    on_spark = failure(lambda: read_jdbc(spark, cfg, D1, SHANGHAI))
    assert type(duck) is type(on_spark) is UnavailableError and duck.exit_code == 3
    prefix = f"[date {D1.isoformat()}] cannot reach {describe_source(cfg)}: "
    assert str(duck).startswith(prefix) and str(on_spark).startswith(prefix)
    assert "refused" in str(duck).split(" -- ")[0]  # the driver's own words differ: libpq's, pgjdbc's
    assert duck.hint == on_spark.hint


def test_timeouts_are_unavailable(shop, tmp_path, monkeypatch):
    """A statement slower than timeout_seconds, and a host that accepts but never answers: exit 3, in time."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    slow = conf(shop, query=ORDERS_QUERY.replace("FROM orders", "FROM orders, pg_sleep(3)"), timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="statement timeout") as err:
        load_local_pg(duckdb.connect(), slow, D1, SHANGHAI)
    assert err.value.exit_code == 3 and time.monotonic() - started < 2.5
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads the startup packet
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        cfg = conf(shop, timeout_seconds=1)
        cfg["url"] = f"jdbc:postgresql://127.0.0.1:{silent.getsockname()[1]}/{shop[1]}"
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="cannot reach .*timeout") as err:
            load_local_pg(duckdb.connect(), cfg, D1, SHANGHAI)
        assert time.monotonic() - started < 5  # psycopg waits at least 2 s
    assert os.listdir(tmp_path) == []  # the temporary CSV is gone after failures too


def test_the_temporary_file_is_removed(shop, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    duck_rows(conf(shop), D1, SHANGHAI)
    assert os.listdir(tmp_path) == []
