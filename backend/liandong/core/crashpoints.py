"""Crash points for the fault tests: `LIANDONG_CRASH_AT=name` makes the process SIGKILL itself at the
point called `name`, as a power cut there would. Unset (always, outside the tests), they do nothing.

Points: `settlement-signed` (a settlement transaction signed and stored, not yet sent),
`delivery-committed` (keys handed out and committed, the buyer not told yet).
"""

from __future__ import annotations

import os
import signal

ENV = "LIANDONG_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
