"""All settings in one place, read from `LIANDONG_*` environment variables or a `.env` file.

One pydantic `Settings` for every process (node, CLI, tools) so a setting means the same everywhere;
secrets come only from here, and defaults that depend on others (the database URL, the public URL,
the master key file) are resolved by its properties, never by the callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChainSettings(BaseModel):
    """One more chain a node serves besides `Settings.rpc_url`'s: an entry of `Settings.chains`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """The chain as its profile names it ("Base", "Arbitrum One", "Local chain B"), or its chain id."""
    rpc_url: str
    """Its JSON-RPC endpoint."""
    rpc_urls: list[str] = []
    """More endpoints of the same chain, failed over by health as with `Settings.rpc_urls`."""
    ws_url: str | None = None
    """WebSocket endpoint for heads. Unset: `rpc_url` with ws:// instead; `"none"`: the provider
    has no WebSocket, heads are polled over HTTP at the pace of the chain's block time."""
    deployment: Path | None = None
    """The escrow's deployment record on this chain. Unset: `data_dir/deployments/<chain id>.json`."""
    confirmations: int | Literal["safe", "finalized"] | None = None
    """This chain's confirmation policy. Unset: `Settings.confirmations`, else the chain's profile."""

    @property
    def resolved_ws_url(self) -> str | None:
        return _ws_of(self.ws_url, self.rpc_url)


NO_WEBSOCKET = "none"
"""`ws_url` of a provider without WebSocket: heads over HTTP alone."""


def _ws_of(ws_url: str | None, rpc_url: str | None) -> str | None:
    """The WebSocket endpoint to subscribe to heads on; None: heads over HTTP alone."""
    if ws_url == NO_WEBSOCKET:
        return None
    if ws_url or rpc_url is None:
        return ws_url
    return rpc_url.replace("https://", "wss://").replace("http://", "ws://")


class Settings(BaseSettings):
    """The shop's configuration. Secrets come only from here, never from code."""

    model_config = SettingsConfigDict(env_prefix="LIANDONG_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".liandong")
    """Where the shop keeps its state: the deployment record, the local chain, the database."""

    rpc_url: str | None = None
    """The chain's JSON-RPC endpoint. Unset: `liandong up` starts an embedded anvil."""

    rpc_urls: list[str] = []
    """More JSON-RPC endpoints of the same chain (a JSON list), after `rpc_url`: the node's indexer
    and settlement sender fail over among them by health; the indexer asks none for a block above
    the head it reported."""

    ws_url: str | None = None
    """The chain's WebSocket endpoint for head subscriptions. Unset: `rpc_url` with ws:// instead;
    `"none"`: the provider has no WebSocket, heads are polled over HTTP at the pace of the chain's
    block time."""

    chains: list[ChainSettings] = []
    """More chains the node serves at once (a JSON list of `ChainSettings`), after the chain of
    `rpc_url` and the deployment record (the shop's first chain, where prices and quotes that
    name no chain go). Each has its own escrow, indexer, settlement sender and confirmation policy:
    `[{"name": "Base", "rpc_url": "https://…", "deployment": "base.json"}]`."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    anvil_port: int = 8545
    """Port of the embedded anvil (0 picks a free one)."""

    anvil_block_time: float | None = None
    """Seconds between blocks of the first embedded anvil ("Local chain A"); unset: its profile's
    (1 s). 0 mines each transaction at once."""

    second_anvil_port: int = 0
    """Port of the second embedded anvil ("Local chain B", 2 s blocks); 0 picks a free one."""

    database_url: str | None = None
    """SQLAlchemy URL of the shop's database. Unset: SQLite in `data_dir`. PostgreSQL to share it."""

    master_key: SecretStr | None = None
    """The vault's master key, base64 (32 bytes). Unset: read from `master_key_file`."""

    master_key_file: Path | None = None
    """File holding the master key. Unset: `data_dir/master.key`, created on first use."""

    operator_key: SecretStr | None = None
    """The operator's private key (hex): signs quotes, records deliveries, refunds. Keep it hot but
    scoped: the escrow lets it settle orders, never take funds. Optional once `liandong escrow
    rotate-operator` put the escrow's operator key in the keystore: nodes sign with whichever key
    the escrow names."""

    operator_check_seconds: float = 3.0
    """How often a node reads the escrow's `operator()`, to switch keys after a rotation."""

    confirmations: int | Literal["safe", "finalized"] | None = None
    """The confirmation policy of every chain without its own override: blocks after the payment's
    block before its keys are delivered (0: on inclusion), or the block tag (`safe`, `finalized`)
    the payment's block must be at or under. Unset: each chain's profile default
    (`liandong.chain.policy.policy_for`); a chain no profile knows then needs it set."""

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

    delivery_window_seconds: int = 24 * 60 * 60
    """How long after a quote expires its keys may still be delivered (the quote's delivery
    deadline); at least the escrow's MIN_DELIVERY_WINDOW (1 hour). After the deadline the escrow
    refuses to record the delivery and lets the buyer refund."""

    delivery_safety_margin_seconds: float = 15 * 60
    """An order whose delivery deadline is nearer than this when its keys would go out is refunded
    instead of delivered: the delivery might not be recorded on-chain before the deadline, and the
    buyer could then both read the keys and take a refund."""

    settlement_lag_alert_seconds: float = 300.0
    """Alert when a delivered order's commitment is still not on-chain this long after delivery."""

    operator_balance_alert_batches: int = 20
    """Alert when the operator's balance would not pay for this many full settlement batches."""

    alert_check_seconds: float = 30.0
    """How often the leader looks at the alerts and tells the merchant's webhook about new ones."""

    alert_repeat_seconds: float = 3600.0
    """An alert that lasts is told to the merchant's webhook again this often."""

    settlement_rescan_seconds: float = 2.0
    """How often the leader rescans the store for settlements no one handed it (deliveries of other
    nodes or of a previous run, refunds asked for from the CLI); a NOTIFY usually brings them sooner."""

    leader_lease_seconds: float = 10.0
    """On PostgreSQL, how long the leader's session may go unheard before the server ends it (and
    with it the leader lock): a frozen or cut-off leader is replaced after about this long. The
    leader checks its lock every second, so keep it well above that."""

    public_url: str | None = None
    """The shop's address as buyers reach it (links in messages, the Sign-In with Ethereum domain).
    Unset: http://api_host:api_port."""

    cors_origins: list[str] = []
    """Origins allowed to call the API from a browser; empty (closed) by default."""

    quote_rate_limit: str = "30/minute"
    """Quotes per client address, as "N/second", "N/minute" or "N/hour"."""

    key_rate_limit: str = "60/minute"
    """Reads of an order's keys (`POST /api/orders/{id}/keys`) per client address."""

    status_rate_limit: str = "300/minute"
    """Reads of an order's state and a wallet's orders per client address (a carrier NAT puts
    many buyers behind one address; each page load reads once)."""

    signin_rate_limit: str = "30/minute"
    """Sign-in attempts per client address: wallet challenges and sessions, merchant log-ins."""

    ws_rate_limit: str = "60/minute"
    """WebSocket opens (order pages, the merchant feed) per client address."""

    ws_max_per_client: int = 20
    """Open WebSockets per client address; more are refused until one closes."""

    ws_max_total: int = 2000
    """Open WebSockets on this node in all."""

    ws_auth_seconds: float = 10.0
    """An order page's WebSocket must send its order token or wallet session within this time."""

    max_json_bytes: int = 64 * 1024
    """Largest request body but a key import's (which streams up to 64 MiB); larger: 413."""

    request_read_seconds: float = 30.0
    """A request body that stalls this long between two chunks is dropped (slow uploads)."""

    keep_alive_seconds: float = 5.0
    """An idle keep-alive HTTP connection is closed after this long."""

    in_site_ack_seconds: float = 5.0
    """How long the in-site channel waits for the buyer's open order page to confirm that it
    decrypted the keys; without that, the next channel is tried."""

    login_lockout_after: int = 5
    """Failed passwords in a row after which a merchant account is locked for a while."""

    login_lockout_seconds: float = 30.0
    """The first lock's length; each further failure doubles it, up to an hour. A correct
    password after the lock ends resets the count."""

    latency_alert_seconds: float = 10.0
    """The efficiency board's threshold: pay→delivery slower than this is slow, and alerts."""

    merchant_session_hours: float = 12.0
    buyer_session_hours: float = 24.0

    smtp_host: str | None = None
    """SMTP server for the e-mail channel; unset disables the channel."""
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None
    """STARTTLS before anything else is sent. Unset: on for every server but a loopback one
    (`localhost`, 127.0.0.0/8, ::1 — a name that merely resolves there counts as remote). A server
    that cannot STARTTLS is then refused, never talked to in clear."""
    smtp_ssl: bool = False
    """Implicit TLS from the first byte (SMTPS, usually port 465) instead of STARTTLS."""
    smtp_allow_plaintext: bool = False
    """Allows a plaintext connection (and login) to a server that is not loopback, together with
    `smtp_starttls` false. Off: the e-mail channel refuses to send rather than put the login or the
    message on the wire in clear."""
    smtp_sender: str = "shop@localhost"
    smtp_timeout: float = 10.0

    webhook_url: str | None = None
    """Endpoint that receives signed delivery callbacks; unset disables the channel."""
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key of the webhook's signature; required with `webhook_url`."""
    webhook_timeout: float = 5.0
    webhook_attempts: int = 3

    sms_gateway_url: str | None = None
    """HTTP gateway that sends text messages; unset disables the channel."""
    sms_gateway_token: SecretStr | None = None
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
        return _ws_of(self.ws_url, self.rpc_url)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'liandong.db').resolve()}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"
