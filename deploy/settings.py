"""The one settings object. Environment variables with the TRADELOOP_ prefix, or a `.env` file.

Two well-known variables are honoured without the prefix because every tool in this space uses them:
`DATABASE_URL` (use that PostgreSQL, start none) and `KAFKA_BOOTSTRAP` (use that Kafka cluster,
start none).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# what TRADELOOP_LIVE_CONFIRM must say, word for word, before real money is traded
LIVE_CONFIRMATION = "I accept real-money trading"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADELOOP_", env_file=".env", extra="ignore")

    @property
    def starting_cash(self) -> Decimal:
        """Capital of every account and strategy sleeve: the warehouse's dbt var ``starting_equity``
        (dbt_project/dbt_project.yml) is the one source, so the stream trades on the capital the marts
        and tear sheets measure against."""
        import yaml

        project = yaml.safe_load((REPO_ROOT / "dbt_project" / "dbt_project.yml").read_text())
        return Decimal(str(project["vars"]["starting_equity"]))

    home: Path = Field(REPO_ROOT / ".tradeloop", description="Where the embedded stack keeps its state.")
    host: str = Field("127.0.0.1", description="Interface the embedded services listen on.")

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "TRADELOOP_DATABASE_URL"),
        description="External PostgreSQL (SQLAlchemy URL), used by every component as given (MLflow and Dagster in "
                    "databases `mlflow` and `dagster` on the same server). Unset: the embedded server is started, "
                    "with a role per component and generated passwords (settings.database_url_for).",
    )
    kafka_bootstrap: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "TRADELOOP_KAFKA_BOOTSTRAP"),
        description="External Kafka bootstrap servers (host:port,...). Unset: the embedded broker is started.",
    )

    pg_port: int = Field(15432, description="Port of the embedded PostgreSQL (0 = pick a free one).")
    pg_bin_dir: Path | None = Field(None, description="Directory holding initdb/pg_ctl/postgres to use.")
    pg_user: str = Field("tradeloop", description="Superuser of the embedded PostgreSQL (initdb -U).")

    broker_port: int = Field(19092, description="Port of the embedded Kafka-protocol broker (Tansu).")
    topic_partitions: int = Field(4, description="Partition count of every topic (one count for all).")

    mlflow_port: int = Field(15000, description="MLflow tracking server / UI port.")
    dagster_port: int = Field(13000, description="Dagster UI port.")
    worker_port: int = Field(16066, description="Faust worker web port (/health, /metrics).")

    docs_port: int = Field(18080, description="Static site port: Data Docs and reports, readable offline.")
    supervisor_port: int = Field(16067, description="Supervisor's /metrics port (service restarts, up/down).")

    start_timeout_s: float = Field(120.0, description="How long `up` waits for one service to be healthy.")
    supervise_interval_s: float = Field(1.0, gt=0, description="How often the supervisor checks each service.")
    restart_backoff_s: float = Field(1.0, gt=0, description="Wait before restarting a dead service; doubles with "
                                                           "each restart inside the restart window.")
    restart_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between restarts of one service.")
    restart_budget: int = Field(5, ge=0, description="Restarts of one service allowed inside the restart window; "
                                                     "then the supervisor leaves it stopped (0: never restart).")
    restart_window_s: float = Field(600.0, gt=0, description="The restart budget's window.")

    symbols: list[str] = Field(["BTC/USDT", "ETH/USDT", "SOL/USDT"],
                               description="Symbols of the historical store and of the stream: what the "
                                           "worker trades and the `feed` publishes (unified BASE/QUOTE).")
    history_start: str = Field("2026-11-01", description="First daily partition of the historical store (UTC).")
    market_source: str = Field("sim", description="Where history comes from: `sim`, or a ccxt exchange id.")
    sim_seed: int = Field(7, description="Seed of the simulated venue: same seed, same market.")

    # the OMS's order router (trading.oms.router): orders larger than this share of the recent traded volume per
    # slice are worked as TWAP/VWAP/Iceberg parents
    router_participation: float = Field(0.10, ge=0, le=1, description="Largest share of the recent traded volume "
                                        "one child order takes per slice; larger orders become TWAP (market) or "
                                        "Iceberg (limit) parents. 0 sends every order whole.")
    router_volume_window_s: int = Field(300, gt=0, description="Window of the recent traded volume the router "
                                                               "measures participation against.")
    router_slice_s: int = Field(60, gt=0, description="One slice of a parent order (seconds).")

    account: str = Field("paper", description="Trading account of the stream (paper by default).")
    model_name: str = Field("tradeloop-signal", description="Registered MLflow model the ML strategy trades.")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "TRADELOOP_MLFLOW_TRACKING_URI"),
        description="MLflow tracking/registry URI. Unset: the embedded server.",
    )
    model_poll_interval_s: float = Field(
        30.0, gt=0, description="How often the stream asks the MLflow registry whether the champion (and, in shadow "
                                "mode, the challenger) alias moved; a new version is swapped in between events.")
    history_rewarm_interval_s: float = Field(
        60.0, gt=0, description="While an ML slot of the stream is still warming up, how often it checks "
                                "market_data_clean for bars it has not seen (a first start's backfill) and "
                                "rebuilds its features from them instead of waiting for live bars.")
    weights_poll_interval_s: float = Field(
        60.0, gt=0, description="How often a target_rebalance slot of the stream re-reads its portfolio's latest "
                                "target_weights rows (also at once when the trading day changes).")
    var_scenario_step: str = Field(
        "1d", description="VaR scenarios from market_data_clean: `1d` = daily returns, `1h` = overlapping 1-day "
                          "returns sampled hourly (more scenarios from a short history).")
    var_scenarios: int = Field(250, ge=2, description="Most recent 1-day return scenarios loaded for VaR.")
    var_min_scenarios: int = Field(20, ge=2, description="Fewer common scenarios than this: no VaR, and the reason.")
    var_refresh_s: float = Field(300.0, gt=0, description="How often the worker reloads the VaR scenarios.")
    var_source_interval: str = Field("1m", description="Bar interval of the market_data_clean rows the scenarios use.")
    stream_exchange: str = Field("sim", description="Venue name of the stream's ticks and paper orders.")
    stream_app_id: str = Field("tradeloop", description="Faust app id of the stream (its consumer group).")
    stream_fetch_max_wait_ms: int = Field(
        10, ge=1, le=1500, description="Longest the worker's consumer waits in one broker fetch. The embedded "
                                       "broker answers a fetch only when this elapses, so it bounds tick-to-fill "
                                       "latency (Faust's own value is 1500 ms).")
    stream_batch_window_s: float = Field(
        0.01, gt=0, le=1, description="The hot path takes messages (one tick, or a producer's batch of up to "
                                      "200) in batches of up to 2000 messages or this long, whichever comes "
                                      "first; one Postgres transaction per batch, or per 5000 ticks if sooner.")
    topic_prefix: str = Field("", description="Prefix of every topic name (isolates several streams on one broker).")
    stream_strategies: dict[str, tuple[str, dict]] | None = Field(
        None, description='Strategy set of the stream as JSON {"slot": ["strategy", {params}]}. '
                          "Unset: streaming/config.py's STRATEGIES.",
    )
    risk_limits: Path | None = Field(
        None, description="Risk limits file (.yaml/.toml) of the stream. Unset: streaming/config.py's LIMITS.",
    )
    # ---- reconciliation with the venue (streaming/reconciler.py; sandbox and live accounts) ----
    recon_orders_interval_s: float = Field(5.0, gt=0, description="How often open orders and recent trades are "
                                                                 "compared with the venue's.")
    recon_balances_interval_s: float = Field(60.0, gt=0, description="How often balances are compared as well.")
    recon_balance_tolerance: float = Field(0.001, ge=0, description="Balance drift per asset taken as noise, "
                                                                    "relative to the balance (0.001 = 0.1 %).")
    recon_balance_abs_tolerance: float = Field(1e-8, ge=0, description="Balance drift per asset taken as noise "
                                                                        "whatever the balance (dust).")
    recon_balance_halt: float = Field(0.02, ge=0, description="Relative drift beyond which the account HALTS; "
                                                              "between the tolerance and this it is REDUCING.")
    recon_settle_s: float = Field(5.0, ge=0, description="Orders changed and trades made this recently are in "
                                                         "flight: the next run compares them.")
    recon_resolve_grace_s: float = Field(30.0, ge=0, description="An order the OMS is still establishing (sent "
                                         "without an answer, unknown, restored after a restart) is its business "
                                         "this long before reconciliation counts it as a difference.")
    recon_confirmations: int = Field(2, ge=1, description="Runs in a row a periodic difference must be seen in "
                                                          "before it changes the account's state.")
    recon_query_timeout_s: float = Field(10.0, gt=0, description="How long the start waits for the venue's answers "
                                                                 "about orders it does not show.")
    recon_lookback_s: float = Field(86400.0, gt=0, description="Trades read at a first start, with nothing stored.")
    recon_max_failures: int = Field(10, ge=1, description="Periodic runs failing in a row (venue or store) before "
                                                          "the account halts.")
    recon_fix_with_trades: bool = Field(False, description="List (never send) the orders that would close a "
                                                           "balance drift, in the run's row, for an operator.")
    control_token: str | None = Field(
        None, description="Bearer token the worker asks of callers from other hosts for its account pages "
                          "(/positions /orders /risk /model) and POST /control (whose body must also be signed with "
                          "the control-signing key). Unset: one is generated on first use into <home>/control-token "
                          "(mode 0600).",
    )
    control_max_age_s: float = Field(
        30.0, gt=0, le=3600, description="A signed control message older (or further in the future) than this is "
                                         "refused as expired; its nonce is remembered this long against replays.")
    control_refused_audit_rows: int = Field(
        10, ge=0, le=10_000, description="Refused control messages written to audit_log per reason and window; the "
                                         "rest are counted (tradeloop_control_refused_total) and summarised in one "
                                         "row when the window closes.")
    control_refused_window_s: float = Field(
        60.0, gt=0, le=3600, description="The window of control_refused_audit_rows, in seconds.")

    # ---- autonomy: the loop's cadence (orchestration/automation.py); every schedule and sensor runs by default --
    cron_market_data: str = Field("10 0 * * *", description="Yesterday's market data, every symbol (cron, UTC).")
    cron_features: str = Field("40 0 * * *", description="Yesterday's model features and labels (cron, UTC).")
    cron_target_weights: str = Field("30 0 * * *", description="Re-optimise the portfolio's target weights for "
                                                              "yesterday's closes (cron, UTC).")
    cron_reports: str = Field("30 0 * * *", description="Warehouse build and tear sheets (cron, UTC).")
    cron_retrain: str = Field("30 2 * * *", description="Train a challenger and gate it (cron, UTC).")
    cron_tune: str = Field("0 4 * * 0", description="Tune strategy parameters (cron, UTC; weekly by default).")
    cron_strategy_performance: str = Field("50 0 * * *", description="Yesterday's strategy_performance rows "
                                                                       "(cron, UTC).")
    cron_maintenance: str = Field("15 3 * * *", description="Partitions of every time-series table for this month "
                                                           "and the next, then retention (cron, UTC).")
    cron_weights_freshness: str = Field("15 * * * *", description="Check that the trading target weights are not "
                                                                  "stale (cron, UTC).")
    retrain_days: int = Field(7, ge=1, description="Days of stored features a scheduled retrain trains on.")
    decay_interval_s: int = Field(900, ge=30, description="How often the decay/drift sensor looks at live results.")
    bootstrap_days: int = Field(14, ge=1, description="Days of history a fresh platform backfills by itself before "
                                                       "its first training (and keeps complete).")
    bootstrap_interval_s: int = Field(60, ge=5, description="How often the cold-start sensor checks its stages.")
    # ---- portfolio ----
    weights_max_age_hours: float = Field(
        26.0, gt=0, description="Target weights older than this (hours since the end of their day; fresh ones are "
                                "0-24 h old) fail the target_weights `weights_fresh` check, write an audit_log alert "
                                "and show as stale in the stream's GET /model and /metrics.")
    portfolio_turnover_penalty: float = Field(
        0.0, ge=0, description="Cost per unit of weight traded, sum |w - w_previous|, in the daily optimisation's "
                               "objective (units of the objective: annualised variance or return); 0 = none. "
                               "max_sharpe and risk_parity refuse it.")
    portfolio_min_trade: float = Field(
        0.0, ge=0, lt=1, description="Smallest weight change made: the daily optimisation keeps a symbol at its "
                                     "previous weight when the change would be smaller, and the stream's "
                                     "target_rebalance slot skips trades smaller than this fraction of its "
                                     "allocation. 0 = none.")
    portfolio_lot_method: Literal["fifo", "hifo"] = Field(
        "fifo", description="Tax lots the target_rebalance slot relieves on a sale: `fifo` (oldest first) or `hifo` "
                            "(highest cost first: the least realised gain).")
    portfolio_wash_sale_days: int = Field(
        0, ge=0, description="After a sale at a loss, the target_rebalance slot defers buying the symbol back for "
                             "this many days (wash-sale rule); 0 = off.")
    report_benchmark: str = Field(
        "equal_weight", description="Benchmark of the tear sheets' beta/alpha: `equal_weight` (the symbols the book "
                                    "traded, equal weights rebalanced daily) or one symbol, e.g. `BTC/USDT`.")
    # ---- releases ----
    release_poll_interval_s: float = Field(
        10.0, gt=0, description="How often the stream reads strategy_releases: a promoted or rolled-back release is "
                                "swapped into the slots running its strategy, a candidate's shadow started or "
                                "stopped, without a restart.")
    # ---- live venues (streaming/venues) ----
    venue: Literal["paper", "binance", "coinbase", "ib"] = Field(
        "paper", description="Where the stream's orders go: `paper` (simulated fills, the default), a live "
                             "exchange through ccxt: `binance` (spot) or `coinbase` (Advanced Trade), or `ib`: "
                             "Interactive Brokers through a logged-in TWS / IB Gateway (US stocks, symbols like "
                             "AAPL/USD; no API key: sandbox = the gateway's paper account, port 7497 or 4002).")
    venue_api_url: str = Field(
        "", description="Base URL overriding the exchange's own REST and WebSocket endpoints (a self-hosted "
                        "gateway, the tests' fake exchange), e.g. http://127.0.0.1:8001; empty = the exchange's URLs.")
    venue_account_budget_per_min: int = Field(
        600, ge=1, description="Requests per minute one account may make to its venue, shared by every task "
                               "(orders, queries, polling, resyncs); on top of ccxt's own rate limiter.")
    venue_stale_after_s: float = Field(
        30.0, gt=0, description="While orders are open, a user-data socket quiet for longer than this is "
                                "distrusted: open orders and fills are re-read over REST.")
    venue_unreachable_halt_s: float = Field(
        60.0, gt=0, description="A venue unreachable (network errors, 5xx, maintenance) for longer than this "
                                "halts the account; when it answers again, the account's open orders are cancelled.")
    venue_timeout_s: float = Field(10.0, gt=0, description="Longest wait for one REST answer from the venue.")
    ib_host: str = Field("127.0.0.1", description="TWS / IB Gateway API host (TRADELOOP_VENUE=ib).")
    ib_port: int = Field(
        7497, ge=1, le=65535, description="TWS / IB Gateway API port: TWS 7497 paper / 7496 live, IB Gateway 4002 "
                                          "paper / 4001 live.")
    ib_client_id: int = Field(
        1, ge=0, description="API client id of this worker at the gateway (one connection per id; order ids are "
                             "per client id).")

    # ---- lifecycle ----
    retention_bars_days: int | None = Field(
        None, ge=0, le=36500, description="Days of raw bars (market_data: the batch layer's and the stream's) the "
                                          "data_maintenance job keeps; older whole partitions (months) or TimescaleDB "
                                          "chunks (7 days) are dropped. 0 or unset: keep forever.")
    retention_clean_bars_days: int | None = Field(
        None, ge=0, le=36500, description="Days of clean bars (market_data_clean, the historical store that training, "
                                          "VaR and warm-up read) kept, as above. 0 or unset: keep forever.")
    retention_signals_days: int | None = Field(
        None, ge=0, le=36500, description="Days of stream signals (signals) kept, as above. 0 or unset: keep forever.")
    retention_risk_metrics_days: int | None = Field(
        None, ge=0, le=36500, description="Days of risk metrics (risk_metrics) kept, as above. 0 or unset: keep "
                                          "forever.")
    def retention_days(self) -> dict[str, int | None]:
        """The retention settings by data kind (storage.lifecycle.RETENTION_TABLES)."""
        return {"bars": self.retention_bars_days, "clean_bars": self.retention_clean_bars_days,
                "signals": self.retention_signals_days, "risk_metrics": self.retention_risk_metrics_days}

    # ---- modes and keys (deploy/secrets.py) ----
    mode: Literal["paper", "sandbox", "live"] = Field(
        "paper", description="`paper` (simulated fills, the default), `sandbox` (the venue's test network with "
                             "testnet keys) or `live` (real money). sandbox and live need TRADELOOP_VENUE and "
                             "TRADELOOP_VENUE_KEY (not for venue ib); live also TRADELOOP_LIVE_CONFIRM.")
    live_confirm: str = Field(
        "", description=f"Must be exactly {LIVE_CONFIRMATION!r} for TRADELOOP_MODE=live to start.")
    venue_key: str | None = Field(
        None, description="Name of the API key (in the key store, `tradeloop keys list`) that sandbox and live "
                          "modes trade with.")
    secrets_backend: Literal["env", "file", "vault"] = Field(
        "file", description="Key store: `file` (encrypted <home>/secrets.enc, passphrase from "
                            "TRADELOOP_SECRETS_PASSPHRASE or a prompt), `env` (TRADELOOP_KEY_<NAME>_* variables) "
                            "or `vault` (HashiCorp Vault KV v2; token from VAULT_TOKEN).")
    secrets_file: Path | None = Field(None, description="The encrypted key file. Unset: <home>/secrets.enc.")
    vault_url: str = Field(
        "http://127.0.0.1:8200", validation_alias=AliasChoices("TRADELOOP_VAULT_URL", "VAULT_ADDR"),
        description="Vault server of the `vault` key store (VAULT_ADDR is honoured too).")
    vault_mount: str = Field("secret", description="Mount point of Vault's KV v2 engine.")
    vault_path: str = Field("tradeloop/keys", description="Folder under the mount holding one secret per key.")

    # ---- the API gateway (orchestration/gateway) ----
    gateway_host: str = Field("127.0.0.1", description="Interface the API gateway binds (loopback by default; "
                                                       "expose it only with TLS: tls_cert_file/tls_key_file).")
    gateway_port: int = Field(18000, ge=0, le=65535, description="Port of the API gateway.")
    gateway_access_ttl_s: int = Field(900, ge=30, le=86400, description="Lifetime of a gateway access token "
                                                                       "(JWT), seconds.")
    gateway_refresh_ttl_s: int = Field(14 * 86400, ge=60, description="Lifetime of a refresh token, seconds; each "
                                                                      "use replaces it with a new one.")
    gateway_cors_origins: list[str] = Field([], description="Browser origins allowed to call the gateway (CORS), "
                                                           "e.g. [\"https://console.example\"]; empty: none.")
    gateway_max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body the gateway "
                                                                          "reads; larger ones get 413.")
    gateway_rate_per_min: int = Field(600, ge=1, description="Requests per minute one identity (and, before "
                                                             "it is known, one address) may make.")
    gateway_login_rate_per_min: int = Field(30, ge=1, description="Token requests per minute from one address.")
    gateway_login_max_failures: int = Field(5, ge=1, description="Wrong passwords in a row before a user is "
                                                                 "locked out.")
    gateway_lockout_s: int = Field(900, ge=1, description="How long a locked-out user stays locked, seconds.")
    gateway_workers: int = Field(0, ge=0, le=32, description="Gateway server processes; 0: one per CPU core "
                                                          "(at most 4). Rate limits are split among them.")
    gateway_identity_cache_s: float = Field(2.0, ge=0, le=10, description="How long a gateway process trusts "
                                            "its last answer that an identity is active, seconds (0: ask the "
                                            "database on every request). Disabling and revoking through tradeloop "
                                            "reach every gateway process at once (PostgreSQL NOTIFY); changes "
                                            "made behind tradeloop's back within this time.")
    tls_cert_file: Path | None = Field(None, description="TLS certificate (PEM) of the gateway; with "
                                                         "tls_key_file it serves HTTPS (`tradeloop certs`).")
    tls_key_file: Path | None = Field(None, description="TLS private key (PEM) of the gateway.")

    @model_validator(mode="after")
    def _mode_has_what_it_needs(self) -> "Settings":
        # the configuration alone decides this, so every entry point (CLI, `up`, a worker started by hand)
        # refuses the same way; whether the named key exists is deploy.secrets.check_mode's (it needs the store)
        if self.mode == "paper":
            if self.venue != "paper":
                raise ValueError(f"TRADELOOP_VENUE={self.venue} needs TRADELOOP_MODE=sandbox or live (paper mode "
                                 "trades the simulated venue)")
            return self
        missing = []
        if self.venue == "paper":
            missing.append("TRADELOOP_VENUE=binance|coinbase|ib")
        if not self.venue_key and self.venue != "ib":  # IB: the logged-in gateway holds the credentials
            missing.append("TRADELOOP_VENUE_KEY=<key name from `tradeloop keys list`>")
        if self.mode == "live" and self.live_confirm != LIVE_CONFIRMATION:
            missing.append(f"TRADELOOP_LIVE_CONFIRM={LIVE_CONFIRMATION!r}"
                           + (" (the value set differs)" if self.live_confirm else ""))
        if missing:
            raise ValueError(f"TRADELOOP_MODE={self.mode} needs {' and '.join(missing)}")
        if self.mode == "sandbox" and self.venue == "coinbase":
            # ccxt 4.5.90 has no Coinbase test URLs (docs/research/ccxt-live-venues.md, 1.9)
            raise ValueError("TRADELOOP_MODE=sandbox is not available for TRADELOOP_VENUE=coinbase (it has no test "
                             "network in ccxt): use binance's testnet, or paper")
        return self

    # ---- sim ----
    sim_structure: float = Field(
        1.0, ge=0, le=10,
        description="Strength of the sim market's predictable structure (order-flow imbalance leading returns: "
                    "short-horizon momentum; docs/SIM_VENUE.md) as a multiple of the default: 1 = default, "
                    "0 = the null market (nothing to learn; the gate must refuse every model). The historical "
                    "store's sim source and the stream's sim feed both use it.")

    @field_validator("database_url")
    @classmethod
    def _mask_database_password(cls, value: str | None) -> str | None:
        # a URL's password (a service's role, or the user's DATABASE_URL) never shows in a log line of this process
        if value:
            from sqlalchemy.engine import make_url

            from deploy import redaction

            try:
                redaction.register(make_url(value).password)
            except Exception:  # noqa: BLE001 - a malformed URL is reported where it is used
                pass
        return value

    @field_validator("history_start")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        from datetime import date

        date.fromisoformat(value)  # raises ValueError naming the value: not a YYYY-MM-DD date
        return value

    @field_validator("cron_market_data", "cron_features", "cron_target_weights", "cron_reports", "cron_retrain",
                     "cron_tune", "cron_weights_freshness", "cron_strategy_performance",
                     "cron_maintenance")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"not a five-field cron expression (minute hour day month weekday): {value!r}")
        return value

    @field_validator("symbols")
    @classmethod
    def _unified_symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s.count("/") != 1 or not all(s.split("/"))]
        if bad or not value:
            raise ValueError(f"symbols must be unified BASE/QUOTE names, got {bad or value}")
        return value

    @field_validator("var_scenario_step")
    @classmethod
    def _known_step(cls, value: str) -> str:
        if value not in ("1d", "1h"):
            raise ValueError(f"var_scenario_step must be '1d' or '1h', got {value!r}")
        return value

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def site_dir(self) -> Path:
        """Static site served by the `docs` service: Data Docs, tear sheets."""
        return self.home / "site"

    @property
    def docs_url(self) -> str:
        return f"http://{self.host}:{self.docs_port}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.host}:{self.mlflow_port}"

    def database_url_for(self, component: str) -> str:
        """The PostgreSQL URL ``component`` connects with: ``stream`` (the worker), ``batch`` (Dagster runs, dbt, the
        CLI's batch commands), ``read`` (read-only), ``gateway``, ``migrate`` (Alembic), ``mlflow``, ``dagster`` (their
        own databases), ``admin`` (the superuser). An external DATABASE_URL is the one URL of every component (its
        roles are the user's business); the embedded server has a role per component, whose password the secret
        provider holds (deploy/stack/pgroles.py). The URL carries the password: never print it."""
        from deploy import dbroles

        if component not in (dbroles.ADMIN, *dbroles.COMPONENTS):
            raise ValueError(f"no database role for component {component!r}; one of "
                             f"{', '.join((dbroles.ADMIN, *dbroles.COMPONENTS))}")
        if self.database_url:
            if component in dbroles.OWNS_DATABASE:
                from sqlalchemy.engine import make_url

                # same server, the component's own database, as before the roles
                return make_url(self.database_url).set(database=dbroles.OWNS_DATABASE[component]
                                                       ).render_as_string(hide_password=False)
            return self.database_url
        return dbroles.url(self, component)

    @property
    def gateway_url(self) -> str:
        scheme = "https" if self.tls_cert_file and self.tls_key_file else "http"
        return f"{scheme}://{self.gateway_host}:{self.gateway_port}"

    @property
    def worker_url(self) -> str:
        return f"http://{self.host}:{self.worker_port}"

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables: a child process (the supervisor) reads the same ones."""
        import json

        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            key = f"TRADELOOP_{name.upper()}"
            if isinstance(value, (list, dict)):
                env[key] = json.dumps(value)
            else:
                env[key] = str(value)
        return env

    def get_control_token(self) -> str:
        """The configured token, or the one generated for this home (created once, owner-only)."""
        if self.control_token:
            return self.control_token
        import os
        import secrets

        path = self.home / "control-token"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()


def error_lines(exc) -> list[str]:
    """A pydantic ValidationError of the settings as one line per problem, naming the variable."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        if not field:  # a rule across settings: its message names the variables
            lines.append(f"error: configuration: {error['msg'].removeprefix('Value error, ')}")
            continue
        lines.append(f"error: configuration: TRADELOOP_{field.upper()}: {error['msg']}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
