"""`python -m liandong` is the same command line as `liandong` (for a Python without the script)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_python_dash_m_liandong_is_the_command_line() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "liandong", "--help"],
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Usage: python -m liandong" in shown.stdout
    commands = {line.split()[1] for line in shown.stdout.splitlines() if line.startswith("│ ")}
    assert {"up", "node", "audit", "vault"} <= commands, shown.stdout
