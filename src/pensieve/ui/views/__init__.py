"""The UI's pages: each module is a script Streamlit runs (`render()` draws the page)."""
