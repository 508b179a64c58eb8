"""A running worker rides out a Postgres outage: trading waits (ticks stay in the broker), nothing is lost
or written twice once the server is back, and the worker goes on without a restart."""

from __future__ import annotations

import signal
import time

import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks, start_worker


def test_worker_waits_out_a_postgres_outage_and_loses_nothing(stream_env, kafka_bootstrap, tmp_path):
    from storage import migrations
    from deploy.stack import postgres
    from deploy.stack.process import stop
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "pg-home")
    port = settings.pg_port
    record = postgres.start(settings, port)
    url = postgres.url(settings, port)
    worker = None
    try:
        migrations.upgrade(url)
        env = {**stream_env, "DATABASE_URL": url}
        account, prefix = env["TRADELOOP_ACCOUNT"], env["TRADELOOP_TOPIC_PREFIX"]
        worker = start_worker(env, tmp_path / "worker.log")
        worker.wait_ready()
        ticks = sim_ticks(120, env["TRADELOOP_STREAM_EXCHANGE"])
        first, second = ticks[: len(ticks) // 2], ticks[len(ticks) // 2:]
        produce_ticks(kafka_bootstrap, prefix, first)
        worker.wait_ticks(len(first))
        time.sleep(1.0)  # the first half's effects are flushed

        stop(record, settings.run_dir, sig=signal.SIGINT)  # fast shutdown: connections are cut
        produce_ticks(kafka_bootstrap, prefix, second)
        time.sleep(4.0)
        assert worker.proc.poll() is None, "the worker died with its database"
        assert worker.get("/health") is not None  # still serving while it waits
        record = postgres.start(settings, port)

        worker.wait_ticks(len(ticks), timeout=90)
        eng = sa.create_engine(url)
        try:
            deadline = time.monotonic() + 30
            last_minute = (ticks[-1].exchange_ts // 60_000_000_000 - 1) * 60_000_000_000
            with eng.connect() as c:
                while time.monotonic() < deadline:  # the last complete minute of every symbol is stored
                    n = c.execute(sa.text("SELECT count(*) FROM market_data WHERE exchange=:e AND ts >= to_timestamp(:t)"),
                                  {"e": env["TRADELOOP_STREAM_EXCHANGE"], "t": last_minute / 1e9}).scalar()
                    if n >= 3:
                        break
                    time.sleep(0.3)
                    c.commit()
                time.sleep(1.5)
                c.commit()
                trades = c.execute(sa.text("SELECT client_order_id, count(*) FROM trades WHERE account=:a GROUP BY 1"),
                                   {"a": account}).fetchall()
                orders = c.execute(sa.text("SELECT status, count(*) FROM orders WHERE account=:a GROUP BY 1"),
                                   {"a": account}).fetchall()
                pos = dict(((r[0], r[1]), r[2]) for r in c.execute(sa.text(
                    "SELECT strategy, symbol, quantity FROM positions WHERE account=:a"), {"a": account}))
                sums = dict(((r[0], r[1]), r[2]) for r in c.execute(sa.text(
                    "SELECT strategy, symbol, sum(CASE WHEN side='buy' THEN quantity ELSE -quantity END) FROM trades"
                    " WHERE account=:a GROUP BY 1, 2"), {"a": account}))
                late = c.execute(sa.text("SELECT count(*) FROM trades WHERE account=:a AND ts >= to_timestamp(:t)"),
                                 {"a": account, "t": second[0].exchange_ts / 1e9}).scalar()
            assert n >= 3, worker.log.read_text()[-3000:]
        finally:
            eng.dispose()
        assert late > 0, "nothing traded on the ticks that arrived during the outage"
        assert all(k == 1 for _, k in trades)  # one fill per market order: nothing written twice
        assert dict(orders).get("filled", 0) == len(trades)
        assert pos == sums  # positions equal the sum of fills
        assert "retry" in worker.log.read_text().lower()  # it waited with retries, visibly
    finally:
        if worker is not None:
            worker.stop()
        stop(record, settings.run_dir, sig=signal.SIGINT)
