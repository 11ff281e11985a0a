"""Local orders read over JDBC from a real PostgreSQL equal the CSV export, row for row and category for category.

The session's SparkSession must have the PostgreSQL JDBC driver on its
classpath (``spark.jars`` = tests.pg.jdbc_jar(), set in tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pytest

from core.errors import ConfigError, FatalError, ReconError
from core.storage import Storage
from jobs.local_orders import parse_local_orders_config, read_local_orders
from schemas import csvio
from schemas import local as local_schema
from tests.pg import jdbc_jar

D1, D2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
PASSWORD_VAR = "RECON_TEST_LOCAL_DB_PASSWORD"
TZ = "Asia/Shanghai"

# The order system's own layout (the same default tables apply-fixes updates): payments and refunds apart,
# timestamps without zone in one table and with zone in the other, so both kinds are formatted.
SCHEMA = """
CREATE TABLE orders (id bigserial PRIMARY KEY, order_no text NOT NULL, channel text NOT NULL, currency char(3) NOT NULL,
                     amount numeric(18,2) NOT NULL, status text NOT NULL, created_at timestamp NOT NULL,
                     paid_at timestamp, UNIQUE (channel, order_no));
CREATE TABLE refunds (id bigserial PRIMARY KEY, order_no text NOT NULL, refund_no text NOT NULL, channel text NOT NULL,
                      currency char(3) NOT NULL, amount numeric(18,2) NOT NULL, status text NOT NULL,
                      created_at timestamptz NOT NULL, paid_at timestamptz, UNIQUE (channel, order_no, refund_no));
CREATE VIEW local_orders AS
  SELECT id, order_no, '' AS refund_no, 'PAYMENT' AS txn_type, channel, currency, amount, status,
         created_at::timestamptz AS created_at, paid_at::timestamptz AS paid_at FROM orders
  UNION ALL
  SELECT id + 1000000, order_no, refund_no, 'REFUND', channel, currency, amount, status, created_at, paid_at
  FROM refunds;
"""
UNION_QUERY = """
SELECT id, order_no, NULL::text AS refund_no, 'PAYMENT' AS txn_type, channel, currency, amount, status,
       created_at, paid_at FROM orders
UNION ALL
SELECT id, order_no, refund_no, 'REFUND', channel, currency, amount, status,
       created_at AT TIME ZONE 'Asia/Shanghai', paid_at AT TIME ZONE 'Asia/Shanghai' FROM refunds;
"""


def load_local_csv(conn, csv_path: Path) -> int:
    """Insert a local export into orders / refunds (empty paid_at -> NULL)."""
    with csv_path.open(encoding="utf-8", newline="") as fh:
        header, rows = csvio.read_rows(fh)
    assert tuple(header) == local_schema.COLUMNS
    with conn.cursor() as cur:
        for r in map(lambda v: dict(zip(header, v)), rows):
            paid = r["paid_at"] or None
            if r["txn_type"] == "PAYMENT":
                cur.execute("INSERT INTO orders (order_no, channel, currency, amount, status, created_at, paid_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (r["order_no"], r["channel"], r["currency"], Decimal(r["amount"]), r["status"],
                             r["created_at"], paid))
            else:
                cur.execute("INSERT INTO refunds (order_no, refund_no, channel, currency, amount, status, created_at, "
                            "paid_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            (r["order_no"], r["refund_no"], r["channel"], r["currency"], Decimal(r["amount"]),
                             r["status"], r["created_at"], paid))
    return len(rows)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from recon.demo import Demo

    out = tmp_path_factory.mktemp("jdbc") / "demo"
    Demo(D1, 2, orders_per_day=30).build().write(out)
    return out


@pytest.fixture(scope="module")
def shop_db(postgres, demo):  # noqa: F811
    """A database holding both demo days in orders / refunds (loaded with the business zone as session zone)."""
    name = postgres.create_database("shop")
    with postgres.connect(name) as conn:
        conn.execute(f"SET TIME ZONE '{TZ}'")
        conn.execute(SCHEMA)
        for day in (D1, D2):
            load_local_csv(conn, demo / "root" / "local" / day.isoformat() / "orders.csv")
        # read in the wrong zone this row would move by 8 hours: 2026-11-20 23:59:59 UTC is D2 in Shanghai
        conn.execute("CREATE TABLE zone_probe AS SELECT * FROM local_orders WHERE false")
        conn.execute("INSERT INTO zone_probe (order_no, refund_no, txn_type, channel, currency, amount, status, "
                     "created_at, paid_at) VALUES ('S20261117999999', 'RFZONE', 'REFUND', 'wechatpay', 'CNY', 1.00, "
                     "'SUCCESS', '2026-11-20 23:00:00+00', '2026-11-20 23:59:59+00')")
    os.environ[PASSWORD_VAR] = postgres.password
    try:
        yield postgres, name
    finally:
        os.environ.pop(PASSWORD_VAR, None)
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def jdbc_spark(spark):
    """The session's SparkSession, which must carry the JDBC driver."""
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if not any(j.removeprefix("file://") == jdbc_jar() for j in jars.split(",")):
        pytest.fail(f"the session SparkSession lacks the PostgreSQL JDBC driver: add \"spark.jars\": "
                    f"\"{jdbc_jar()}\" to get_spark's overrides in tests/conftest.py (spark.jars is now {jars!r})",
                    pytrace=False)
    return spark


def jdbc_conf(shop_db, **extra) -> dict:
    server, name = shop_db
    raw = {"format": "jdbc", "url": server.jdbc_url_for(name), "user": server.user, "password_env": PASSWORD_VAR}
    raw.update(extra)
    if "query" not in raw:
        raw.setdefault("table", "local_orders")
    return parse_local_orders_config(raw, None)


def rows_of(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=lambda t: tuple("" if v is None else str(v) for v in t))


def csv_read(spark, demo: Path, day: dt.date):
    storage = Storage((demo / "root").as_uri())
    return read_local_orders(spark, storage, {"format": "csv"}, day, 30)


@pytest.mark.parametrize("options", [
    pytest.param({"num_partitions": 3}, id="view-hash-partitions"),
    pytest.param({"query": UNION_QUERY, "num_partitions": 2, "partition_column": "id", "lower_bound": 1,
                  "upper_bound": 60}, id="query-id-partitions"),
])
def test_jdbc_read_equals_csv_export(jdbc_spark, demo, shop_db, options):
    cfg = jdbc_conf(shop_db, **options)
    storage = Storage((demo / "root").as_uri())
    for day in (D1, D2):
        jdbc = read_local_orders(jdbc_spark, storage, cfg, day, 30, timezone=TZ)
        assert jdbc.schema == local_schema.spark_schema()
        assert jdbc.rdd.getNumPartitions() == options["num_partitions"]
        expected = rows_of(csv_read(jdbc_spark, demo, day))
        got = rows_of(jdbc)
        assert got == expected, f"{day}: JDBC read differs from the CSV export"
        assert all(isinstance(r[5], Decimal) and r[5].as_tuple().exponent == -2 for r in got)
    # the demo's callback stamped 00:00:20 on D2 for an order created 23:59:31 on D1 belongs to D2 only
    d1 = {r[0] for r in rows_of(read_local_orders(jdbc_spark, storage, cfg, D1, 30, timezone=TZ))}
    d2 = {r[0] for r in rows_of(read_local_orders(jdbc_spark, storage, cfg, D2, 30, timezone=TZ))}
    assert not d1 & d2


def test_timestamptz_is_read_in_the_business_zone(jdbc_spark, demo, shop_db):
    storage = Storage((demo / "root").as_uri())
    cfg = jdbc_conf(shop_db, table="zone_probe")
    got = read_local_orders(jdbc_spark, storage, cfg, D2, 30, timezone=TZ).collect()
    assert [(r.refund_no, r.created_at, r.paid_at) for r in got] == [
        ("RFZONE", "2026-11-21 07:00:00", "2026-11-21 07:59:59")]
    assert read_local_orders(jdbc_spark, storage, cfg, D1, 30, timezone=TZ).count() == 0


def test_classification_is_the_same_from_jdbc_and_csv(jdbc_spark, demo, shop_db):
    from core.dates import window_start
    from jobs import transforms as tx
    from normalizers.publish import normalize_channel
    from recon.config import load_settings
    from schemas import standard
    from schemas.csvio import SPARK_CSV_OPTIONS
    from schemas.layout import standard_dir
    from tests.conftest import run_cli

    conf = demo / "conf" / "pipeline.toml"
    assert run_cli("download", "--conf", str(conf), "--date", D1.isoformat()) == 0
    settings = load_settings(conf)
    storage = Storage(settings.root)
    normalize_channel(storage, settings.channel("wechatpay"), D1)
    std = (jdbc_spark.read.schema(standard.spark_schema()).options(**SPARK_CSV_OPTIONS)
           .csv(storage.uri(standard_dir("wechatpay", D1))))
    params = tx.ClassifyParams(day=D1.isoformat(), window_starts={"wechatpay": window_start(D1, 30)},
                               rules={"wechatpay": tx.ChannelRules(fee_rate=Decimal("0.006"))})

    def outcomes(local):
        records = tx.local_records(local, D1.isoformat()).unionByName(tx.channel_records(std, D1.isoformat()))
        return sorted((r.side, r.order_no, r.refund_no, r.category) for r in
                      tx.classify(records, params).select("side", "order_no", "refund_no", "category").collect())

    from_csv = outcomes(csv_read(jdbc_spark, demo, D1))
    from_jdbc = outcomes(read_local_orders(jdbc_spark, storage, jdbc_conf(shop_db, num_partitions=2), D1, 30,
                                           timezone=TZ))
    assert from_jdbc == from_csv
    cats = {c for *_, c in from_csv}
    assert {"MATCHED", "LOCAL_UNPAID_CHANNEL_PAID", "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED", "PENDING_CUTOFF"} <= cats


def test_password_is_a_read_option_not_spark_conf(jdbc_spark, demo, shop_db):
    server, _ = shop_db
    read_local_orders(jdbc_spark, Storage((demo / "root").as_uri()), jdbc_conf(shop_db), D1, 30,
                      timezone=TZ).count()
    assert server.password not in repr(jdbc_spark.sparkContext.getConf().getAll())


def test_amount_with_more_than_two_decimals_fails_the_read(jdbc_spark, demo, shop_db):
    query = ("SELECT order_no, NULL AS refund_no, 'PAYMENT' AS txn_type, channel, currency, amount + 0.001 AS amount,"
             " status, created_at, paid_at FROM orders")
    df = read_local_orders(jdbc_spark, Storage((demo / "root").as_uri()), jdbc_conf(shop_db, query=query), D1, 30,
                           timezone=TZ)
    with pytest.raises(Exception, match="more than 2 decimals"):
        df.collect()


def test_wrong_password_and_missing_table_are_reported(jdbc_spark, demo, shop_db, monkeypatch):
    storage = Storage((demo / "root").as_uri())
    monkeypatch.setenv(PASSWORD_VAR, "not-the-password")
    with pytest.raises(FatalError, match="refused user postgres.*password authentication failed") as err:
        read_local_orders(jdbc_spark, storage, jdbc_conf(shop_db), D1, 30, timezone=TZ)
    assert "not-the-password" not in str(err.value)
    monkeypatch.setenv(PASSWORD_VAR, shop_db[0].password)
    with pytest.raises(ConfigError, match="no_such_table"):
        read_local_orders(jdbc_spark, storage, jdbc_conf(shop_db, table="no_such_table"), D1, 30, timezone=TZ)


@pytest.mark.parametrize("raw, message", [
    ({"format": "jdbc", "url": "jdbc:mysql://h/db", "table": "t", "user": "u", "password_env": "V"}, "PostgreSQL"),
    ({"format": "jdbc", "url": "jdbc:postgresql://h/db?password=x", "table": "t", "user": "u", "password_env": "V"},
     "must not carry a password"),
    ({"format": "jdbc", "url": "jdbc:postgresql://h/db", "table": "t", "query": "SELECT 1", "user": "u",
      "password_env": "V"}, "exactly one of table"),
    ({"format": "jdbc", "url": "jdbc:postgresql://h/db", "table": "t", "user": "u", "password": "x"},
     "must not be written"),
    ({"format": "jdbc", "url": "jdbc:postgresql://h/db", "table": "t", "user": "u", "password_env": "V",
      "partition_column": "id"}, "lower_bound and upper_bound"),
    ({"format": "jdbc", "url": "jdbc:postgresql://h/db", "table": "t", "user": "u", "password_env": "V",
      "num_partitons": 4}, "unknown key"),
    ({"format": "csv", "table": "t"}, "unknown key"),
    ({"format": "xml"}, "must be one of"),
])
def test_bad_configuration_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_local_orders_config(raw, "/etc/recon/pipeline.toml")
    assert err.value.exit_code == 2 and isinstance(err.value, ReconError)


def test_a_replica_with_no_order_of_the_day_is_refused_unless_allowed(jdbc_spark, demo, shop_db, tmp_path,
                                                                      capsys):
    """The replica answers, but with nothing for D (zone_probe holds one refund of D2) while the statements
    have records: exit 4, as for an empty export; `allow_empty = true` says such a day is expected."""
    import shutil

    from tests.conftest import run_cli

    server, name = shop_db
    copy = tmp_path / "demo"
    shutil.copytree(demo / "conf", copy / "conf")
    shutil.copytree(demo / "inbox", copy / "inbox")
    conf = copy / "conf" / "pipeline.toml"
    section = (f'\n[local_orders]\nformat = "jdbc"\nurl = "{server.jdbc_url_for(name)}"\ntable = "zone_probe"\n'
               f'user = "{server.user}"\npassword_env = "{PASSWORD_VAR}"\n')
    conf.write_text(conf.read_text(encoding="utf-8") + section, encoding="utf-8")
    assert run_cli("run", "--conf", str(conf), "--date", D1.isoformat(), spark=jdbc_spark) == 4
    out = capsys.readouterr()
    text = out.out + out.err
    assert "(table zone_probe, user" in text and "has no local order of this date" in text
    assert "allow_empty = true" in text and "Traceback" not in text
    assert not (copy / "root" / "recon" / D1.isoformat()).exists()
    conf.write_text(conf.read_text(encoding="utf-8") + "allow_empty = true\n", encoding="utf-8")
    assert run_cli("run", "--conf", str(conf), "--date", D1.isoformat(), spark=jdbc_spark) == 0
    assert (copy / "root" / "recon" / D1.isoformat() / "_SUCCESS").exists()
