"""All settings in one place, read from `LIANDONG_*` environment variables or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The shop's configuration. Secrets come only from here, never from code."""

    model_config = SettingsConfigDict(env_prefix="LIANDONG_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".liandong")
    """Where the shop keeps its state: the deployment record, the local chain, the database."""

    rpc_url: str | None = None
    """The chain's JSON-RPC endpoint. Unset: `liandong up` starts an embedded anvil."""

    ws_url: str | None = None
    """The chain's WebSocket endpoint for head subscriptions. Unset: `rpc_url` with ws:// instead."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    anvil_port: int = 8545
    """Port of the embedded anvil (0 picks a free one)."""

    anvil_block_time: float | None = None
    """Seconds between blocks of the embedded anvil; unset mines each transaction at once."""

    database_url: str | None = None
    """SQLAlchemy URL of the shop's database. Unset: SQLite in `data_dir`. PostgreSQL to share it."""

    master_key: str | None = None
    """The vault's master key, base64 (32 bytes). Unset: read from `master_key_file`."""

    master_key_file: Path | None = None
    """File holding the master key. Unset: `data_dir/master.key`, created on first use."""

    operator_key: str | None = None
    """The operator's private key (hex): signs quotes, records deliveries, refunds. Keep it hot but
    scoped: the escrow lets it settle orders, never take funds."""

    confirmations: int = 0
    """Blocks after the payment's block before its keys are delivered (0: on inclusion)."""

    large_order_confirmations: int = 3
    """Confirmations for orders at or above their token's threshold in `large_order_thresholds`."""

    large_order_thresholds: dict[str, int] = {}
    """Token address (0x0…0 for the native coin) → amount in base units that makes an order large."""

    settlement_batch_interval: float = 0.25
    """Seconds between on-chain settlement batches (deliveries and refunds)."""

    settlement_batch_size: int = 50
    """At most this many orders per settlement transaction."""

    stuck_transaction_seconds: float = 30.0
    """A settlement transaction not mined for this long is re-sent with a higher fee."""

    public_url: str | None = None
    """The shop's address as buyers reach it (links in messages, the Sign-In with Ethereum domain).
    Unset: http://api_host:api_port."""

    cors_origins: list[str] = []
    """Origins allowed to call the API from a browser; empty (closed) by default."""

    quote_rate_limit: str = "30/minute"
    """Quotes per client address, as "N/second", "N/minute" or "N/hour"."""

    key_rate_limit: str = "60/minute"
    """Reads of orders and keys, and sign-in attempts, per client address."""

    latency_alert_seconds: float = 10.0
    """The efficiency board's threshold: pay→delivery slower than this is slow, and alerts."""

    merchant_session_hours: float = 12.0
    buyer_session_hours: float = 24.0

    smtp_host: str | None = None
    """SMTP server for the e-mail channel; unset disables the channel."""
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_sender: str = "shop@localhost"
    smtp_timeout: float = 10.0

    webhook_url: str | None = None
    """Endpoint that receives signed delivery callbacks; unset disables the channel."""
    webhook_secret: str | None = None
    """HMAC-SHA256 key of the webhook's signature; required with `webhook_url`."""
    webhook_timeout: float = 5.0
    webhook_attempts: int = 3

    sms_gateway_url: str | None = None
    """HTTP gateway that sends text messages; unset disables the channel."""
    sms_gateway_token: str | None = None
    sms_timeout: float = 5.0

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def public_host(self) -> str:
        """The authority (host[:port]) of `resolved_public_url`: the Sign-In with Ethereum domain."""
        return urlsplit(self.resolved_public_url).netloc

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"

    @property
    def resolved_ws_url(self) -> str | None:
        if self.ws_url or self.rpc_url is None:
            return self.ws_url
        return self.rpc_url.replace("https://", "wss://").replace("http://", "ws://")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'liandong.db').resolve()}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"
