"""Settings page: every server setting by group; Apply changes the running server, Save writes `.env`.

Secrets (API keys) are only ever shown masked; typing a new key replaces it, leaving the masked text
as it is keeps it. Keys marked "restart" are read at start-up: they are saved, and apply after a restart.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import circuit_badge
from pensieve.ui.settings_form import changed_values, choices, label, widget_value
from pensieve.ui.state import get_client
from pensieve.ui.widgets import page_header, show_error

PREFIX = "setting::"
NOTICE = "settings_notice"
UNSAVED = "settings_unsaved"


def _widget(key: str, kind: str, value: Any, help_text: str, restart: bool) -> None:
    widget_key = PREFIX + key
    if widget_key not in st.session_state:
        st.session_state[widget_key] = widget_value(kind, value)
    text = label(key) + (" · restart" if restart else "")
    help_text = f"{help_text}\n\n`{key}`" + ("\n\nRead at start-up: applies after a restart." if restart else "")
    if kind == "bool":
        st.toggle(text, key=widget_key, help=help_text)
    elif kind == "int":
        st.number_input(text, key=widget_key, step=1, help=help_text)
    elif kind == "float":
        st.number_input(text, key=widget_key, step=0.05, format="%g", help=help_text, placeholder="none")
    elif kind.startswith("choice:"):
        st.selectbox(text, choices(kind), key=widget_key, help=help_text)
    elif kind == "secret":
        st.text_input(text, key=widget_key, type="password", help=help_text + "\n\nShown masked; type a new key.")
    else:
        st.text_input(text, key=widget_key, help=help_text)


def _providers(client: PensieveClient) -> None:
    try:
        providers = client.burst_stats(recent=0)["providers"]
    except ServerError as error:
        show_error(error, "Reading the cloud providers")
        return
    if not providers:
        st.info("No cloud provider is configured: set a base URL, key and model above.", icon=":material/cloud_off:")
        return
    st.markdown("##### Configured providers")
    for provider in providers:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            st.markdown(f"**{provider['name']}**  \n`{provider['base_url']}`")
            st.markdown(f"key `{provider.get('api_key') or 'none'}`")
            st.markdown(", ".join(model["id"] for model in provider["models"]) or "no models")
            badge = circuit_badge(provider["circuit"]["state"])
            st.badge(badge.label, color=badge.color, icon=badge.icon)


def _form(client: PensieveClient, described: dict[str, Any]) -> None:
    values, types = described["settings"], described["types"]
    restart = set(described["restart_required"])
    groups = {group: keys for group, keys in described["groups"].items() if keys}
    with st.form("settings_form", border=False):
        for tab, (group, keys) in zip(st.tabs(list(groups)), groups.items(), strict=True):
            with tab:
                # Switches first, three to a row, then the values two to a row.
                switches = [key for key in keys if types[key] == "bool"]
                fields = [key for key in keys if types[key] != "bool"]
                for per_row, group_keys in ((3, switches), (2, fields)):
                    if not group_keys:
                        continue
                    columns = st.columns(per_row, gap="large")
                    for index, key in enumerate(group_keys):
                        with columns[index % per_row]:
                            description = described["descriptions"].get(key, "")
                            _widget(key, types[key], values.get(key), description, key in restart)
                if group == "Cloud":
                    _providers(client)
        applied = st.form_submit_button("Apply to the running server", type="primary", icon=":material/bolt:")
    if applied:
        edited = {key: st.session_state[PREFIX + key] for key in values if PREFIX + key in st.session_state}
        changes = changed_values(types, values, edited)
        if not changes:
            st.info("Nothing changed.", icon=":material/info:")
            return
        try:
            client.change_settings(changes)
        except ServerError as error:
            show_error(error, "Applying the settings")
            return
        for key in list(st.session_state):
            if isinstance(key, str) and key.startswith(PREFIX):
                del st.session_state[key]
        st.session_state[NOTICE] = f"Applied {len(changes)} change(s): {', '.join(label(key) for key in changes)}."
        st.session_state[UNSAVED] = True
        st.rerun()


def _save(client: PensieveClient, env_file: str) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button("Save to .env", icon=":material/save:", key="settings_save"):
            try:
                path = client.save_settings()
            except ServerError as error:
                show_error(error, "Saving the settings")
                return
            st.session_state[UNSAVED] = False
            st.session_state[NOTICE] = f"Saved the running settings to {path}."
            st.rerun()
        if st.session_state.get(UNSAVED):
            st.badge("Applied, not saved yet", color="orange", icon=":material/warning:")
        st.caption(f"Writes the running settings into `{env_file}`; its comments stay.")


def render() -> None:
    """Draw the settings page."""
    client = get_client()
    page_header("Settings", "Changes apply to the running server at once; Save writes them to .env.")
    try:
        described = client.settings()
    except ServerError as error:
        show_error(error, "Reading the settings")
        return
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.success(notice, icon=":material/check_circle:")
    _save(client, described["env_file"])
    _form(client, described)


if __name__ == "__main__":
    render()
