"""The deployment record: what `ape run deploy` writes and the backend reads to find its escrow.

One JSON file per shop (`data_dir/deployment.json`) with the addresses, the deployment block and
the ABI, so a node and the commands need nothing from the build directory of the deploying machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The source checkout: where ape-config.yaml, contracts/ and scripts/ are."""


class DeploymentRecord(BaseModel):
    """One escrow deployment on one chain.

    The ABI travels with the record so that the backend, the indexer and auditors' tools need
    nothing from the build directory of the machine that deployed.
    """

    chain_id: int
    escrow: str
    block_number: int
    transaction_hash: str
    owner: str
    operator: str
    payout: str
    fee_recipient: str
    fee_bps: int
    abi: list[dict[str, Any]]
    tokens: dict[str, str] = Field(
        default_factory=dict, description="Demo or accepted ERC-20 tokens by symbol."
    )

    @classmethod
    def load(cls, path: Path) -> DeploymentRecord:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def save(self, path: Path) -> None:
        """Writes atomically, so a reader never sees half a record."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(json.dumps(self.model_dump(), indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
