"""The app (`app.py`) as Streamlit serves it, with the HTTP caching that a room of browsers needs
(`convlens.ui.http_cache`, `convlens.ui.static_files`). `python -m convlens app` runs this file;
`streamlit run serve.py` does the same without the warm-up, and `streamlit run app.py` serves
the pages without it."""

import streamlit as st
from starlette.middleware import Middleware

from convlens.ui.http_cache import FilesKept
from convlens.ui.static_files import StaticFilesInMemory

app = st.App("app.py", middleware=[Middleware(StaticFilesInMemory), Middleware(FilesKept)])
