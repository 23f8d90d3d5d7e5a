"""Download a hub file into the models folder: resumable, hash-checked, GGUF-checked, landed atomically.

The bytes go to `models/<file>.<sha256[:12]>.part` (not `*.gguf`, so the registry never lists it), with HTTP
Range requests: a dropped connection is resumed in the same pull (up to RETRIES times in a row without
progress), and a pull that stopped (cancelled, the process killed, the hub gone) resumes from the part file
next time. The part's name carries the expected hash, so a part is only ever continued with the same
content. The hash is computed while the bytes arrive (a resumed part is re-read once); only a file whose
sha256 (LFS files) or git blob id (small files) matches, and whose GGUF header passes the registry's hardened
reader, is renamed to `models/<file>`: the models folder never holds a half-written or unverified model.

huggingface_hub resolves the file's URL (`hf_hub_url`, then a HEAD through the hub's redirects with
`get_hf_file_metadata`) and builds the headers (user agent, HF_TOKEN); the Authorization header is not sent
to another host (a CDN the hub redirects to). `huggingface_hub.hf_hub_download` is not used: it deletes a
partial download when it fails, so an interrupted multi-GB pull would start over.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pensieve import __version__
from pensieve.engine.registry import inspect_model_file, normalise_model_id
from pensieve.errors import ModelNotFoundError, PensieveError
from pensieve.model_hub import HubError, HubFile, HubNotFoundError, HubUnavailableError, hub_endpoint
from pensieve.model_install import stamp_matches, stamp_path, write_stamp

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
RETRIES = 5  # attempts in a row that bring no new byte before the pull gives up (the part is kept)
RETRY_DELAY_SECONDS = 1.0
PART_SUFFIX = ".part"
Progress = Callable[[str, int, int], object]  # (stage, done bytes, total bytes)


class ModelExistsError(PensieveError):
    """A different file of that name is already in the models folder: HTTP 409."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "model_exists"


class PullCancelledError(PensieveError):
    """The pull was cancelled; its part file is kept for a later resume."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "pull_cancelled"


class _TransientError(HubUnavailableError):
    """A failure worth retrying: the connection, a 5xx, 408 or 429."""


class _Part:
    """The part file and the running hash of its bytes."""

    def __init__(self, path: Path, file: HubFile) -> None:
        self.path = path
        self.file = file
        self.size = 0
        self.digest = self._new_digest()
        if path.exists() and path.stat().st_size <= file.size:
            with path.open("rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    self.digest.update(block)
                    self.size += len(block)
        else:
            self.restart()

    def _new_digest(self) -> Any:
        if self.file.sha256 is not None:
            return hashlib.sha256()
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {self.file.size}\0".encode())  # git's blob id: sha1 of a header and the bytes
        return digest

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.size = 0
        self.digest = self._new_digest()

    @property
    def matches(self) -> bool:
        expected = self.file.sha256 or self.file.git_sha1
        return bool(self.size == self.file.size and self.digest.hexdigest() == expected)


def part_path(models_dir: Path, file: HubFile) -> Path:
    """Where `file`'s bytes are gathered before they are verified."""
    tag = (file.sha256 or file.git_sha1 or "unknown")[:12]
    return models_dir / f"{file.name}.{tag}{PART_SUFFIX}"


def _file_url(file: HubFile, endpoint: str) -> tuple[str, dict[str, str]]:
    """The URL the bytes come from (after the hub's redirects) and the headers to send there."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError
    from huggingface_hub.utils._headers import build_hf_headers

    url = hf_hub_url(file.repo, file.filename, revision=file.revision, endpoint=endpoint)
    try:
        location = get_hf_file_metadata(url, endpoint=endpoint).location
    except RemoteEntryNotFoundError as exc:
        raise HubNotFoundError(f"{file.filename} is no longer in {file.repo}.", code="file_not_found") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        error = _TransientError if status >= 500 or status in (408, 429) else HubUnavailableError
        raise error(f"The hub refused {file.filename}: {exc}") from exc
    except Exception as exc:  # the HTTP client's connection errors
        raise _TransientError(f"Cannot reach the hub at {endpoint} ({type(exc).__name__}: {exc}).") from exc
    headers = build_hf_headers(library_name="pensieve", library_version=__version__)
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN gets a signed URL, never the token
    headers["accept-encoding"] = "identity"
    return location, headers


def _stream(
    part: _Part, url: str, headers: dict[str, str], report: Callable[[], None], cancel: threading.Event | None
) -> None:
    """One GET of the bytes the part lacks (all of them when the server ignores Range)."""
    wanted = dict(headers)
    if part.size:
        wanted["range"] = f"bytes={part.size}-"
    timeout = httpx.Timeout(30.0, read=60.0)
    with httpx.stream("GET", url, headers=wanted, follow_redirects=True, timeout=timeout) as response:
        if response.status_code == 416 and part.size == part.file.size:
            return
        if response.status_code in (401, 403):
            raise HubUnavailableError(
                f"The hub refused {part.file.filename} ({response.status_code}): set HF_TOKEN to a token that may "
                "read it."
            )
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise _TransientError(f"The hub answered {response.status_code} for {part.file.filename}.")
        if response.status_code >= 400:
            raise HubUnavailableError(f"The hub answered {response.status_code} for {part.file.filename}.")
        start = response.headers.get("content-range", "bytes 0-").split(" ", 1)[-1].split("-", 1)[0]
        if response.status_code != 206 or not start.isdigit() or int(start) != part.size:
            part.restart()  # the server sent the whole file (or another range): take it from the start
        with part.path.open("ab") as out:
            for block in response.iter_bytes(CHUNK_BYTES):
                if cancel is not None and cancel.is_set():
                    raise PullCancelledError(
                        f"The pull of {part.file.filename} was cancelled; {part.size} bytes are kept in "
                        f"{part.path.name} for the next pull to resume."
                    )
                if part.size + len(block) > part.file.size:
                    raise HubError(f"The hub sent more than the {part.file.size} bytes of {part.file.filename}.")
                out.write(block)
                part.digest.update(block)
                part.size += len(block)
                report()


def _download(part: _Part, endpoint: str, on_progress: Progress | None, cancel: threading.Event | None) -> None:
    """Fill the part file, resuming after dropped connections; raise once RETRIES attempts brought nothing."""
    total = part.file.size

    def report() -> None:
        if on_progress is not None:
            on_progress("downloading", part.size, total)

    report()
    failures = 0
    while part.size < total:
        before = part.size
        try:
            url, headers = _file_url(part.file, endpoint)
            _stream(part, url, headers, report, cancel)
        except (httpx.TransportError, _TransientError) as exc:
            failures = 1 if part.size > before else failures + 1
            if failures > RETRIES:
                raise HubUnavailableError(
                    f"Downloading {part.file.filename} failed {RETRIES + 1} times in a row ({exc}); the "
                    f"{part.size} bytes received are kept in {part.path.name}: pull again to resume."
                ) from exc
            logger.warning("download of %s interrupted at %d bytes (%s); resuming", part.file.filename, part.size, exc)
            time.sleep(RETRY_DELAY_SECONDS * failures)
            continue
        if part.size < total and part.size == before:
            failures += 1  # the server closed the body cleanly but short
            if failures > RETRIES:
                raise HubUnavailableError(f"The hub keeps sending {part.file.filename} short; pull again later.")


def pull_file(
    file: HubFile,
    models_dir: Path,
    *,
    force: bool = False,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download, verify and install `file` as `models_dir/<name>`; return its path.

    A file of that name that was verified with the same hash is kept as it is ("already installed");
    another one is refused with ModelExistsError unless `force`. `on_progress(stage, done, total)` gets
    "downloading" and "verifying" stages; setting `cancel` stops the download (the part file stays).
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / file.name
    expected = file.sha256 or file.git_sha1 or ""
    if target.exists() and not force:
        if stamp_matches(target, expected):
            return target
        raise ModelExistsError(
            f"{target.name} is already in the models folder (not this download): remove it first "
            f"(pensieve models rm {file.model_id}) or pull with force.",
            param="repo",
        )
    part = _Part(part_path(models_dir, file), file)
    _download(part, endpoint or hub_endpoint(), on_progress, cancel)
    if on_progress is not None:
        on_progress("verifying", part.size, file.size)
    if not part.matches:
        part.path.unlink(missing_ok=True)
        kind = "sha256" if file.sha256 else "git blob id"
        raise HubUnavailableError(
            f"{file.filename} from {file.repo} does not match the hub's {kind} {expected} (got "
            f"{part.digest.hexdigest()}, {part.size} bytes): the download was corrupted or the mirror serves "
            "other bytes. Nothing was installed.",
            code="checksum_mismatch",
        )
    checked = inspect_model_file(part.path)
    if checked.error is not None:
        part.path.unlink(missing_ok=True)
        raise HubError(
            f"{file.filename} from {file.repo} is not a usable GGUF file: {checked.error}. Nothing was installed.",
            code="invalid_gguf",
        )
    part.path.replace(target)  # atomic: same folder
    write_stamp(target, expected)
    logger.info("pulled %s from %s into %s", file.filename, file.repo, target)
    return target


def remove_model(models_dir: Path, model_id: str) -> list[Path]:
    """Delete a model's file (and its verification stamp); its `<id>.toml` settings are kept. Return what went.

    ModelNotFoundError names the installed models when there is no such file.
    """
    wanted = normalise_model_id(model_id)
    target = models_dir / f"{wanted}.gguf"
    if "/" in wanted or "\\" in wanted or not target.is_file():
        known = sorted(path.stem for path in models_dir.glob("*.gguf")) if models_dir.is_dir() else []
        raise ModelNotFoundError(
            f"No model '{model_id}' in {models_dir}. Installed models: {', '.join(known) or 'none'}.", param="model"
        )
    removed = [target]
    target.unlink()
    stamp = stamp_path(target)
    if stamp.exists():
        stamp.unlink()
        removed.append(stamp)
    return removed
