"""The server's model downloads: one background job per `POST /api/models/pull`, with its progress.

A job runs `model_pull.pull_file` in a thread and records its stage, bytes done, speed and outcome; the UI
polls `GET /api/models/pulls/{id}`. One job per target file runs at a time (a second pull of the same file
is refused with 409 while the first runs). Finished jobs are kept (the last KEPT_FINISHED) so a client that
polls late still learns the outcome. Closing the server cancels running jobs; their part files stay and the
next pull resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pensieve.errors import NotFoundError, PensieveError
from pensieve.model_hub import HubFile
from pensieve.model_pull import ModelExistsError, PullCancelledError, pull_file

logger = logging.getLogger(__name__)

KEPT_FINISHED = 20
JobStatus = Literal["downloading", "verifying", "done", "failed", "cancelled"]


@dataclass
class PullJob:
    """One download: what, how far, how fast, and how it ended."""

    id: str
    file: HubFile
    started_at: float = field(default_factory=time.time)
    status: JobStatus = "downloading"
    done_bytes: int = 0
    resumed_from: int | None = None  # bytes already in the part file when this job started
    finished_at: float | None = None
    path: str | None = None
    error: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    _clock_start: float = field(default_factory=time.monotonic)
    _clock_end: float | None = None

    def progress(self, stage: str, done: int, _total: int) -> None:
        """`pull_file`'s progress callback (called from the download thread)."""
        if self.resumed_from is None:
            self.resumed_from = done
        self.done_bytes = done
        if stage == "verifying":
            self.status = "verifying"

    @property
    def running(self) -> bool:
        """True until the job is done, failed or cancelled."""
        return self.status in ("downloading", "verifying")

    def bytes_per_second(self) -> float | None:
        """Download speed of this job (bytes it fetched itself over its time so far)."""
        elapsed = (self._clock_end or time.monotonic()) - self._clock_start
        fetched = self.done_bytes - (self.resumed_from or 0)
        return fetched / elapsed if elapsed > 0 and fetched > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The job as the API shows it."""
        return {
            "id": self.id,
            "repo": self.file.repo,
            "file": self.file.filename,
            "revision": self.file.revision,
            "model_id": self.file.model_id,
            "status": self.status,
            "done_bytes": self.done_bytes,
            "total_bytes": self.file.total_size,
            "parts": [file.filename for file in self.file.files],  # more than one for a split model
            "resumed_from_bytes": self.resumed_from or 0,
            "bytes_per_second": self.bytes_per_second(),
            "sha256": self.file.sha256,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "path": self.path,
            "error": self.error,
        }


class PullJobs:
    """The running and recently finished pull jobs of one server."""

    def __init__(self) -> None:
        self._jobs: dict[str, PullJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, file: HubFile, models_dir: Path, *, force: bool = False, endpoint: str | None = None) -> PullJob:
        """Start downloading `file` into `models_dir` in the background; 409 while the same file is being pulled."""
        for job in self._jobs.values():
            if job.running and job.file.name == file.name:
                raise ModelExistsError(
                    f"{file.name} is already being pulled (job {job.id}).", code="pull_in_progress", param="repo"
                )
        job = PullJob(id=f"pull-{uuid.uuid4().hex[:12]}", file=file)
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job, models_dir, force, endpoint), name=job.id)
        self._forget_old()
        return job

    async def _run(self, job: PullJob, models_dir: Path, force: bool, endpoint: str | None) -> None:
        try:
            pull = functools.partial(pull_file, force=force, on_progress=job.progress, cancel=job.cancel)
            path = await asyncio.to_thread(pull, job.file, models_dir, endpoint=endpoint)
        except PullCancelledError as exc:
            job.status, job.error = "cancelled", exc.to_body()["error"]
        except PensieveError as exc:
            job.status, job.error = "failed", exc.to_body()["error"]
        except Exception as exc:  # reported on the job; the server goes on
            logger.exception("pull %s failed", job.id)
            job.status = "failed"
            job.error = PensieveError(f"The pull failed: {type(exc).__name__}: {exc}").to_body()["error"]
        else:
            job.status, job.path, job.done_bytes = "done", str(path), job.file.total_size
        finally:
            job.finished_at, job._clock_end = time.time(), time.monotonic()
            self._tasks.pop(job.id, None)

    def _forget_old(self) -> None:
        finished = [job for job in self._jobs.values() if not job.running]
        for job in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            del self._jobs[job.id]

    def get(self, job_id: str) -> PullJob:
        """The job with this id; 404 when there is none (or it was forgotten)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"No pull job '{job_id}'.", param="job_id", code="pull_not_found")
        return job

    def all(self) -> list[PullJob]:
        """Every known job, oldest first."""
        return list(self._jobs.values())

    def cancel(self, job_id: str) -> PullJob:
        """Ask a running job to stop (its part file stays for a later resume)."""
        job = self.get(job_id)
        job.cancel.set()
        return job

    async def wait(self, job_id: str) -> None:
        """Until the job has finished (tests, shutdown)."""
        task = self._tasks.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel every running job and wait for their threads to stop."""
        for job in self._jobs.values():
            job.cancel.set()
        for job_id in list(self._tasks):
            await self.wait(job_id)
