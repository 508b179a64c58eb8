import numpy as np
from click.testing import CliRunner

from ml.monitoring import psi, trade_performance
from orchestration.cli.ml import model, retrain


def test_psi_flags_drift_only():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5000)
    assert psi(base, rng.normal(0, 1, 5000)) < 0.02
    assert psi(base, rng.normal(1.0, 1, 5000)) > 0.25


def test_trade_performance():
    p = trade_performance([1.0, -0.5, 2.0, -1.0])
    assert p["trades"] == 4 and p["hit_rate"] == 0.5 and p["trade_sharpe"] > 0


def test_cli_commands_are_wired():
    r = CliRunner()
    assert "promotion gate" in r.invoke(retrain, ["--help"]).output
    out = r.invoke(model, ["--help"]).output
    assert "rollback" in out and "status" in out
    assert "shadow" in out


def test_model_commands_use_the_embedded_server_and_say_when_it_is_down(monkeypatch, tmp_path, pg_url):
    """No DATABASE_URL: the embedded server's URL, the batch role's (pg_url: its password exists); not running: one
    line without the password, exit 1."""
    from deploy.settings import get_settings
    from deploy.stack.process import free_port

    port = free_port()  # nothing listens there
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRADELOOP_PG_PORT", str(port))
    get_settings.cache_clear()
    try:
        for args in (["status"], ["shadow"], ["rollback", "--reason", "test"]):
            res = CliRunner().invoke(model, args)
            assert res.exit_code == 1, (args, res.output)
            assert f"cannot reach PostgreSQL at postgresql+psycopg://tradeloop_batch:***@127.0.0.1:{port}/tradeloop" in res.output
            assert "is the platform up?" in res.output and "Traceback" not in res.output
    finally:
        get_settings.cache_clear()
