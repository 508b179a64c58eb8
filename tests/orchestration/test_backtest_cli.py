"""The `tradeloop backtest` command: output, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from orchestration.cli import main
from tests.trading.bars import plain_bars as _plain, write_bars_file as _write

TRADELOOP = Path(sys.executable).parent / "tradeloop"


def test_cli_json_output(tmp_path):
    path = _write(tmp_path, _plain(3000), "bars.parquet")
    res = CliRunner().invoke(main, ["backtest", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=30",
                                    "--data", str(path), "--fee-bps", "10", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    m = out["metrics"]
    for k in ("n_trades", "final_equity", "total_return", "sharpe", "max_drawdown"):
        assert k in m
    assert m["n_trades"] > 5 and len(out["trades"]) >= m["n_trades"]
    t = out["trades"][0]
    assert {"entry_time", "entry_price", "exit_time", "exit_price", "quantity", "pnl"} <= set(t)
    assert all(t["exit_time"] is not None for t in out["trades"][:-1])  # only the last may still be open


def test_cli_summary_and_sim_market():
    res = CliRunner().invoke(main, ["backtest", "--strategy", "breakout", "--bars", "3000"])
    assert res.exit_code == 0, res.output
    assert "final equity" in res.output and "sim BTC/USDT" in res.output and "max drawdown" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--strategy", "sma_cross", "--param", "speed=3"], "unknown parameter 'speed'"),
        (["--strategy", "sma_cross", "--param", "fast=-1"], "fast=-1 is out of range"),
        (["--strategy", "sma_cross", "--param", "fast"], "must look like name=value"),
        (["--strategy", "sma_cross", "--data", "/no/such/file.csv"], "data file not found"),
        (["--strategy", "sma_cross", "--cash", "-5"], "--cash must be > 0"),
        (["--strategy", "sma_cross", "--symbol", "DOGE/USD"], "no symbol 'DOGE/USD'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, message):
    res = CliRunner().invoke(main, ["backtest", *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output and "Traceback" not in res.stderr


def test_cli_bad_data_file(tmp_path):
    f = _plain(50).with_columns(pl.when(pl.int_range(pl.len()) == 4).then(0.0).otherwise(pl.col("open")).alias("open"))
    path = _write(tmp_path, f, "zero.csv")
    res = CliRunner().invoke(main, ["backtest", "--strategy", "sma_cross", "--data", str(path)])
    assert res.exit_code == 2 and "column open has non-positive price 0.0 at row 4" in res.stderr


@pytest.mark.skipif(not TRADELOOP.exists(), reason="console script not installed")
def test_real_console_script_exit_code(tmp_path):
    path = _write(tmp_path, pl.concat([_plain(10).slice(0, 5), _plain(10).slice(4)]), "dup.csv")
    for args, message in [
        (["--strategy", "sma_cross", "--data", str(path)], "duplicate timestamp"),
        (["--strategy", "no_such_strategy"], "unknown strategy"),
    ]:
        proc = subprocess.run([str(TRADELOOP), "backtest", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    ok = _write(tmp_path, _plain(500), "ok.csv")
    proc = subprocess.run([str(TRADELOOP), "backtest", "--strategy", "sma_cross", "--data", str(ok), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "final_equity" in json.loads(proc.stdout)["metrics"]


def test_cli_risk_limits(tmp_path):
    limits = tmp_path / "l.yaml"
    limits.write_text("symbol_defaults:\n  max_order_notional: 3000\n")
    res = CliRunner().invoke(main, ["backtest", "--strategy", "sma_cross", "--bars", "2000", "--risk-limits", str(limits), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rejected"]["max_order_notional"] > 0 and out["metrics"]["n_trades"] == 0
    (tmp_path / "bad.yaml").write_text("no_such_limit: 1\n")
    for path, msg in [(tmp_path / "bad.yaml", "no_such_limit"), (tmp_path / "missing.yaml", "risk limits file not found")]:
        res = CliRunner().invoke(main, ["backtest", "--strategy", "sma_cross", "--risk-limits", str(path)])
        assert res.exit_code == 2 and msg in res.stderr
