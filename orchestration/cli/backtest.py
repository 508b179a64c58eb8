"""`tradeloop backtest`: run a strategy over a bar file (or the sim market) and print the results.

Bad input (unknown strategy or parameter, out-of-range value, missing/invalid data, bad limits file)
prints one line ``error: ...`` on stderr and exits with code 2.  Imports stay light: polars and the
trading core only.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation

import click

EXIT_BAD_INPUT = 2


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    from trading.strategies import ParameterValueError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterValueError(f"--param {pair!r} must look like name=value")
        out[key.strip()] = value.strip()
    return out


def _cash(text: str) -> Decimal:
    from trading.backtest.data import DataError

    try:
        cash = Decimal(text)
    except InvalidOperation:
        raise DataError(f"--cash {text!r} is not a number") from None
    if not cash.is_finite() or cash <= 0:
        raise DataError(f"--cash must be > 0, got {text}")
    return cash


def _summary(result, strategy, source: str) -> str:
    m = result.metrics
    pf = m["profit_factor"]
    lines = [
        f"{strategy!r} on {source} ({m['n_bars']} bars of {m['interval']}, {result.path} path)",
        f"  final equity   {m['final_equity']:,.2f}   total return {m['total_return']:+.2%}   CAGR {m['cagr']:+.2%}",
        f"  sharpe {m['sharpe']:.2f}   sortino {m['sortino']:.2f}   calmar {m['calmar']:.2f}   volatility {m['volatility']:.2%}",
        f"  max drawdown {m['max_drawdown']:.2%} lasting {m['max_drawdown_duration_bars']} bars   exposure {m['exposure']:.1%}",
        f"  trades {m['n_trades']} closed (+{m['n_open_trades']} open)   win rate {m['win_rate']:.1%}   "
        f"profit factor {'inf' if pf == float('inf') else f'{pf:.2f}'}   fees {m['fees']:,.2f}   turnover {m['turnover']:.1f}x",
    ]
    if result.rejected:
        lines.append("  rejected orders: " + ", ".join(f"{k}={v}" for k, v in sorted(result.rejected.items())))
    return "\n".join(lines)


@click.command()
@click.option("--strategy", "strategy_name", required=True, help="Registered strategy name (e.g. sma_cross).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Strategy parameter; repeatable.")
@click.option("--data", "data_path", default=None, metavar="FILE",
              help="CSV or Parquet with timestamp,open,high,low,close,volume (timestamp: ISO-8601, epoch s or ms). "
                   "Without it: the sim market's bars.")
@click.option("--symbol", default=None, help="Symbol (selects rows of a multi-symbol file; sim default BTC/USDT).")
@click.option("--cash", "cash_text", default="10000", show_default=True, help="Starting cash.")
@click.option("--fee-bps", type=float, default=0.0, show_default=True, help="Fee in bps of notional (maker and taker).")
@click.option("--slippage-bps", type=float, default=0.0, show_default=True, help="Slippage paid on market orders.")
@click.option("--impact", type=float, default=0.0, show_default=True, help="Square-root impact coefficient.")
@click.option("--fill", type=click.Choice(["next_open"]), default="next_open", show_default=True,
              help="Fill convention: orders decided at a bar's close fill at the next bar's open.")
@click.option("--size-fraction", type=float, default=1.0, show_default=True, help="Fraction of equity per unit of target.")
@click.option("--bars", "n_bars", type=int, default=10_000, show_default=True, help="Sim bars when no --data.")
@click.option("--seed", type=int, default=7, show_default=True, help="Sim market seed when no --data.")
@click.option("--risk-limits", "risk_limits", default=None, metavar="FILE", help="Risk limits (YAML/TOML) to enforce.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (metrics, trades) instead of a summary.")
def backtest(strategy_name, params, data_path, symbol, cash_text, fee_bps, slippage_bps, impact, fill, size_fraction,
             n_bars, seed, risk_limits, as_json) -> None:
    """Backtest a strategy on bars and print metrics and trades."""
    try:
        result, strategy, source = _run(strategy_name, params, data_path, symbol, cash_text, fee_bps, slippage_bps,
                                        impact, fill, size_fraction, n_bars, seed, risk_limits)
    except ValueError as e:  # every bad-input error of the trading core is a ValueError subclass
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        click.echo(_summary(result, strategy, source))


def _run(strategy_name, params, data_path, symbol, cash_text, fee_bps, slippage_bps, impact, fill, size_fraction,
         n_bars, seed, risk_limits):
    from trading.backtest.data import load_bars, load_sim_bars, sim_instruments
    from trading.backtest.runner import BacktestConfig, run_backtest
    from trading.sizing import FixedFraction
    from trading.strategies import create_strategy
    from trading.venue import FeeSchedule, ImpactModel

    strategy = create_strategy(strategy_name, _parse_params(params))
    cash = _cash(cash_text)
    instruments = None
    if data_path is None:
        symbol = symbol or "BTC/USDT"
        bars = load_sim_bars(symbol, n_bars, seed)
        instruments = {symbol: sim_instruments(seed)[symbol]}
        source = f"sim {symbol} (seed {seed})"
    else:
        bars = load_bars(data_path, symbol)
        source = data_path
    risk = clock = None
    if risk_limits is not None:
        from trading.backtest.risk import make_risk_engine

        risk, clock = make_risk_engine(risk_limits, "backtest", cash, instruments)
    config = BacktestConfig(
        cash=cash,
        fees=FeeSchedule(maker_bps=fee_bps, taker_bps=fee_bps),
        impact=ImpactModel(coefficient=impact, slippage_bps=slippage_bps),
        fill=fill,
        sizer=FixedFraction(size_fraction),
        instruments=instruments,
        risk=risk,
        clock=clock,
    )
    progress = None
    bar = None
    if sys.stderr.isatty() and bars.height >= 200_000:
        from tqdm import tqdm

        bar = tqdm(total=bars.height, unit="bar", file=sys.stderr, leave=False)
        progress = bar.update
    try:
        result = run_backtest(bars, strategy, config, progress)
    finally:
        if bar is not None:
            bar.close()
    return result, strategy, source
