"""ConvLens: the entry point. Navigation, and the URL that mirrors the state once per run.

Each page draws the shared sidebar itself (`convlens.ui.sidebar.page_setup`)."""

import streamlit as st

from convlens.ui.launch import use_serving_threads
from convlens.ui.navigation import PAGE_STYLE, PAGES
from convlens.ui.state import HISTORY_SCRIPT, mirrored_in_url, note_history_navigation

use_serving_threads()  # also under plain `streamlit run app.py`
note_history_navigation()

st.set_page_config(page_title="ConvLens", page_icon="🔍", layout="wide")
st.sidebar.markdown(PAGE_STYLE, unsafe_allow_html=True)  # style only: the sidebar shows nothing
st.sidebar.html(HISTORY_SCRIPT, unsafe_allow_javascript=True)  # a page switch is one Back

navigation = st.navigation(
    [
        st.Page(
            page.path, title=page.title, icon=page.icon, url_path=page.url_path, default=index == 0
        )
        for index, page in enumerate(PAGES)
    ]
)
# the default page's path is "": the URL keys are registered under its own (`PAGES`)
with mirrored_in_url(navigation.url_path or PAGES[0].url_path):
    navigation.run()
