"""Two real database connections racing: a transaction held just before its commit, its writes done
and its row locks taken, while the test's own thread runs the other side of the race."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlmodel import Session


@dataclass
class HeldCommits:
    holding: threading.Event = field(default_factory=threading.Event)
    """Set once a commit is waiting."""
    release: threading.Event = field(default_factory=threading.Event)
    """Set it to let the waiting commits (and every later one) go."""


@contextmanager
def commits_of_other_threads_held() -> Iterator[HeldCommits]:
    """Inside: a `Session` commit in any thread but the caller's waits just before it until
    `release` is set (10 s at most)."""
    caller = threading.current_thread()
    held = HeldCommits()

    def hold_before_commit(session: Session) -> None:
        if threading.current_thread() is not caller and not held.release.is_set():
            held.holding.set()
            held.release.wait(10)

    event.listen(Session, "before_commit", hold_before_commit)
    try:
        yield held
    finally:
        event.remove(Session, "before_commit", hold_before_commit)
