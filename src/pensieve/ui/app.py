"""Streamlit entry point of the Pensieve UI: page set-up, sidebar navigation, server status.

Run with `pensieve ui` (or `streamlit run src/pensieve/ui/app.py`). Each page is a script in
`views/` that Streamlit runs; its `render()` draws it.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pensieve.ui.widgets import sidebar_status

VIEWS = Path(__file__).resolve().with_name("views")
LOGO = Path(__file__).resolve().with_name("logo.svg")
# The browser tab's icon, a file of the package: a `:material/...:` page icon makes the browser fetch the
# favicon from fonts.gstatic.com, and the UI must need no network.
ICON = Path(__file__).resolve().with_name("icon.svg")
# Less empty space above the page title than Streamlit's default.
STYLE = "<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }</style>"


def main() -> None:
    """Configure the page, draw the sidebar and run the selected page."""
    st.set_page_config(page_title="Pensieve", page_icon=str(ICON), layout="wide")
    st.logo(str(LOGO), size="large")
    st.html(STYLE)
    pages = {
        "Use": [
            st.Page(VIEWS / "chat.py", title="Chat", icon=":material/forum:", default=True),
            st.Page(VIEWS / "files.py", title="Files", icon=":material/folder_open:"),
        ],
        "Operate": [
            st.Page(VIEWS / "models.py", title="Models", icon=":material/deployed_code:"),
            st.Page(VIEWS / "monitoring.py", title="Monitoring", icon=":material/monitoring:"),
            st.Page(VIEWS / "settings.py", title="Settings", icon=":material/tune:"),
        ],
    }
    page = st.navigation(pages)
    sidebar_status()
    page.run()


if __name__ == "__main__":
    main()
