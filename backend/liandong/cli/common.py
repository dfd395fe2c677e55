"""What the commands share: the console, failing with a message, the shop's settings and store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from liandong.chain.deployment import DeploymentRecord
from liandong.core.config import Settings
from liandong.store.db import make_engine, migrate, prepare_data_dir

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Prints `message` on stderr and returns the exit (code 1) to raise."""
    errors.print(message, markup=False, highlight=False)
    return typer.Exit(code=1)


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
    url = settings.resolved_database_url
    prepare_data_dir(settings.data_dir)
    migrate(url)
    engine = make_engine(url)
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
