"""Download a hub file into the models folder: resumable, hash-checked, GGUF-checked, landed atomically.

The bytes go to `models/<file>.<sha256[:12]>.part` (not `*.gguf`, so the registry never lists it), with HTTP
Range requests: a dropped connection is resumed in the same pull (up to RETRIES times in a row without
progress), and a pull that stopped (cancelled, the process killed, the hub gone) resumes from the part file
next time. The part's name carries the expected hash, so a part is only ever continued with the same
content. The hash is computed while the bytes arrive (a resumed part is re-read once); only a file whose
sha256 (LFS files) or git blob id (small files) matches, and whose GGUF header passes the registry's hardened
reader, is renamed to `models/<file>`: the models folder never holds a half-written or unverified model.
A split model's parts are each downloaded, resumed and hash-checked this way, and installed together once
all are verified (the first part, which llama.cpp is given, last).

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
from pensieve.engine.gguf_metadata import read_gguf_metadata
from pensieve.engine.gguf_split import SPLIT_COUNT_KEY, is_part_of, model_id_of
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
    """Download, verify and install `file` (and a split model's other parts) into `models_dir`; return the
    path of the model (a split model's first part, the path llama.cpp loads).

    A model whose files were all verified with the same hashes is kept as it is ("already installed"); a
    different file of one of those names is refused with ModelExistsError unless `force`. `on_progress(stage,
    done, total)` gets "downloading" and "verifying" stages over the bytes of every part; setting `cancel`
    stops the download (the part files stay). Each part is hash-checked as it completes; nothing is
    installed until every part is verified and the first one's GGUF header (and `split.count`) is sound.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    files = file.files
    targets = [models_dir / f.name for f in files]
    if any(target.exists() for target in targets) and not force:
        if all(stamp_matches(target, _expected(f)) for target, f in zip(targets, files, strict=True)):
            return targets[0]
        taken = next(target for target in targets if target.exists())
        raise ModelExistsError(
            f"{taken.name} is already in the models folder (not this download): remove it first "
            f"(pensieve models rm {file.model_id}) or pull with force.",
            param="repo",
        )
    total, offset, parts = file.total_size, 0, []
    for each in files:
        part = _Part(part_path(models_dir, each), each)
        _download(part, endpoint or hub_endpoint(), _shifted(on_progress, offset, total), cancel)
        _verify(part)
        parts.append(part)
        offset += each.size
    if on_progress is not None:
        on_progress("verifying", total, total)
    problem = _header_problem(parts[0].path, len(files))
    if problem is not None:
        for part in parts:
            part.path.unlink(missing_ok=True)
        raise HubError(
            f"{file.filename} from {file.repo} is not a usable GGUF file: {problem}. Nothing was installed.",
            code="invalid_gguf",
        )
    # The first part last: the registry never sees a split model's first part without the others.
    for part, target in reversed(list(zip(parts, targets, strict=True))):
        part.path.replace(target)  # atomic: same folder
        write_stamp(target, _expected(part.file))
    logger.info("pulled %s (%d file(s)) from %s into %s", file.filename, len(files), file.repo, targets[0])
    return targets[0]


def _expected(file: HubFile) -> str:
    return file.sha256 or file.git_sha1 or ""


def _shifted(on_progress: Progress | None, offset: int, total: int) -> Progress | None:
    """A part's progress as progress over every part (the bytes of the parts before it added)."""
    if on_progress is None:
        return None
    return lambda stage, done, _part_total: on_progress(stage, offset + done, total)


def _verify(part: _Part) -> None:
    """Delete the part and raise when its bytes do not hash to what the hub lists."""
    if part.matches:
        return
    part.path.unlink(missing_ok=True)
    file = part.file
    kind = "sha256" if file.sha256 else "git blob id"
    raise HubUnavailableError(
        f"{file.filename} from {file.repo} does not match the hub's {kind} {_expected(file)} (got "
        f"{part.digest.hexdigest()}, {part.size} bytes): the download was corrupted or the mirror serves "
        "other bytes. Nothing was installed.",
        code="checksum_mismatch",
    )


def _header_problem(first: Path, count: int) -> str | None:
    """Why the (first) downloaded file is no usable GGUF, or a split's header disagrees with its part count."""
    checked = inspect_model_file(first)
    if checked.error is not None:
        return checked.error
    if count == 1:
        return None
    declared = read_gguf_metadata(first).values.get(SPLIT_COUNT_KEY)
    if type(declared) is not int or declared != count:
        return f"its header's {SPLIT_COUNT_KEY} is {declared!r}, but the hub lists {count} parts"
    return None


def remove_model(models_dir: Path, model_id: str) -> list[Path]:
    """Delete a model's file, or every part of a split model (and their verification stamps); its `<id>.toml`
    settings are kept. Return what went.

    ModelNotFoundError names the installed models when there is no such file.
    """
    wanted = model_id_of(Path(normalise_model_id(model_id) + ".gguf"))  # a split's part names its model
    files = _model_files(models_dir, wanted) if "/" not in wanted and "\\" not in wanted else []
    if not files:
        known = sorted({model_id_of(path) for path in models_dir.glob("*.gguf")}) if models_dir.is_dir() else []
        raise ModelNotFoundError(
            f"No model '{model_id}' in {models_dir}. Installed models: {', '.join(known) or 'none'}.", param="model"
        )
    removed = []
    for target in files:
        target.unlink()
        removed.append(target)
        stamp = stamp_path(target)
        if stamp.exists():
            stamp.unlink()
            removed.append(stamp)
    return removed


def _model_files(models_dir: Path, model_id: str) -> list[Path]:
    """`<id>.gguf`, or else every `<id>-NNNNN-of-NNNNN.gguf` part (first to last) in the folder."""
    single = models_dir / f"{model_id}.gguf"
    if single.is_file():
        return [single]
    if not models_dir.is_dir():
        return []
    parts = [path for path in models_dir.glob("*.gguf") if is_part_of(path, model_id)]
    return sorted(parts, key=lambda path: path.name)
