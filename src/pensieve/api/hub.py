"""Admin routes that add and remove model files: pulls from a Hugging Face hub, and deletion.

`POST /api/models/pull` resolves the file at once (a wrong repository, quantization or file name is an
immediate 4xx) and answers 202 with a job that downloads in the background; `GET /api/models/pulls[/{id}]`
shows its progress, `DELETE /api/models/pulls/{id}` cancels it (the part file stays: pulling again resumes).
`DELETE /api/models/{id}` removes a model file: an idle loaded model is unloaded first, one serving requests
is refused with 409. The hub is HF_ENDPOINT as the server's environment has it (read per request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from pensieve.api.access import admin_caller
from pensieve.api.deps import PoolDep, PullsDep, SettingsDep
from pensieve.engine.registry import normalise_model_id
from pensieve.errors import PensieveError
from pensieve.model_hub import hub_endpoint, parse_spec, resolve
from pensieve.model_pull import remove_model

router = APIRouter(prefix="/api/models", tags=["Admin"], dependencies=[Depends(admin_caller)])


class PullRequest(BaseModel):
    """Body of POST /api/models/pull: a repository and, optionally, which of its GGUF files."""

    model_config = ConfigDict(extra="forbid")
    repo: str = Field(description="owner/name, optionally with :QUANT or :file.gguf", examples=["org/model-GGUF"])
    quant: str | None = Field(default=None, description="quantization tag in the file name, e.g. Q4_K_M")
    file: str | None = Field(default=None, description="a GGUF file of the repository (wins over quant)")
    revision: str | None = Field(default=None, description="branch, tag or commit; default: the main branch")
    force: bool = Field(default=False, description="replace a different file of the same name")


class ModelInUseError(PensieveError):
    """The model serves requests right now: HTTP 409."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "model_in_use"


@router.post("/pull", status_code=202)
async def pull_model(body: PullRequest, pulls: PullsDep, settings: SettingsDep) -> dict[str, Any]:
    """Start downloading a GGUF file from the hub into the models folder; the job's progress is polled."""
    spec = parse_spec(body.repo, body.file or body.quant)
    endpoint = hub_endpoint()
    file = await asyncio.to_thread(resolve, spec, revision=body.revision, endpoint=endpoint)
    job = pulls.start(file, settings.engine.models_dir, force=body.force, endpoint=endpoint)
    return job.to_dict()


@router.get("/pulls")
async def list_pulls(pulls: PullsDep) -> dict[str, Any]:
    """Running and recently finished pulls, oldest first."""
    return {"data": [job.to_dict() for job in pulls.all()]}


@router.get("/pulls/{job_id}")
async def get_pull(job_id: str, pulls: PullsDep) -> dict[str, Any]:
    """One pull: status (downloading, verifying, done, failed, cancelled), bytes done and total, speed, error."""
    return pulls.get(job_id).to_dict()


@router.delete("/pulls/{job_id}")
async def cancel_pull(job_id: str, pulls: PullsDep) -> dict[str, Any]:
    """Cancel a running pull; what it downloaded is kept for the next pull of the same file."""
    job = pulls.cancel(job_id)
    await asyncio.wait_for(pulls.wait(job_id), timeout=30)
    return job.to_dict()


@router.delete("/{model_id}")
async def delete_model(model_id: str, pool: PoolDep) -> dict[str, Any]:
    """Delete a model file (its `<id>.toml` settings stay). 404 names the installed models; 409 if it is busy."""
    canonical = normalise_model_id(model_id)  # a real id: an alias never deletes a file
    engine = next((engine for engine in pool.loaded() if engine.model_id == canonical), None)
    if engine is not None:
        if pool.in_use(engine):
            raise ModelInUseError(
                f"The model '{canonical}' is serving requests; unload it (or wait) and delete it again.",
                param="model",
            )
        await pool.unload(canonical)
    removed = await asyncio.to_thread(remove_model, pool.models_dir, canonical)
    await pool.available_models()  # the listing and the aliases forget it now
    return {"id": canonical, "deleted": True, "unloaded": engine is not None, "files": [p.name for p in removed]}
