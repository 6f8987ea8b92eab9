"""The browser's code for the elements ConvLens' pages draw, loaded by every tab while it is idle.

Streamlit's page fetches and compiles an element type's code (a chart, a slider, a multiselect…)
the first time a tab draws one: in a tab opened on Home, the first CNNVis page loaded 33 scripts.
So every page carries a small script that, once the tab is idle, imports the element modules
ConvLens' pages use, one at a time, by the same addresses Streamlit imports them from: when a page
then draws its first chart, the module is there already (a tab's first CNNVis page about a tenth
of a second sooner on two cores: docs/performance.md, *A tab's first page*).

The modules' file names carry a hash of their content and change with every Streamlit release;
they are read from the installed Streamlit's main script, which imports each element's module by
name (`import(`./ArrowVegaLiteChart.C1pLU68S.js`)`), and from its loader of Vega. A name the
installed Streamlit does not have is left out: the page then loads that code as before.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import streamlit as st

# The element modules that ConvLens' pages load (found by opening each page in a fresh tab and
# listing the modules the main script imports lazily), in the order the pages need them most.
ELEMENT_MODULES = (
    "ArrowVegaLiteChart",
    "embed",  # Vega-Embed, which the chart module loads on its first chart
    "vega-interpreter",
    "ComponentInstance",  # the chain
    "ButtonGroup",
    "Multiselect",
    "Slider",
    "NumberInput",
    "TextInput",
    "Button",
    "Spinner",
    "Html",
    "DataFrame",
    "Table",
    "DownloadButton",
    "StreamlitSyntaxHighlighter",
    "Metric",
    "Checkbox",  # a toggle
    "Progress",
    "Toast",
)
STATIC_SCRIPTS = Path(st.__file__).parent / "static" / "static" / "js"
# a lazily imported module of a Vite build: import(`./Name.Hash.js`) or import("./Name.Hash.js")
LAZY_IMPORT = re.compile(r"""import\([`"]\./([\w.-]+\.js)[`"]\)""")


def lazy_modules(scripts: Path) -> dict[str, str]:
    """The modules that Streamlit's main script (`index.*.js`) and its Vega loader import lazily
    in the folder `scripts`, by name (the file name up to its hash): {} where none is found."""
    found: dict[str, str] = {}
    for pattern in ("index.*.js", "loadVegaEmbed.*.js"):
        for script in sorted(scripts.glob(pattern)):
            for file in LAZY_IMPORT.findall(script.read_text(encoding="utf-8", errors="replace")):
                found.setdefault(file.rsplit(".", 2)[0], file)
    return found


def preload_html(files: list[str]) -> str:
    """The script that imports `files` (in Streamlit's script folder) one per idle moment, once
    per tab; nothing where the page's main script is not found."""
    return (
        "<script>(() => {"
        "if (window.convlensPreloads) return; window.convlensPreloads = true;"
        'const main = document.querySelector(\'script[type="module"][src*="/static/js/index."]\');'
        "if (!main) return;"
        "const folder = main.src.slice(0, main.src.lastIndexOf('/') + 1);"
        f"const files = {json.dumps(files)};"
        "const idle = window.requestIdleCallback || ((run) => setTimeout(run, 200));"
        "const next = () => { const file = files.shift(); if (!file) return;"
        " import(folder + file).catch(() => {}).finally(() => idle(next, { timeout: 2000 })); };"
        "idle(next, { timeout: 2000 });"
        "})();</script>"
    )


@functools.cache
def page_preload_html() -> str | None:
    """`preload_html` of the installed Streamlit's `ELEMENT_MODULES`; None if it has none."""
    modules = lazy_modules(STATIC_SCRIPTS)
    files = [modules[name] for name in ELEMENT_MODULES if name in modules]
    return preload_html(files) if files else None


def preload_element_code() -> None:
    """Put the preloading script in the page (in the sidebar, where it takes no room)."""
    html = page_preload_html()
    if html is not None:
        st.sidebar.html(html, unsafe_allow_javascript=True)
