"""The one settings object. Environment variables with the TRADELOOP_ prefix, or a `.env` file.

Two well-known variables are honoured without the prefix because every tool in this space uses them:
`DATABASE_URL` (use that PostgreSQL, start none) and `KAFKA_BOOTSTRAP` (use that Kafka cluster,
start none).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADELOOP_", env_file=".env", extra="ignore")

    home: Path = Field(REPO_ROOT / ".tradeloop", description="Where the embedded stack keeps its state.")
    host: str = Field("127.0.0.1", description="Interface the embedded services listen on.")

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "TRADELOOP_DATABASE_URL"),
        description="External PostgreSQL (SQLAlchemy URL). Unset: the embedded server is started.",
    )
    kafka_bootstrap: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "TRADELOOP_KAFKA_BOOTSTRAP"),
        description="External Kafka bootstrap servers (host:port,...). Unset: the embedded broker is started.",
    )

    pg_port: int = Field(15432, description="Port of the embedded PostgreSQL (0 = pick a free one).")
    pg_bin_dir: Path | None = Field(None, description="Directory holding initdb/pg_ctl/postgres to use.")
    pg_database: str = "tradeloop"
    pg_user: str = "tradeloop"

    broker_port: int = Field(19092, description="Port of the embedded Kafka-protocol broker (Tansu).")
    topic_partitions: int = Field(4, description="Partition count of every topic (one count for all).")

    mlflow_port: int = Field(15000, description="MLflow tracking server / UI port.")
    dagster_port: int = Field(13000, description="Dagster UI port.")
    worker_port: int = Field(16066, description="Faust worker web port (/health, /metrics).")

    docs_port: int = Field(18080, description="Static site port: Data Docs and reports, readable offline.")

    start_timeout_s: float = Field(120.0, description="How long `up` waits for one service to be healthy.")

    symbols: list[str] = Field(["BTC/USDT", "ETH/USDT", "SOL/USDT"],
                               description="Symbols of the historical store (unified BASE/QUOTE).")
    history_start: str = Field("2026-11-01", description="First daily partition of the historical store (UTC).")
    market_source: str = Field("sim", description="Where history comes from: `sim`, or a ccxt exchange id.")
    sim_seed: int = Field(7, description="Seed of the simulated venue: same seed, same market.")

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
