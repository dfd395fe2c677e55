"""`liandong verify-contract` and `ape run verify` match a fresh deployment and refuse other code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from liandong.chain.deployment import PROJECT_ROOT
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil

from tests.cli.runner import run


def test_a_fresh_deployment_matches_and_other_code_does_not(tmp_path: Path) -> None:
    with Anvil() as anvil:
        record = deploy_local_escrow(anvil.http_url, tmp_path / "deployment.json")
        out = tmp_path / "verification"
        matched = run(
            dict(os.environ),
            "verify-contract",
            "--rpc",
            anvil.http_url,
            "--address",
            record.escrow,
            "--out",
            str(out),
        )
        assert matched.returncode == 0, matched.stdout + matched.stderr
        assert "match:" in matched.stdout
        source_input = json.loads((out / "standard-json-input.json").read_text())
        assert "contracts/LiandongEscrow.sol" in source_input["sources"]
        assert source_input["settings"]["optimizer"] == {"enabled": True, "runs": 10000}
        assert json.loads((out / "metadata.json").read_text())["language"] == "Solidity"

        token = record.tokens["DUSD"]
        refused = run(
            dict(os.environ),
            "verify-contract",
            "--rpc",
            anvil.http_url,
            "--address",
            token,
            "--out",
            str(out),
        )
        assert refused.returncode == 1
        assert "MISMATCH" in refused.stderr

        ape = subprocess.run(
            [
                "ape",
                "run",
                "verify",
                "--network",
                anvil.http_url,
                "--address",
                record.escrow,
                "--out",
                str(out),
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ape.returncode == 0, ape.stdout + ape.stderr
        assert f"match: {record.escrow}" in ape.stdout
