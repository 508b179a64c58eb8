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
