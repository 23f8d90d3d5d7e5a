"""Command-line interface: `pensieve serve | ui | up | doctor | models ... | route explain | version`.

The `models` sub-commands (list, install-default, pull, rm) are in `cli_models.py`.

Flags override `PENSIEVE_*` variables, which override `.env`. Invalid settings end the command with
one line naming the key and the problem (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pensieve import __version__
from pensieve.cli_models import add_model_commands
from pensieve.config import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(env_file=args.env_file, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the HTTP server."""
    from pensieve.app import create_app
    from pensieve.graceful import serve
    from pensieve.observability.logging import configure_logging

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        default_model=args.model,
        models_dir=args.models_dir,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        log_level=args.log_level,
        preload_default_model=False if args.no_preload else None,
        insecure_no_auth=True if args.insecure_no_auth else None,
    )
    if _exposed(settings):
        return 2
    configure_logging(settings.server.log_level, settings.server.log_dir, settings.server.log_format)
    settings.engine.models_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"Pensieve {__version__} on http://{settings.server.host}:{settings.server.port}  (API docs: /docs)", flush=True
    )
    serve(create_app(settings, env_file=args.env_file or Path(".env")), settings.server)
    return 0


def _exposed(settings: Settings) -> bool:
    """Print why serving would open the API to the network without a key (then the caller exits 2)."""
    from pensieve.api.access import exposure_problem

    problem = exposure_problem(settings.server)
    if problem:
        print(f"pensieve: {problem}", file=sys.stderr)
    return problem is not None


def _warn_if_ui_exposed(host: str) -> None:
    """The UI has no login and administers the server from this machine: say so when others can reach it."""
    if host.strip().strip("[]") not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"pensieve: warning: the UI on {host} has no login; anyone who reaches it can chat and change "
            "the server's settings. Bind it to 127.0.0.1 unless the network is trusted.",
            file=sys.stderr,
            flush=True,
        )


def cmd_route_explain(args: argparse.Namespace) -> int:
    """Ask the running server where a prompt would run, and why, without running it."""
    import httpx

    settings = _settings(args)
    url = args.url or f"http://{settings.server.host}:{settings.server.port}"
    headers = {"x-pensieve-route": args.route} if args.route else {}
    if settings.server.api_key is not None:
        headers["authorization"] = f"Bearer {settings.server.api_key.get_secret_value()}"
    payload: dict[str, Any] = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    if args.max_tokens is not None:
        payload["max_tokens"] = args.max_tokens
    try:
        response = httpx.post(f"{url}/api/route/explain", json=payload, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        print(f"pensieve: cannot reach the server at {url} ({exc}); start it with `pensieve serve`.", file=sys.stderr)
        return 1
    data = response.json()
    if response.status_code != 200:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        print(f"pensieve: {error.get('message', response.text)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    route = data["route"] or "refused"
    tier = data.get("tier") or "-"  # an older server's record has no tier
    print(f"route: {route}   tier: {tier}   reason: {data['reason']}   model: {data['model']}", end="")
    print(f"   fallback: {data['fallback']}")
    if data.get("detail"):
        print(f"detail: {data['detail']}")
    print(f"{'criterion':<14} {'on':<3} {'vote':<9} detail")
    for verdict in data["criteria"]:
        enabled = "yes" if verdict["enabled"] else "no"
        print(f"{verdict['criterion']:<14} {enabled:<3} {verdict['vote']:<9} {verdict['detail']}")
    return 0


def _ui_environment(args: argparse.Namespace, server_url: str | None) -> dict[str, str]:
    """The UI process's environment: ours, plus where the server is and which settings file to read."""
    import os

    env = dict(os.environ)
    if args.env_file is not None:
        env["PENSIEVE_ENV_FILE"] = str(args.env_file)
    if server_url:
        env["PENSIEVE_SERVER_URL"] = server_url
    return env


def cmd_ui(args: argparse.Namespace) -> int:
    """Start the Streamlit UI alone (the server runs elsewhere: `pensieve serve`)."""
    import subprocess

    from pensieve.ui.config import load_ui_settings
    from pensieve.ui.launch import streamlit_command, ui_unavailable, ui_url

    problem = ui_unavailable()
    if problem:
        print(f"pensieve: {problem}", file=sys.stderr)
        return 1
    ui = load_ui_settings(args.env_file)
    host, port = args.host or ui.ui_host, args.port or ui.ui_port
    _warn_if_ui_exposed(host)
    server_url = args.server_url or ui.base_url
    print(f"Pensieve UI on {ui_url(host, port)}  (server: {server_url})", flush=True)
    command, environment = streamlit_command(host, port), _ui_environment(args, server_url)
    if os.name == "posix":
        # Become Streamlit: signals (a test's terminate, systemd's stop) reach it directly, no orphan.
        os.execve(command[0], command, environment)
    try:
        return subprocess.call(command, env=environment)
    except KeyboardInterrupt:
        return 130


def cmd_up(args: argparse.Namespace) -> int:
    """Start the server and the UI together; the UI stops when the server stops."""
    import subprocess

    from pensieve.ui.config import load_ui_settings
    from pensieve.ui.launch import copy_output, streamlit_command, ui_unavailable, ui_url, watch_ui

    problem = ui_unavailable()
    if problem:
        print(f"pensieve: starting the server without the UI: {problem}", file=sys.stderr, flush=True)
        return cmd_serve(args)
    settings = _settings(args, host=args.host, port=args.port, insecure_no_auth=True if args.insecure_no_auth else None)
    if _exposed(settings):
        return 2
    ui = load_ui_settings(args.env_file)
    host, port = args.ui_host or ui.ui_host, args.ui_port or ui.ui_port
    _warn_if_ui_exposed(host)
    server_host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    server_url = ui.server_url or f"http://{server_host}:{settings.server.port}"
    settings.server.log_dir.mkdir(parents=True, exist_ok=True)
    ui_log = settings.server.log_dir / "ui.log"
    # Through a pipe into a rotating file (ui/launch.py), unbuffered so each line lands as Streamlit writes it.
    process = subprocess.Popen(
        streamlit_command(host, port),
        env={**_ui_environment(args, server_url), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    assert process.stdout is not None  # stdout=PIPE
    copying = copy_output(process.stdout, ui_log)
    print(f"Pensieve UI on {ui_url(host, port)}  (its log: {ui_log})", flush=True)
    stopping = watch_ui(process, ui_log)
    # A SIGTERM the server does not handle itself (before it listens, or after it stopped) would kill this
    # process before the `finally` below could stop the UI; exiting normally lets it run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return cmd_serve(args)
    finally:
        stopping.set()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        copying.join(timeout=5)  # the UI's last lines reach ui.log


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """In the UI child (Linux): get SIGTERM when `pensieve up` dies, even by SIGKILL, so no orphan stays."""
    import ctypes

    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the install and the machine; exit status 1 when a check failed."""
    from pensieve.diagnostics.doctor import doctor_main

    return doctor_main(args.env_file, cloud=args.cloud, as_json=args.json)


def cmd_version(_args: argparse.Namespace) -> int:
    """Print the version."""
    print(f"pensieve {__version__}")
    return 0


def _add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The options of `serve`, shared by `up`."""
    serve.add_argument("--host", help="address to bind (PENSIEVE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (PENSIEVE_PORT, default 8000)")
    serve.add_argument("--model", help="default model id (PENSIEVE_DEFAULT_MODEL)")
    serve.add_argument("--models-dir", type=Path, help="folder of *.gguf files (PENSIEVE_MODELS_DIR)")
    serve.add_argument("--n-ctx", type=int, help="context window in tokens (PENSIEVE_N_CTX)")
    serve.add_argument("--n-threads", type=int, help="CPU threads, 0 = all cores (PENSIEVE_N_THREADS)")
    serve.add_argument("--log-level", help="critical|error|warning|info|debug (PENSIEVE_LOG_LEVEL)")
    serve.add_argument("--no-preload", action="store_true", help="load the default model on first use")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve on a non-loopback address without an API key (PENSIEVE_INSECURE_NO_AUTH)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="pensieve", description="Local LLM server with an OpenAI-compatible API (and cloud bursting)."
    )
    parser.add_argument("--env-file", type=Path, default=None, help="read settings from this file instead of .env")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="start the API server", description="Start the API server.")
    _add_serve_options(serve)
    serve.set_defaults(handler=cmd_serve)

    ui = commands.add_parser(
        "ui", help="start the Streamlit UI alone", description="Start the web UI; it talks to a running server."
    )
    ui.add_argument("--host", help="address the UI binds (PENSIEVE_UI_HOST, default 127.0.0.1)")
    ui.add_argument("--port", type=int, help="UI port (PENSIEVE_UI_PORT, default 8501)")
    ui.add_argument("--server-url", help="server URL (PENSIEVE_SERVER_URL, default http://PENSIEVE_HOST:PENSIEVE_PORT)")
    ui.set_defaults(handler=cmd_ui)

    up = commands.add_parser(
        "up",
        help="start the server and the UI together",
        description="Start the API server and the web UI; stopping the server stops the UI.",
    )
    _add_serve_options(up)
    up.add_argument("--ui-host", help="address the UI binds (PENSIEVE_UI_HOST, default 127.0.0.1)")
    up.add_argument("--ui-port", type=int, help="UI port (PENSIEVE_UI_PORT, default 8501)")
    up.set_defaults(handler=cmd_up)

    doctor = commands.add_parser(
        "doctor",
        help="check the install and this machine",
        description="Check Python, the llama.cpp build against this CPU (with a self-test in a child process), "
        "the default model, .env, the port, folders and memory; each line says ok, WARN or FAIL and the fix.",
    )
    doctor.add_argument("--cloud", action="store_true", help="also check that the cloud providers answer")
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.set_defaults(handler=cmd_doctor)

    add_model_commands(commands)

    route_cmds = commands.add_parser("route", help="explain routing decisions", description="Routing tools.")
    route_sub = route_cmds.add_subparsers(dest="route_command", metavar="ACTION", required=True)
    explain = route_sub.add_parser(
        "explain",
        help="show where a prompt would run and why",
        description="Ask the running server (POST /api/route/explain) how it would route a chat prompt.",
    )
    explain.add_argument("prompt", help="the user message to route")
    explain.add_argument("--model", default="auto", help="model id: auto (default), a local id or provider/model")
    explain.add_argument("--route", choices=["local", "cloud", "auto"], help="X-Pensieve-Route override")
    explain.add_argument("--max-tokens", type=int, help="max_tokens of the request")
    explain.add_argument("--url", help="server URL (default http://PENSIEVE_HOST:PENSIEVE_PORT)")
    explain.add_argument("--json", action="store_true", help="print the whole decision record as JSON")
    explain.set_defaults(handler=cmd_route_explain)

    version = commands.add_parser("version", help="print the version", description="Print the version.")
    version.set_defaults(handler=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pensieve` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SettingsError as exc:
        print(f"pensieve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
