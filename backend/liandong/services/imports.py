"""Key imports over HTTP as jobs, so a dashboard can show the progress of a large file.

The import itself is the vault's all-or-nothing `import_keys`, run in a worker thread; a job only
adds a progress record that the merchant polls. Jobs live in the node's memory: they are a view of
work in progress, and the import's result is in the database either wholly or not at all.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.store.models import utcnow
from liandong.vault.importer import ImportReport, KeyImportError, import_keys
from liandong.vault.service import Vault

MAX_FINISHED_JOBS = 100


class JobState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportJob(BaseModel):
    id: str
    product_id: int
    source_name: str
    state: JobState = JobState.RUNNING
    stage: str = "reading"
    done: int = 0
    total: int = 0
    imported: int | None = None
    duplicates_in_file: int | None = None
    duplicates_existing: int | None = None
    error: str | None = None
    """Why nothing was imported (names the line, never the key)."""
    started_at: str = ""


class ImportJobs:
    def __init__(self, engine: Engine, vault: Vault, on_imported: Callable[[int, int], None]) -> None:
        self.engine = engine
        self.vault = vault
        self.on_imported = on_imported
        """Hears (product id, keys added) after a successful import: the stock feed."""
        self._jobs: dict[str, ImportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def get(self, job_id: str) -> ImportJob | None:
        return self._jobs.get(job_id)

    def start(self, product_id: int, source_name: str, data: bytes, fmt: Literal["txt", "csv"]) -> ImportJob:
        job = ImportJob(
            id=secrets.token_hex(8),
            product_id=product_id,
            source_name=source_name,
            started_at=utcnow().isoformat(),
        )
        self._forget_old()
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, data, fmt))
        self._tasks[job.id] = task  # the loop keeps only weak references to tasks
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def wait(self, job: ImportJob, seconds: float) -> ImportJob:
        """The job once it ended, or as it stands after `seconds`: small files answer at once."""
        task = self._tasks.get(job.id)
        if task is not None:
            await asyncio.wait({task}, timeout=seconds)
        return job

    async def _run(self, job: ImportJob, data: bytes, fmt: Literal["txt", "csv"]) -> None:
        try:
            report = await asyncio.to_thread(self._import, job, data, fmt)
        except KeyImportError as error:
            job.state, job.error = JobState.FAILED, str(error)
            return
        except Exception as error:  # the job must end visibly whatever happened
            job.state, job.error = JobState.FAILED, f"import failed: {type(error).__name__}"
            raise
        job.imported = report.imported
        job.duplicates_in_file = report.duplicates_in_file
        job.duplicates_existing = report.duplicates_existing
        job.state, job.stage, job.done = JobState.DONE, "done", job.total
        if report.imported:
            self.on_imported(job.product_id, report.imported)

    def _import(self, job: ImportJob, data: bytes, fmt: Literal["txt", "csv"]) -> ImportReport:
        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        with Session(self.engine) as session:
            return import_keys(session, self.vault, job.product_id, job.source_name, data, fmt, progress)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state != JobState.RUNNING]
        for job_id in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self._jobs[job_id]
