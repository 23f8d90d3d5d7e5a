"""Which GGUF file of a Hugging Face repository `pensieve models pull <repo>[:<quant or file>]` means.

`repo` alone picks the repository's one GGUF file, or among several the Q4_K_M one; `repo:Q5_K_M` picks by
the quantization tag in the file name (case-insensitive, as a whole word: `Q4_K` is not `Q4_K_M`);
`repo:name.gguf` picks that file. Vision projectors (`mmproj*`) are never the default. A model split into
parts (`-00001-of-00003.gguf`) is one candidate, preferred less than a single file: choosing it (by tag, or by
naming any of its parts) gives its first part with every other part in `HubFile.parts`, all downloaded and
verified together (engine/gguf_split.py says how llama.cpp and the registry see them).

The repository's file list, sizes and LFS sha256 come from the real `huggingface_hub` client
(`HfApi.model_info(files_metadata=True)`), pinned to the commit it reports, so the bytes downloaded later
are the ones the hash describes. HF_ENDPOINT (a mirror, a private hub) is read on every call, not when a
module is imported; HF_TOKEN (or a `huggingface-cli login`) is used by huggingface_hub itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pensieve.engine.gguf_split import model_id_of, split_name
from pensieve.errors import InvalidRequestError, NotFoundError, PensieveError

HUB_DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d[A-Za-z0-9_]*|[BM]?F(?:16|32)|BF16)(?=\.gguf$|[-.])", re.IGNORECASE)


class HubError(InvalidRequestError):
    """The pull cannot go ahead as asked (no such file, several candidates, an incomplete split): HTTP 400."""

    default_code = "hub_error"


class HubNotFoundError(NotFoundError):
    """The repository, revision or file does not exist on the hub, or is private to others: HTTP 404."""

    default_code = "hub_not_found"


class HubUnavailableError(PensieveError):
    """The hub could not be reached or answered an error: HTTP 502."""

    status_code = 502
    default_code = "hub_unavailable"


@dataclass(frozen=True)
class PullSpec:
    """`owner/name` and what follows the colon (a quantization tag or a file name), if anything."""

    repo: str
    selector: str | None = None

    def __str__(self) -> str:
        return f"{self.repo}:{self.selector}" if self.selector else self.repo


@dataclass(frozen=True)
class HubFile:
    """One file of a repository at one commit, with what it must hash to."""

    repo: str
    filename: str  # path in the repository
    size: int
    revision: str  # the commit the listing came from
    sha256: str | None  # LFS files
    git_sha1: str | None = None  # files stored in git itself (small ones): the blob id
    parts: tuple[HubFile, ...] = ()  # a split model's parts 2..N (this file is its part 1)

    @property
    def name(self) -> str:
        """The file name the model gets in the models folder."""
        return self.filename.rsplit("/", 1)[-1]

    @property
    def model_id(self) -> str:
        """The id the model will be served under (its file stem, without a split model's part suffix)."""
        return model_id_of(Path(self.name))

    @property
    def files(self) -> tuple[HubFile, ...]:
        """Every file to download: this one, then a split model's other parts."""
        return (self, *self.parts)

    @property
    def total_size(self) -> int:
        """The bytes of every file to download."""
        return sum(file.size for file in self.files)


def hub_endpoint() -> str:
    """The hub's base URL: HF_ENDPOINT at the time of the call, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HUB_DEFAULT_ENDPOINT).rstrip("/")


def parse_spec(spec: str, selector: str | None = None) -> PullSpec:
    """`owner/name[:quant-or-file]` (or a repo and a separate `selector`) as a PullSpec; HubError if malformed."""
    text = spec.strip()
    for prefix in ("hf://", "https://huggingface.co/", "huggingface.co/", "hf.co/"):
        text = text.removeprefix(prefix)
    repo, _, inline = text.partition(":")
    repo = repo.strip().strip("/")
    chosen = (selector or inline).strip() or None
    if not _REPO.match(repo):
        raise HubError(
            f"'{spec}' is not a repository: write owner/name, optionally followed by :QUANT or :file.gguf "
            "(e.g. unsloth/gemma-3-270m-it-GGUF:Q4_K_M).",
            param="repo",
        )
    return PullSpec(repo, chosen)


def quant_tag(filename: str) -> str | None:
    """The quantization tag in a file name (`Q4_K_M`, `IQ3_XS`, `F16`, ...), upper-cased, or None."""
    found = _QUANT.findall(filename.rsplit("/", 1)[-1])
    return found[-1].upper() if found else None


def _split_parts(filename: str) -> int | None:
    match = _SPLIT.search(filename)
    return int(match.group(2)) if match else None


def _describe(files: list[HubFile]) -> str:
    names: list[str] = []
    for file in files:
        parts = _split_parts(file.filename)
        label = file.filename if parts is None else f"{_SPLIT.sub('', file.filename)} (split in {parts} parts)"
        if label not in names:
            names.append(label)
    return ", ".join(names) or "none"


def _with_parts(chosen: HubFile, ggufs: list[HubFile]) -> HubFile:
    """`chosen`, or for a part of a split model its first part with the others in `parts` (all must be listed)."""
    split = split_name(chosen.filename)
    if split is None:
        return chosen
    folder = chosen.filename[: len(chosen.filename) - len(chosen.name)]
    listed = {f.filename.lower(): f for f in ggufs}
    found = [listed.get((folder + name).lower()) for name in split.names()]
    missing = [name for name, file in zip(split.names(), found, strict=True) if file is None]
    if missing:
        raise HubError(
            f"{chosen.filename} is part of a model split in {split.count} files, but {chosen.repo} lacks "
            f"{', '.join(missing)}: the split is incomplete, so it could not load.",
            code="incomplete_split_gguf",
        )
    first, *rest = [file for file in found if file is not None]
    return replace(first, parts=tuple(rest))


def choose_file(files: list[HubFile], selector: str | None, repo: str) -> HubFile:
    """The file `selector` means among a repository's GGUF files (see the module's docstring)."""
    ggufs = [f for f in files if f.filename.lower().endswith(".gguf")]
    if not ggufs:
        raise HubNotFoundError(f"The repository {repo} has no .gguf file.", param="repo", code="no_gguf_file")
    if selector and selector.lower().endswith(".gguf"):
        wanted = selector.lower()
        matches = [f for f in ggufs if f.filename.lower() == wanted] or [f for f in ggufs if f.name.lower() == wanted]
        if len(matches) != 1:
            raise HubNotFoundError(
                f"The repository {repo} has no file {selector}. Its GGUF files: {_describe(ggufs)}.",
                param="file",
                code="file_not_found",
            )
        return _with_parts(matches[0], ggufs)
    models = [f for f in ggufs if not f.name.lower().startswith("mmproj")]
    if selector:
        tag = re.compile(rf"(?<![A-Za-z0-9]){re.escape(selector)}(?![A-Za-z0-9_])", re.IGNORECASE)
        matches = [f for f in models if tag.search(f.name)]
        what = f"quantization {selector}"
    else:
        # Single files first: they load anywhere, and a split's parts must all come.
        pool = [f for f in models if _split_parts(f.filename) is None] or models
        preferred = [f for f in pool if quant_tag(f.name) == DEFAULT_QUANT]
        matches = pool if len({_SPLIT.sub("", f.filename) for f in pool}) == 1 else (preferred or pool)
        what = f"a default ({DEFAULT_QUANT}, or the only file)"
    # The parts of one split model count as one candidate.
    if len({_SPLIT.sub("", f.filename) for f in matches}) == 1:
        return _with_parts(sorted(matches, key=lambda f: f.filename)[0], ggufs)
    if not matches:
        raise HubNotFoundError(
            f"The repository {repo} has no GGUF file for {what}. Its GGUF files: {_describe(ggufs)}. "
            f"Pull one with {repo}:<QUANT> or {repo}:<file.gguf>.",
            param="quant" if selector else "repo",
            code="file_not_found",
        )
    raise HubError(
        f"Several GGUF files of {repo} match {what}: {_describe(matches)}. Name one with {repo}:<file.gguf>.",
        param="file",
        code="ambiguous_model_file",
    )


def list_files(repo: str, *, revision: str | None = None, endpoint: str | None = None) -> list[HubFile]:
    """Every file of the repository at `revision` (default: its main branch), with sizes and hashes."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    base = endpoint or hub_endpoint()
    try:
        info = HfApi(endpoint=base).model_info(repo, revision=revision, files_metadata=True)
    except GatedRepoError as exc:
        raise HubNotFoundError(
            f"The repository {repo} is gated: accept its terms on the hub, then set HF_TOKEN to a token of "
            "that account.",
            param="repo",
            code="repo_gated",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise HubNotFoundError(
            f"No repository {repo} on {base} (or it is private: set HF_TOKEN to a token that may read it).",
            param="repo",
            code="repo_not_found",
        ) from exc
    except RevisionNotFoundError as exc:
        raise HubNotFoundError(f"The repository {repo} has no revision {revision}.", param="revision") from exc
    except HfHubHTTPError as exc:
        raise HubUnavailableError(f"The hub at {base} answered an error for {repo}: {exc}") from exc
    except Exception as exc:  # connection refused, DNS, TLS, timeouts: whatever the HTTP client raises
        raise HubUnavailableError(f"Cannot reach the hub at {base} ({type(exc).__name__}: {exc}).") from exc
    commit = info.sha or revision or "main"
    return [
        HubFile(
            repo=repo,
            filename=sibling.rfilename,
            size=int(sibling.lfs.size if sibling.lfs else sibling.size or 0),
            revision=commit,
            sha256=sibling.lfs.sha256 if sibling.lfs else None,
            git_sha1=None if sibling.lfs else sibling.blob_id,
        )
        for sibling in info.siblings or []
    ]


def resolve(spec: PullSpec, *, revision: str | None = None, endpoint: str | None = None) -> HubFile:
    """The GGUF file `spec` names (a split model's first part, its other parts in `parts`), with sizes, commit
    and hashes; HubError/HubNotFoundError otherwise."""
    chosen = choose_file(list_files(spec.repo, revision=revision, endpoint=endpoint), spec.selector, spec.repo)
    for file in chosen.files:
        if file.sha256 is None and file.git_sha1 is None:
            raise HubError(
                f"The hub gives no hash for {file.filename}, so its download could not be verified.",
                code="no_hash",
            )
    return chosen
