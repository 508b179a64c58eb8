"""Least privilege in the embedded PostgreSQL (deploy/stack/pgroles.py), against the real server of the session:
passwords are asked for and checked; each component's role can do its work and nothing beyond it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from deploy.stack import pgroles


def _connect(url: str, **override):
    u = make_url(url)
    params = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database,
              "connect_timeout": 5, **override}
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None})


@pytest.fixture(scope="module")
def urls(stack_settings, pg_url):
    return {c: stack_settings.database_url_for(c) for c in (pgroles.ADMIN, *pgroles.COMPONENTS)}


@pytest.fixture(scope="module")
def engines(urls):
    made = {c: sa.create_engine(u, poolclass=sa.pool.NullPool) for c, u in urls.items()}
    yield made
    for eng in made.values():
        eng.dispose()


def _refused(conn: sa.Connection, sql: str, params: dict | None = None) -> str:
    with pytest.raises(sa.exc.DBAPIError) as exc:
        with conn.begin_nested():
            conn.execute(sa.text(sql), params or {})
    return str(exc.value.orig)


def test_a_connection_without_a_password_is_refused(stack_settings, urls):
    for component in (pgroles.ADMIN, "stream", "migrate"):
        with pytest.raises(psycopg.OperationalError) as exc:
            _connect(urls[component], password=None)
        assert "password" in str(exc.value)  # "no password supplied" / "password authentication failed"
    # the Unix socket asks too (initdb --auth-local)
    with pytest.raises(psycopg.OperationalError, match="password"):
        _connect(urls[pgroles.ADMIN], host=str(stack_settings.home / "postgres"), password=None)


def test_a_wrong_password_is_refused_and_not_echoed(urls):
    for component in (pgroles.ADMIN, "stream", "read"):
        wrong = "x" * 43
        with pytest.raises(psycopg.OperationalError) as exc:
            _connect(urls[component], password=wrong)
        assert "password authentication failed" in str(exc.value)
        assert wrong not in str(exc.value) and make_url(urls[component]).password not in str(exc.value)
    with _connect(urls["stream"]) as conn:  # the right one is let in
        assert conn.execute("SELECT current_user").fetchone()[0] == "tradeloop_stream"


def test_the_server_listens_on_loopback_only_and_stores_scram_verifiers(engines, stack_settings):
    with engines[pgroles.ADMIN].connect() as conn:
        assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == stack_settings.host == "127.0.0.1"
        assert conn.execute(sa.text("SHOW password_encryption")).scalar() == "scram-sha-256"
        methods = set(conn.execute(sa.text("SELECT auth_method FROM pg_hba_file_rules")).scalars())
        assert methods == {"scram-sha-256"}, methods
        verifiers = conn.execute(sa.text("SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'tradeloop%'"
                                         " AND rolcanlogin")).all()
        assert {r for r, _ in verifiers} == {pgroles.role(c) for c in (pgroles.ADMIN, *pgroles.COMPONENTS)}
        assert all(v.startswith("SCRAM-SHA-256$") for _, v in verifiers)
        superusers = set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolsuper")).scalars())
        assert superusers == {"tradeloop"}


def test_the_stream_role_writes_orders_and_trades_but_no_ddl_and_no_audit_rewrite(engines):
    from storage import stream
    from trading.records import Fill, Liquidity, Side

    account = f"roles-{uuid.uuid4().hex[:6]}"
    ns = stream.ns_of(datetime(2026, 12, 1, 12, tzinfo=timezone.utc))
    with engines["stream"].connect() as conn, conn.begin() as tx:
        conn.execute(sa.text("""
            INSERT INTO orders (client_order_id, account, strategy, exchange, symbol, side, order_type, quantity,
                                time_in_force, status, created_at, updated_at)
            VALUES (:o, :a, 's', 'sim', 'BTC/USDT', 'buy', 'market', 1, 'gtc', 'new', now(), now())"""),
            {"o": f"{account}-o1", "a": account})
        conn.execute(sa.text("UPDATE orders SET status = 'filled', filled_quantity = 1 WHERE client_order_id = :o"),
                     {"o": f"{account}-o1"})
        fill = Fill(f"{account}-f1", f"{account}-o1", account, "s", "sim", "BTC/USDT", Side.BUY, Decimal(100),
                    Decimal(1), Decimal("0.1"), "USDT", Liquidity.TAKER, ns)
        stream.write_batch(conn, mode="paper", account=account, fills=[fill])
        stream.write_audit(conn, f"{account}-a", ns, "test", "probe", account, "", {})
        assert conn.execute(sa.text("SELECT count(*) FROM trades WHERE account = :a"), {"a": account}).scalar() == 1
        # partitions ahead: the owner's function makes them, the stream needs no DDL of its own
        stream.ensure_partitions_ahead(conn, stream.ns_of(datetime(2041, 3, 1, tzinfo=timezone.utc)))
        assert conn.execute(sa.text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = "
                                    "'trades_p204103'")).scalar() == "tradeloop_migrate"
        for sql in ("CREATE TABLE roles_probe (x int)",
                    "CREATE TABLE trades_p209901 (LIKE trades)",
                    "ALTER TABLE orders ADD COLUMN probe int",
                    "DROP TABLE trades_p204103",
                    "TRUNCATE audit_log",
                    "UPDATE audit_log SET reason = 'rewritten' WHERE event_id = :e",
                    "DELETE FROM audit_log WHERE event_id = :e",
                    "DELETE FROM orders WHERE client_order_id = :e",
                    "INSERT INTO ml_models (model_name, version, run_id, status) VALUES ('x', 1, 'r', 'candidate')",
                    "SELECT tradeloop_drop_partition('market_data', 'market_data_p204103')"):
            message = _refused(conn, sql, {"e": f"{account}-a"})
            assert "permission denied" in message or "must be owner" in message, (sql, message)
        tx.rollback()


def test_the_read_role_cannot_write_anywhere(engines):
    with engines["read"].connect() as conn:
        assert conn.execute(sa.text("SHOW transaction_read_only")).scalar() == "on"  # the session default
        assert "read-only transaction" in _refused(conn, "INSERT INTO orders DEFAULT VALUES")
        tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        assert {"orders", "trades", "audit_log", "ml_models"} <= set(tables)
    with engines["read"].connect() as conn, conn.begin() as tx:
        conn.execute(sa.text("SET TRANSACTION READ WRITE"))  # a session may lift the default: privileges hold
        for table in tables:
            assert "permission denied" in _refused(conn, f'INSERT INTO "{table}" DEFAULT VALUES'), table
            assert "permission denied" in _refused(conn, f'DELETE FROM "{table}"'), table
        assert "permission denied" in _refused(conn, "CREATE TABLE roles_probe (x int)")
        assert "permission denied" in _refused(conn, "CREATE SCHEMA roles_probe")
        assert conn.execute(sa.text("SELECT count(*) >= 0 FROM orders")).scalar()  # and it reads
        tx.rollback()


def test_the_batch_role_builds_its_own_schemas_and_drops_only_retention_partitions(engines):
    schema = f"roles_{uuid.uuid4().hex[:6]}"
    with engines["batch"].connect() as conn, conn.begin() as tx:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))  # dbt's <base>_marts, Optuna's
        conn.execute(sa.text(f"CREATE TABLE {schema}.mart AS SELECT 1 AS x"))
        conn.execute(sa.text("DELETE FROM target_weights WHERE portfolio = 'roles-none'"))
        assert "permission denied" in _refused(conn, "CREATE TABLE public.roles_probe (x int)")
        assert "permission denied" in _refused(conn, "DELETE FROM orders WHERE false")
        assert "permission denied" in _refused(conn, "UPDATE audit_log SET reason = '' WHERE false")
        conn.execute(sa.text("SELECT tradeloop_ensure_partitions('market_data', '2042-01-01', '2042-01-01')"))
        conn.execute(sa.text("SELECT tradeloop_ensure_partitions('audit_log', '2042-01-01', '2042-01-01')"))
        conn.execute(sa.text("SELECT tradeloop_drop_partition('market_data', 'market_data_p204201')"))
        assert conn.execute(sa.text("SELECT to_regclass('market_data_p204201')")).scalar() is None
        for parent, part in (("audit_log", "audit_log_p204201"), ("market_data", "market_data_default"),
                             ("orders", "orders")):
            assert "not a droppable partition" in _refused(conn, "SELECT tradeloop_drop_partition(:a, :b)",
                                                           {"a": parent, "b": part})
        tx.commit()
    with engines["read"].connect() as conn:  # what the batch role builds, reporting reads (default privileges)
        assert conn.execute(sa.text(f"SELECT x FROM {schema}.mart")).scalar() == 1
    with engines["stream"].connect() as conn:
        assert "permission denied" in _refused(conn, f"SELECT x FROM {schema}.mart")
    with engines[pgroles.ADMIN].begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def test_retention_runs_as_the_batch_role(engines):
    from storage import lifecycle

    with engines["batch"].connect() as conn, conn.begin() as tx:
        conn.execute(sa.text("SELECT tradeloop_ensure_partitions('signals', '1971-01-01', '1971-01-01')"))
        dropped = lifecycle.drop_older_than(conn, "signals", datetime(1971, 2, 1, tzinfo=timezone.utc))
        assert "signals_p197101" in [d.name for d in dropped]  # (and any older month another test left)
        assert conn.execute(sa.text("SELECT to_regclass('signals_p197101')")).scalar() is None
        tx.rollback()


def test_credentials_tables_are_the_gateways_alone(engines):
    for component in ("read", "stream", "batch"):
        with engines[component].connect() as conn:
            assert "permission denied" in _refused(conn, "SELECT * FROM users")
    with engines["gateway"].connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM users")).scalar()


def test_mlflow_and_dagster_own_their_databases_and_nobody_else_gets_in(urls):
    for component in ("mlflow", "dagster"):
        with _connect(urls[component]) as conn:
            conn.execute("CREATE TABLE roles_probe (x int)")
            conn.rollback()
    for component in ("stream", "read"):
        for database in ("mlflow", "dagster"):
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                _connect(urls[component], dbname=database)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _connect(urls["mlflow"], dbname="tradeloop")


def test_the_migrate_role_migrates_a_fresh_database(urls, engines):
    """From an empty database to head, as `up` runs it: everything it makes is its own."""
    from storage import migrations

    name = f"roles_scratch_{uuid.uuid4().hex[:6]}"
    with engines[pgroles.ADMIN].execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} OWNER tradeloop_migrate"))
    try:
        scratch = make_url(urls["migrate"]).set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(scratch)
        assert migrations.current(scratch) == migrations.current(urls["migrate"])
        eng = sa.create_engine(scratch, poolclass=sa.pool.NullPool)
        with eng.connect() as conn:
            owners = set(conn.execute(sa.text("SELECT DISTINCT tableowner FROM pg_tables "
                                              "WHERE schemaname = 'public'")).scalars())
        eng.dispose()
        assert owners == {"tradeloop_migrate"}
    finally:
        with engines[pgroles.ADMIN].execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_every_table_has_its_writers_decided(engines):
    """A new migration's table must be put in pgroles.WRITES (or OWNER_ONLY): who writes it is a decision."""
    with engines[pgroles.ADMIN].connect() as conn:
        tables = set(conn.execute(sa.text("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition""")).scalars())
    decided = {t for tables_ in pgroles.WRITES.values() for t in tables_} | set(pgroles.OWNER_ONLY)
    assert tables - decided == set(), f"tables no role was given writes on: {sorted(tables - decided)}"


def test_no_password_in_service_records_or_process_arguments(stack_settings, urls):
    secrets = {make_url(u).password for u in urls.values()}
    for path in stack_settings.run_dir.glob("*"):
        text = path.read_text(errors="replace") if path.is_file() else ""
        assert not any(s in text for s in secrets), path
    assert "***" in pgroles.redacted(urls["stream"]) and make_url(urls["stream"]).password not in \
        pgroles.redacted(urls["stream"])


def test_an_external_database_url_is_every_components_url(stack_settings):
    external = "postgresql+psycopg://me:pw@db.example:5432/trading"
    settings = stack_settings.model_copy(update={"database_url": external})
    for component in ("stream", "batch", "read", "migrate", "gateway", "admin"):
        assert settings.database_url_for(component) == external
    assert settings.database_url_for("mlflow") == "postgresql+psycopg://me:pw@db.example:5432/mlflow"
    with pytest.raises(ValueError, match="no database role for component 'worker'"):
        settings.database_url_for("worker")


def test_a_data_directory_from_before_the_roles_is_switched_to_passwords_and_adopted(tmp_path):
    """A home whose server was initialised with trust (every `up` before the roles): the next start gives the
    superuser its password and asks for it; the superuser's tables pass to the migrate role, dbt's schemas to
    the batch role."""
    import signal
    import subprocess

    from deploy.stack import postgres
    from deploy.stack.process import as_user, stop
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "home")
    bin_dir = postgres.find_bin_dir(settings)
    pgdata = postgres.data_dir(settings)
    pgdata.parent.mkdir(parents=True)
    user = postgres.run_as()
    if user:
        postgres._give_to(user, pgdata.parent)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", settings.pg_user, "-A", "trust", "-E", "UTF8",
                    "--locale=C"], check=True, capture_output=True, cwd=pgdata.parent, **as_user(user))
    record = postgres.start(settings, settings.pg_port)
    try:
        admin = postgres.url(settings, settings.pg_port)
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect(admin, password=None)
        eng = sa.create_engine(admin, poolclass=sa.pool.NullPool)
        with eng.begin() as conn:  # what the superuser made before: the schema, a dbt schema
            assert set(conn.execute(sa.text("SELECT auth_method FROM pg_hba_file_rules")).scalars()) == \
                {"scram-sha-256"}
            conn.execute(sa.text("CREATE TABLE legacy_probe (x int)"))
            conn.execute(sa.text("CREATE SCHEMA analytics_marts"))
            conn.execute(sa.text("CREATE TABLE analytics_marts.mart_probe (x int)"))
        pgroles.migrate_and_grant(settings)
        with eng.connect() as conn:
            owners = dict(conn.execute(sa.text(
                "SELECT tablename, tableowner FROM pg_tables WHERE tablename IN ('legacy_probe', 'mart_probe', "
                "'orders')")).all())
        eng.dispose()
        assert owners == {"legacy_probe": "tradeloop_migrate", "orders": "tradeloop_migrate",
                          "mart_probe": "tradeloop_batch"}
        with _connect(settings.database_url_for("read")) as conn:
            assert conn.execute("SELECT count(*) FROM analytics_marts.mart_probe").fetchone() == (0,)
    finally:
        stop(record, settings.run_dir, sig=signal.SIGINT)


def test_a_database_urls_password_is_masked_in_this_processs_logs():
    from deploy import redaction
    from deploy.settings import Settings

    Settings(_env_file=None, database_url="postgresql+psycopg://svc:Zq8-external-password-0001@db:5432/t")
    assert redaction.scrub("could not connect: svc:Zq8-external-password-0001@db") == "could not connect: svc:****@db"


def test_the_stream_role_may_have_a_months_audit_rows_moved_to_their_partition(engines):
    """Rows that landed in a default partition move to their month's partition when the stream makes it: the
    partition function runs as the owner, whom the append-only trigger (0013) lets move rows."""
    from storage import stream

    with engines["stream"].connect() as conn, conn.begin() as tx:
        if conn.execute(sa.text("SELECT to_regclass('audit_log_default')")).scalar() is None:
            pytest.skip("audit_log is a hypertable here")
        event = f"roles-move-{uuid.uuid4().hex[:6]}"
        stream.write_audit(conn, event, stream.ns_of(datetime(2045, 7, 3, tzinfo=timezone.utc)), "t", "probe", "x",
                           "", {})
        where = sa.text("SELECT tableoid::regclass::text FROM audit_log WHERE event_id = :e")
        assert conn.execute(where, {"e": event}).scalar() == "audit_log_default"
        stream.ensure_partitions_ahead(conn, stream.ns_of(datetime(2045, 7, 1, tzinfo=timezone.utc)))
        assert conn.execute(where, {"e": event}).scalar() == "audit_log_p204507"
        assert "permission denied" in _refused(conn, "DELETE FROM audit_log_p204507")
        tx.rollback()


def test_a_key_store_that_does_not_match_the_data_directory_is_one_clear_line(tmp_path):
    import shutil
    import signal

    from deploy.stack import postgres
    from deploy.stack.process import StackError, ServiceRecord, stop
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "home")
    record = postgres.start(settings, settings.pg_port)
    stop(record, settings.run_dir, sig=signal.SIGINT)
    shutil.move(settings.home / "secrets.enc", tmp_path / "lost.enc")  # a new key file: new passwords
    pgroles._cache.clear()
    pgroles._providers.clear()
    try:
        with pytest.raises(StackError, match="cannot log in as tradeloop: .*password authentication failed.*"
                                             "another home"):
            postgres.start(settings, settings.pg_port)
    finally:
        left = ServiceRecord.load(settings.run_dir, "postgres")
        if left is not None:
            stop(left, settings.run_dir, sig=signal.SIGINT)
        pgroles._cache.clear()
        pgroles._providers.clear()


def test_a_simulations_throwaway_server_needs_no_passphrase(tmp_path, monkeypatch):
    from orchestration.simulation.environment import open_server
    from tests.conftest import make_settings

    monkeypatch.delenv("TRADELOOP_SECRETS_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    settings = make_settings(tmp_path / "home")  # nothing up there, no key file
    server = open_server(settings, tmp_path / "work")
    try:
        with _connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "tradeloop"
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect(server.url, password=None)
    finally:
        server.stop()


def test_the_batch_role_writes_what_the_assets_write(engines):
    """The storage calls of the market-data, ML and portfolio assets, as the batch role (COPY included)."""
    import polars as pl

    from storage import market_data, ml, stream

    exchange = f"roles-{uuid.uuid4().hex[:6]}"
    ns = stream.ns_of(datetime(2026, 11, 20, 12, tzinfo=timezone.utc))
    day = (ns - ns % (86_400 * 10**9), ns - ns % (86_400 * 10**9) + 86_400 * 10**9)
    frame = pl.DataFrame({"exchange": exchange, "symbol": "ETH/USDT", "interval": "1m", "ts": [ns, ns + 60 * 10**9],
                          "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 1.0,
                          "record_id": ["r1", "r2"]})
    with engines["batch"].connect() as conn, conn.begin() as tx:
        market_data.replace_raw(conn, frame, exchange, "ETH/USDT", "1m", *day, "test", "2026-11-20")
        raw = market_data.read_raw(conn, exchange, "ETH/USDT", "1m", *day)
        market_data.replace_clean(conn, raw, raw.head(0).with_columns(pl.lit("").alias("reason")),
                                  pl.DataFrame(schema={"exchange": pl.Utf8, "symbol": pl.Utf8, "interval": pl.Utf8,
                                                       "gap_start": pl.Int64, "gap_end": pl.Int64,
                                                       "missing": pl.Int64}),
                                  exchange, "ETH/USDT", "1m", *day, "2026-11-20")
        assert conn.execute(sa.text("SELECT count(*) FROM market_data_clean WHERE exchange = :e"),
                            {"e": exchange}).scalar() == 2
        features = pl.DataFrame({"symbol": ["ETH/USDT"], "ts": [ns], "f1": [0.5]})
        assert ml.replace_features(conn, f"{exchange}-fs", 1, ["f1"], {}, ["ETH/USDT"], exchange, *day, features) == 1
        ml.record_model(conn, f"{exchange}-model", "1", "run", "hash", "challenger", {"auc": 0.5})
        ml.make_champion(conn, f"{exchange}-model", "1")
        assert "permission denied" in _refused(conn, "INSERT INTO orders (client_order_id) VALUES ('x')")
        tx.rollback()
