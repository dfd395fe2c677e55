"""What the commands share: the console, failing with a message, the shop's settings and store.

Kept apart from the command modules so that each of them opens the shop the same way
(`shop_engine`, over `store.db.open_shop_database`) and ends on a failure the same way (`fail`, and
`Commands` for the shop's own errors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine
from typer._click import Context  # typer runs its own copy of click: its groups take this Context
from typer.core import TyperGroup

from liandong.chain.deployment import DeploymentRecord
from liandong.core.config import Settings
from liandong.core.errors import LiandongError
from liandong.store.db import open_shop_database

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Prints `message` on stderr and returns the exit (code 1) to raise."""
    errors.print(message, markup=False, highlight=False)
    return typer.Exit(code=1)


class Commands(TyperGroup):
    """A command group in which a command's `LiandongError` ends it as `fail` does (its message on
    stderr, exit code 1): the one place the CLI turns the shop's errors into exits. Every group
    takes it (`typer.Typer(cls=Commands)`), so a group run on its own ends the same way."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except LiandongError as error:
            raise fail(str(error)) from None


def chain_url(settings: Settings) -> str:
    """The configured chain, or the embedded anvil of `liandong up`."""
    return settings.rpc_url or f"http://127.0.0.1:{settings.anvil_port}"


def deployment(settings: Settings) -> DeploymentRecord:
    """The shop's deployment record, or a message saying how to get one."""
    try:
        return DeploymentRecord.load(settings.deployment_file)
    except FileNotFoundError:
        raise fail(
            f"no deployment record at {settings.deployment_file}: `liandong up` makes one on a local "
            "chain, `ape run deploy` on a real one"
        ) from None


@contextlib.contextmanager
def shop_engine(settings: Settings | None = None) -> Iterator[tuple[Settings, Engine]]:
    """The shop's settings and its migrated database."""
    settings = settings or Settings()
    engine = open_shop_database(settings)
    try:
        yield settings, engine
    finally:
        engine.dispose()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
