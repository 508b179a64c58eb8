"""Daily tear sheets: one self-contained HTML page per account/strategy and per account portfolio, from the
warehouse marts, under <site_dir>/reports/<date>/ (served by the `docs` service; readable offline: the
plots are PNGs embedded as data URIs and also written next to the pages, no external resources).

The daily series (equity, P&L, exposure) are the warehouse's marts; Sharpe, drawdown and total return are
trading/backtest/metrics.py's (EquityStats on daily bars, 24/7 annualisation), their one definition.

Attribution (trading/portfolio/attribution.py): each page breaks its P&L down per strategy (portfolio pages)
and per asset (mart_symbol_daily_pnl), as P&L, contribution to the return on the starting equity and share
of the P&L, and fits the book's daily returns against the market: beta and alpha versus the setting
report_benchmark -- `equal_weight` (the symbols the account traded, equal weights rebalanced daily, priced
at the marts' daily marks) or one symbol's marks.
"""

import base64
import html
import io
import os
import re
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg

from assets.warehouse import mart_key
from deploy.settings import get_settings
from assets.resources import PostgresResource

ROLLING_SHARPE_DAYS = 30
DAY_NS = 86_400 * 1_000_000_000  # the marts' bar: one UTC day


class ReportConfig(dg.Config):
    as_of: str = ""
    """Last day in the report (YYYY-MM-DD, UTC). Empty: yesterday, the last complete day."""
    accounts: list[str] = []
    """Report only these accounts; empty = every account in the warehouse."""


def _as_of(text: str) -> date:
    if not text:
        return datetime.now(timezone.utc).date() - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise dg.Failure(description=f"report as_of must be a date YYYY-MM-DD, got {text!r}") from None


def _load(db: PostgresResource, as_of: date, accounts: list[str]):
    """(strategies, portfolios, per-symbol rows or the reason there are none)."""
    from storage.marts import MartsMissing, daily_pnl, symbol_daily_pnl

    with db.engine().connect() as conn:
        try:
            strategies, portfolios = daily_pnl(conn, as_of, accounts)
        except MartsMissing as exc:
            raise dg.Failure(description=str(exc)) from None
        try:  # a warehouse built before this mart existed: the tear sheets without per-asset attribution
            symbols = symbol_daily_pnl(conn, as_of, accounts)
        except MartsMissing as exc:
            symbols = str(exc)
    return strategies, portfolios, symbols


def _numeric(frame):
    # NUMERIC arrives as Decimal; plots and statistics want floats
    for col in frame.columns:
        if col not in ("account", "strategy", "symbol", "day"):
            frame[col] = frame[col].astype(float)
    frame["day"] = frame["day"].astype("datetime64[ns]")
    return frame


def equity_metrics(equity, starting_equity: float) -> dict[str, float]:
    """trading/backtest/metrics.py's metrics of a daily equity series (returns against the previous day's
    equity, the first against the starting equity)."""
    import numpy as np

    from trading.backtest.metrics import EquityStats

    values = np.asarray(equity, dtype=float)
    metrics = EquityStats(starting_equity, DAY_NS)
    metrics.update(np.arange(len(values), dtype=np.int64) * DAY_NS, values, np.ones(len(values), dtype=bool))
    return metrics.metrics()


def rolling_sharpe(equity, starting_equity: float, window: int):
    """Sharpe of each trailing ``window`` days (NaN until two returns), by the same definition."""
    import numpy as np

    values = np.asarray(equity, dtype=float)
    before = np.concatenate(([starting_equity], values[:-1]))  # equity the day before each day
    out = np.full(len(values), np.nan)
    for end in range(1, len(values)):
        start = max(0, end - window + 1)
        out[end] = equity_metrics(values[start:end + 1], before[start])["sharpe"]
    return out


def stats(frame, starting_equity: float) -> dict[str, float | int | None]:
    """Summary of a daily series (mart_daily_pnl or mart_account_daily_pnl rows of one book)."""
    metrics = equity_metrics(frame["equity"], starting_equity)
    closed = int(frame["round_trips_closed"].sum())
    return {
        "days": len(frame),
        "pnl": float(frame["pnl"].sum()),
        "total_return": float(metrics["total_return"]),
        "sharpe": float(metrics["sharpe"]),
        "max_drawdown": float(metrics["max_drawdown"]),
        "trade_count": closed,
        "win_rate": int(frame["winning_round_trips"].sum()) / closed if closed else None,
        "fills": int(frame["fill_count"].sum()),
        "fees": float(frame["fees"].sum()),
    }


# ---- attribution ------------------------------------------------------------------------------------

def benchmark_returns(symbols, account: str, benchmark: str):
    """(daily returns of the benchmark as a pandas Series by day, its label) from the account's daily marks,
    or (None, why not)."""
    import pandas as pd

    from trading.portfolio.attribution import equal_weight_returns

    if isinstance(symbols, str):
        return None, symbols
    rows = symbols[symbols["account"] == account]
    if rows.empty:
        return None, f"no per-asset rows for account {account}"
    # a symbol's mark is the same for every strategy that holds it: one per symbol and day
    marks = rows.groupby(["day", "symbol"])["mark_price"].first().unstack("symbol").sort_index()
    marks = marks.reindex(pd.date_range(marks.index.min(), marks.index.max(), freq="D"))
    if benchmark == "equal_weight":
        columns, label = sorted(marks.columns), "equal weight of " + ", ".join(sorted(marks.columns))
    elif benchmark in marks.columns:
        columns, label = [benchmark], benchmark
    else:
        return None, f"no daily marks of {benchmark} in account {account}'s book (setting report_benchmark)"
    returns = equal_weight_returns(marks[columns].to_numpy(dtype=float))
    return pd.Series(returns, index=marks.index[1:]).dropna(), label


def market_fit(frame, bench):
    """trading.portfolio.attribution.beta_alpha of a book's daily returns on the benchmark's (common days),
    with the aligned series; or (None, None, why not)."""
    from trading.portfolio.attribution import beta_alpha
    from trading.portfolio.errors import PortfolioError

    book = frame.set_index("day")["daily_return"]
    joined = book.to_frame("book").join(bench.rename("bench"), how="inner").dropna()
    try:
        return beta_alpha(joined["book"], joined["bench"]), joined, None
    except PortfolioError as exc:
        return None, None, str(exc)


def _contribution_table(title: str, first: str, pnl: dict, capital: float) -> str:
    from trading.portfolio.attribution import contributions

    if not pnl:
        return ""
    rows = "".join(f"<tr><td style='text-align:left'>{html.escape(c.name)}</td><td>{_fmt(c.pnl, 'num')}</td>"
                   f"<td>{_fmt(c.contribution, 'pct')}</td><td>{'n/a' if c.share != c.share else _fmt(c.share, 'pct')}"
                   "</td></tr>" for c in contributions(pnl, capital))
    return (f"<h3>{title}</h3><table><tr><th style='text-align:left'>{first}</th><th>P&amp;L</th><th>Contribution to return</th>"
            f"<th>Share of P&amp;L</th></tr>{rows}</table>")


def attribution_html(frame, starting_equity: float, by_strategy: dict | None, by_asset, bench, label: str):
    """The tear sheet's attribution section, and the book-vs-benchmark plot (PNG bytes) when there is a fit."""
    parts = ["<h2>Attribution</h2>"]
    if by_strategy is not None:
        parts.append(_contribution_table("By strategy", "strategy", by_strategy, starting_equity))
    if isinstance(by_asset, str):
        parts.append(f"<h3>By asset</h3><p class='empty'>n/a: {html.escape(by_asset)}</p>")
    else:
        parts.append(_contribution_table("By asset", "asset", by_asset, starting_equity))
    parts.append("<h3>Against the market</h3>")
    if bench is None:
        parts.append(f"<p class='empty'>n/a: {html.escape(label)}</p>")
        return "".join(parts), None
    fit, joined, why = market_fit(frame, bench)
    if fit is None:
        parts.append(f"<p class='empty'>Benchmark: {html.escape(label)}. Beta and alpha n/a: {html.escape(why)}</p>")
        return "".join(parts), None
    cells = [("Benchmark", html.escape(label)), ("Beta", f"{fit.beta:.3f}"),
             ("Alpha (annualised)", _fmt(fit.alpha_annual, "pct")), ("Alpha per day", f"{fit.alpha * 1e4:.2f} bp"),
             ("Correlation", "n/a" if fit.correlation != fit.correlation else f"{fit.correlation:.3f}"),
             ("Days fitted", str(fit.periods)), ("Book return (those days)", _fmt(fit.book_return, "pct")),
             ("Benchmark return (those days)", _fmt(fit.benchmark_return, "pct"))]
    parts.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in cells) + "</table>")
    parts.append("<p class='note'>OLS of the book's daily returns on the benchmark's; alpha = intercept x 365.</p>")
    return "".join(parts), _benchmark_plot(joined, label)


def _benchmark_plot(joined, label: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.5))
    style = _dated(ax, joined.index, fig)
    ax.plot(joined.index, ((1 + joined["book"]).cumprod() - 1) * 100, label="book", color="tab:blue", **style)
    ax.plot(joined.index, ((1 + joined["bench"]).cumprod() - 1) * 100, label=f"benchmark ({label})"[:60],
            color="tab:gray", **style)
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Cumulative return vs benchmark (%, days both have returns)")
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _dated(ax, index, fig) -> dict:
    """Line style and x range for a daily series: a short history (the first days of paper trading) gets
    point markers and a padded range, otherwise one day is an invisible line on a years-wide axis."""
    import pandas as pd

    fig.autofmt_xdate()
    if len(index) and index.max() - index.min() < pd.Timedelta(days=7):
        ax.set_xlim(index.min() - pd.Timedelta(days=1), index.max() + pd.Timedelta(days=1))
    return {"marker": "o", "ms": 4} if len(index) < 30 else {}


def plots(frame, starting_equity: float) -> dict[str, bytes]:
    """The six tear-sheet plots of one daily series, as PNG bytes by name."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt
    import numpy as np

    series = frame.set_index("day")
    returns = series["daily_return"].fillna(0.0)
    out = {}

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(series.index, series["equity"], color="tab:blue", **_dated(ax, series.index, fig))
    ax.axhline(starting_equity, color="grey", lw=0.8, ls="--")
    ax.set_title("Equity curve")
    out["equity"] = _png(fig)

    peak = series["equity"].cummax().clip(lower=starting_equity)
    fig, ax = plt.subplots(figsize=(8, 2.5))
    drawdown = (series["equity"] / peak - 1.0) * 100
    ax.fill_between(series.index, drawdown, 0, color="tab:red", alpha=0.5)
    ax.plot(series.index, drawdown, color="tab:red", **_dated(ax, series.index, fig))
    ax.set_title("Drawdown (%)")
    out["drawdown"] = _png(fig)

    monthly = (1.0 + returns).groupby([returns.index.year, returns.index.month]).prod() - 1.0
    table = monthly.unstack(level=1).reindex(columns=range(1, 13)) * 100
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * len(table)))
    limit = max(float(np.nanmax(np.abs(table.values))) if np.isfinite(table.values).any() else 0.0, 1e-9)
    ax.imshow(table.values, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(12), ["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"])
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    for (i, j), v in np.ndenumerate(table.values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("Monthly returns (%)")
    out["monthly_returns"] = _png(fig)

    window = min(ROLLING_SHARPE_DAYS, max(len(returns), 2))
    sharpe = rolling_sharpe(series["equity"], starting_equity, window)
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.plot(series.index, sharpe, color="tab:purple", **_dated(ax, series.index, fig))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Rolling Sharpe ({window} days, annualised)" + ("" if np.isfinite(sharpe).any()
                                                                  else ": needs 2 days of returns"))
    out["rolling_sharpe"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 2.5))
    style = _dated(ax, series.index, fig)
    ax.plot(series.index, series["gross_exposure"], label="gross", color="tab:orange", **style)
    ax.plot(series.index, series["net_exposure"], label="net", color="tab:green", **style)
    ax.legend(loc="upper left")
    ax.set_title("Exposure (end of day, quote currency)")
    out["exposure"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.hist(returns * 100, bins=max(5, min(50, len(returns))), color="tab:blue", alpha=0.8)
    ax.set_title("Distribution of daily returns (%)")
    out["return_distribution"] = _png(fig)
    return out


_STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
          "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}.empty{color:#666}"
          ".note{color:#666;font-size:0.85em}")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _fmt(value, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"


_STAT_LABELS = [("pnl", "P&L", "num"), ("total_return", "Total return", "pct"), ("sharpe", "Sharpe", "num"),
                ("max_drawdown", "Max drawdown", "pct"), ("trade_count", "Round trips", "int"),
                ("win_rate", "Win rate", "pct"), ("fills", "Fills", "int"), ("fees", "Fees", "num"),
                ("days", "Days", "int")]


def _slug(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p) for p in parts)


def _tear_sheet(out_dir: Path, name: str, title: str, frame, starting_equity: float, attribution=None) -> dict:
    """One page; ``attribution`` = (by_strategy or None, by_asset, benchmark returns or None, label)."""
    summary = stats(frame, starting_equity)
    rows = "".join(f"<tr><th>{label}</th><td>{_fmt(summary[key], kind)}</td></tr>"
                   for key, label, kind in _STAT_LABELS)
    section, extra = attribution_html(frame, starting_equity, *attribution) if attribution else ("", None)

    def image(plot: str, png: bytes) -> str:
        (out_dir / "img" / f"{name}__{plot}.png").write_bytes(png)
        return f"<img alt='{plot}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"

    images = [image(plot, png) for plot, png in plots(frame, starting_equity).items()]
    if extra is not None:  # book vs benchmark, under the beta/alpha table it illustrates
        section += image("benchmark", extra)
    first, last = frame["day"].iloc[0].date(), frame["day"].iloc[-1].date()
    # the numbers first (summary, then where the P&L came from), the plots after them
    body = (f"<p><a href='index.html'>&larr; all tear sheets</a></p><h1>{html.escape(title)}</h1>"
            f"<p>{first} to {last} (UTC days); returns on a starting equity of {starting_equity:,.0f}.</p>"
            f"<table>{rows}</table>{section}{'<h2>Performance</h2>' if section else ''}{''.join(images)}")
    (out_dir / f"{name}.html").write_text(_page(title, body))
    return summary


def write_reports(site_dir: Path, as_of: date, strategies, portfolios, starting_equity: float,
                  symbols="per-asset rows not loaded", benchmark: str = "equal_weight") -> Path:
    """All tear sheets of one day into <site_dir>/reports/<as_of>/, replacing that day's previous set in one
    rename (readers never see half a report). ``symbols``: mart_symbol_daily_pnl rows (or why there are
    none) for attribution. Returns the index page."""
    reports = site_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    tmp = reports / f".{as_of}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "img").mkdir(parents=True)

    if strategies.empty:
        body = (f"<h1>Tear sheets {as_of}</h1><p class='empty'>No trades yet: the warehouse holds no paper or "
                f"live fills up to {as_of}. Tear sheets appear once strategies have traded.</p>")
    else:
        sections = []
        for account, book in portfolios.groupby("account", sort=True):
            name = _slug("portfolio", account)
            bench, label = benchmark_returns(symbols, account, benchmark)
            mine = strategies[strategies["account"] == account]
            by_strategy = {k: float(v) for k, v in mine.groupby("strategy")["pnl"].sum().items()}
            s = _tear_sheet(tmp, name, f"Portfolio {account}", book.reset_index(drop=True), starting_equity,
                            (by_strategy, _asset_pnl(symbols, account), bench, label))
            links = [f"<tr><td style='text-align:left'><a href='{name}.html'>portfolio</a></td>"
                     + "".join(f"<td>{_fmt(s[k], kind)}</td>" for k, _, kind in _STAT_LABELS) + "</tr>"]
            for strategy, frame in strategies[strategies["account"] == account].groupby("strategy", sort=True):
                name = _slug(account, strategy)
                s = _tear_sheet(tmp, name, f"{strategy} ({account})", frame.reset_index(drop=True), starting_equity,
                                (None, _asset_pnl(symbols, account, strategy), bench, label))
                links.append(f"<tr><td style='text-align:left'><a href='{name}.html'>{html.escape(strategy)}</a></td>"
                             + "".join(f"<td>{_fmt(s[k], kind)}</td>" for k, _, kind in _STAT_LABELS) + "</tr>")
            head = "<tr><th>book</th>" + "".join(f"<th>{label}</th>" for _, label, _ in _STAT_LABELS) + "</tr>"
            sections.append(f"<h2>Account {html.escape(account)}</h2><table>{head}{''.join(links)}</table>")
        body = f"<h1>Tear sheets {as_of}</h1>{''.join(sections)}"
    (tmp / "index.html").write_text(_page(f"Tear sheets {as_of}", body))

    final = reports / as_of.isoformat()
    old = reports / f".{as_of}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final / "index.html"


def _asset_pnl(symbols, account: str, strategy: str | None = None):
    """Symbol -> P&L of the account (or one of its strategies), or why there is no breakdown."""
    if isinstance(symbols, str):
        return symbols
    rows = symbols[symbols["account"] == account]
    if strategy is not None:
        rows = rows[rows["strategy"] == strategy]
    return {k: float(v) for k, v in rows.groupby("symbol")["pnl"].sum().items()}


@dg.asset(
    # mart_symbol_daily_pnl is built by the same dbt op as these two (no key of its own needed here: a clone's
    # manifest parsed before that mart existed still loads)
    deps=[mart_key("mart_daily_pnl"), mart_key("mart_account_daily_pnl")],
    group_name="reports",
    description="Daily HTML tear sheets per strategy and per account portfolio (equity, drawdown, monthly "
                "returns, rolling Sharpe, exposure, return distribution; attribution per strategy and asset, "
                "beta/alpha against the report_benchmark), readable offline.",
)
def tear_sheets(context: dg.AssetExecutionContext, db: PostgresResource, config: ReportConfig) -> dg.MaterializeResult:
    as_of = _as_of(config.as_of)
    starting_equity = float(get_settings().starting_cash)
    strategies, portfolios, symbols = _load(db, as_of, config.accounts)
    strategies, portfolios = _numeric(strategies), _numeric(portfolios)
    symbols = symbols if isinstance(symbols, str) else _numeric(symbols)
    settings = get_settings()
    index = write_reports(settings.site_dir, as_of, strategies, portfolios, starting_equity, symbols,
                          settings.report_benchmark)
    relative = index.relative_to(settings.site_dir).as_posix()
    context.log.info(f"tear sheets for {as_of} at {index}")
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.url(f"{settings.docs_url}/{relative}"),
        "report_path": dg.MetadataValue.path(str(index)),
        "as_of": as_of.isoformat(),
        "accounts": int(portfolios["account"].nunique()) if not portfolios.empty else 0,
        "strategies": int(strategies[["account", "strategy"]].drop_duplicates().shape[0]) if not strategies.empty else 0,
        "no_trades_yet": bool(strategies.empty),
        "benchmark": settings.report_benchmark,
    })
