"""A local anvil node for `liandong up`, the tests and the benchmarks.

The node is a child process that we own by pid: it is stopped with the process that started it,
and a port is only reused once the node on it has answered.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from liandong.chain.rpc import rpc_call

# anvil's well-known dev accounts come from this mnemonic; never fund them on a real chain.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_ID = 31337
"""anvil's default chain id: "Local chain A" in the profiles."""
SECOND_DEV_CHAIN_ID = 31339
"""The demo's second local chain: "Local chain B" in the profiles (no network uses the id)."""


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Anvil:
    """An anvil process on 127.0.0.1; use it as a context manager or call start/stop."""

    port: int = 0
    block_time: float | None = None
    chain_id: int = DEV_CHAIN_ID
    state_file: Path | None = None
    """Chain state to load at start and save at stop, so a restarted node keeps its blocks."""
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("anvil")
        if binary is None:
            raise FileNotFoundError("anvil is not on PATH: run `make setup` (it installs foundry from npm)")
        args = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        args += ["--mnemonic", DEV_MNEMONIC, "--chain-id", str(self.chain_id)]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        if self.state_file is not None:
            args += ["--state", str(self.state_file)]
        return args + self.extra_args

    def start(self, timeout: float = 15.0) -> Anvil:
        if self.port == 0:
            self.port = free_port()
        # In a session of its own: a terminal's Ctrl-C reaches only the process that started it,
        # which stops the chain last (`liandong up` stops its node first), by pid.
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited with code {self.process.returncode} on port {self.port}")
            try:
                rpc_call(self.http_url, "eth_chainId", timeout=1.0)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
                continue
            return self
        self.stop()
        raise TimeoutError(f"anvil did not answer on port {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the node gracefully (so `--state` is written), killing it if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # anvil dumps `--state` on Ctrl-C, not on SIGTERM
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
