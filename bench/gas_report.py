#!/usr/bin/env python3
"""Real transaction gas of LiandongEscrow's main operations, against the gas targets.

Why transactions and not a forge gas test: `gasleft()` deltas inside a test miss the intrinsic
21,000, the calldata cost and the refunds, and see storage warmed by earlier calls in the same
test, so they understate what a buyer or the shop actually pays. This script therefore starts a
throw-away anvil chain, broadcasts tests/forge/GasScenario.s.sol (one transaction per operation,
from anvil's development accounts), and reads `gasUsed` from the receipts.

The scenario labels the transactions it measures; see GasScenario.s.sol for the steady state it
puts the chain in first (token already escrowed, balances already non-zero, and so on). It also
refunds a batch of 50 native orders twice, the second time with one buyer a contract whose
`receive()` reverts with 300 KB: the difference is what one hostile buyer can cost the shop.

Targets are figures to watch, not assertions: a MISS is printed and the exit status stays 0.
The exit status is non-zero only when something fails to run (anvil, forge, a transaction).

Usage: make bench   (or bench/gas_report.py with .venv's python and .toolchain/bin on PATH)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from liandong.chain.rpc import rpc_call
from liandong.devtools.devnet import Anvil

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "tests/forge/GasScenario.s.sol:GasScenario"
FORGE_TIMEOUT_S = 600

# Step label (as GasScenario.s.sol writes it) -> (what is compared, highest acceptable gas).
TARGETS = {
    "pay (native)": ("per transaction", 60_000),
    "pay (ERC-20, steady state)": ("per transaction", 85_000),
    "recordDeliveries (batch)": ("per order", 12_000),
}


class BenchError(Exception):
    """Something needed for the measurement failed to run."""


@dataclass
class Step:
    label: str
    orders: int
    gas_used: int

    @property
    def per_order(self) -> int:
        return round(self.gas_used / self.orders)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"`{name}` not found on PATH (try: export PATH={REPO_ROOT}/.toolchain/bin:$PATH)")
    return path


def run_scenario(forge: str, url: str, broadcast_dir: Path) -> tuple[Path, Path | None]:
    """Broadcasts the scenario; returns the broadcast log and forge's 'sensitive' cache file."""
    # FOUNDRY_BROADCAST sends the broadcast log to a temporary directory instead of ./broadcast.
    env = dict(os.environ, FOUNDRY_BROADCAST=str(broadcast_dir))
    command = [forge, "script", SCENARIO, "--rpc-url", url, "--broadcast", "--slow", "--json"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=FORGE_TIMEOUT_S
    )
    if result.returncode != 0:
        raise BenchError(
            f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    # The last JSON line says where forge wrote the log (and the cache file holding the RPC URL).
    for line in reversed(result.stdout.splitlines()):
        try:
            summary = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(summary, dict) and "transactions" in summary:
            sensitive = summary.get("sensitive")
            return Path(summary["transactions"]), Path(sensitive) if sensitive else None
    raise BenchError(f"forge script printed no broadcast summary:\n{result.stdout[-2000:]}")


def remove_sensitive_cache(path: Path | None) -> None:
    """Deletes the cache directory forge keeps for this script's runs (run-latest.json and
    run-<timestamp>.json per chain, holding the RPC URL): each report run would add one more."""
    if path is None:
        return
    script_cache = path.parent.parent  # <cache_path>/GasScenario.s.sol/<chain id>/run-latest.json
    if script_cache.name == Path(SCENARIO.split(":")[0]).name:
        shutil.rmtree(script_cache, ignore_errors=True)


def measured_steps(log_path: Path) -> list[Step]:
    """Pairs the scenario's `label;orders|` records with the receipts, keeps the labelled ones."""
    log = json.loads(log_path.read_text())
    records = log["returns"]["labels"]["value"].split("|")[:-1]
    transactions = log["transactions"]
    if len(records) != len(transactions):
        raise BenchError(f"scenario labelled {len(records)} transactions but sent {len(transactions)}")
    receipts = {receipt["transactionHash"]: receipt for receipt in log["receipts"]}
    steps = []
    for record, transaction in zip(records, transactions, strict=True):
        receipt = receipts.get(transaction["hash"])
        if receipt is None or int(receipt["status"], 16) != 1:
            raise BenchError(
                f"transaction {transaction['hash']} ({record or 'set-up'}) failed or has no receipt"
            )
        label, orders = record.rsplit(";", 1)
        if label:
            steps.append(Step(label, int(orders), int(receipt["gasUsed"], 16)))
    return steps


def print_report(steps: list[Step], hardfork: str) -> None:
    print(f"LiandongEscrow transaction gas (receipts' gasUsed; anvil, hardfork {hardfork})\n")
    header = f"{'operation':<44} {'orders':>6} {'tx gas':>9} {'per order':>9}  target"
    print(header)
    print("-" * (len(header) + 24))
    for step in steps:
        target = ""
        if step.label in TARGETS:
            basis, limit = TARGETS[step.label]
            measured = step.per_order if basis == "per order" else step.gas_used
            verdict = "PASS" if measured <= limit else "MISS"
            target = f"{verdict} (<= {limit:,} {basis})"
        print(f"{step.label:<44} {step.orders:>6} {step.gas_used:>9,} {step.per_order:>9,}  {target}")
    missing = sorted(set(TARGETS) - {step.label for step in steps})
    if missing:
        raise BenchError(f"the scenario measured no step named {missing}")


def main() -> int:
    forge = require_binary("forge")
    sensitive = None
    try:
        with Anvil() as node:
            node_info = rpc_call(node.http_url, "anvil_nodeInfo")
            hardfork = node_info.get("hardFork", "unknown") if isinstance(node_info, dict) else "unknown"
            with tempfile.TemporaryDirectory(prefix="liandong-gas-") as broadcast_dir:
                log_path, sensitive = run_scenario(forge, node.http_url, Path(broadcast_dir))
                steps = measured_steps(log_path)
        print_report(steps, hardfork)
    finally:
        remove_sensitive_cache(sensitive)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, OSError, RuntimeError, subprocess.SubprocessError) as error:
        print(f"gas_report: {error}", file=sys.stderr)
        sys.exit(1)
