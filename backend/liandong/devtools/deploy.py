"""Deploying a local escrow for `up`, the tests and the benchmarks.

It runs the merchants' own `ape run deploy` against the local chain, so there is one deploy path and
the record it writes is the one a real deployment writes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from liandong.chain.deployment import PROJECT_ROOT, DeploymentRecord


def deploy_local_escrow(rpc_url: str, record_path: Path) -> DeploymentRecord:
    """Deploys the escrow and a demo token to a dev node with its first dev account.

    Reuses the deployment in `record_path` when it is still on that chain.
    """
    ape = shutil.which("ape")
    if ape is None:
        raise FileNotFoundError("ape is not on PATH: run `make setup`")
    command = [ape, "run", "deploy", "--network", rpc_url, "--account", "TEST::0", "--demo-token"]
    command += ["--record", str(record_path.resolve())]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"deploying the escrow failed:\n{result.stdout}\n{result.stderr}")
    return DeploymentRecord.load(record_path)
