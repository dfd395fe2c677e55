"""All settings in one place, read from `LIANDONG_*` environment variables or a `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The shop's configuration. Secrets come only from here, never from code."""

    model_config = SettingsConfigDict(env_prefix="LIANDONG_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".liandong")
    """Where the shop keeps its state: the deployment record, the local chain, the database."""

    rpc_url: str | None = None
    """The chain's JSON-RPC endpoint. Unset: `liandong up` starts an embedded anvil."""

    anvil_port: int = 8545
    """Port of the embedded anvil (0 picks a free one)."""

    anvil_block_time: float | None = None
    """Seconds between blocks of the embedded anvil; unset mines each transaction at once."""

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"
