"""Running `liandong` as a user does: a child process, its output read, stopped by a signal."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """One `liandong` command to its end."""
    return subprocess.run(
        ["liandong", *args], env=env, input=stdin, capture_output=True, text=True, timeout=180, check=False
    )


def up_env(data_dir: Path, anvil_port: int, api_port: int) -> dict[str, str]:
    """The environment of a shop in `data_dir`: `up` and the commands run against it read it alike."""
    return {
        **os.environ,
        "LIANDONG_DATA_DIR": str(data_dir),
        "LIANDONG_ANVIL_PORT": str(anvil_port),
        "LIANDONG_API_PORT": str(api_port),
        "COLUMNS": "250",
    }


def start_up(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["liandong", "up"],
        cwd=Path(env["LIANDONG_DATA_DIR"]).parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until_ready(shop: subprocess.Popen[str]) -> str:
    """What `up` printed until it said the shop is up (it prints that once /healthz answers)."""
    assert shop.stdout is not None
    seen = []
    for line in shop.stdout:
        seen.append(line)
        if "Press Ctrl-C" in line:
            return "".join(seen)
    raise AssertionError("liandong up exited before it was ready:\n" + "".join(seen))


def children(pid: int) -> list[int]:
    """The pids of the processes `pid` started (anvil, for `up`), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            _state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(parent) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(shop: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str]:
    """Signals `up` and waits for it: its exit code and what it printed meanwhile. If it hangs, it
    and the chain it started are killed by pid."""
    started = children(shop.pid)
    shop.send_signal(signum)
    try:
        rest, _ = shop.communicate(timeout=30)
        return shop.returncode, rest
    finally:
        if shop.poll() is None:
            shop.kill()
            shop.wait()
            for pid in started:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
