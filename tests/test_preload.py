"""The element modules every tab loads while idle (`convlens.ui.preload`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from convlens.ui.preload import (
    ELEMENT_MODULES,
    STATIC_SCRIPTS,
    lazy_modules,
    page_preload_html,
    preload_html,
)


def test_lazy_modules_are_read_from_the_main_script_and_the_vega_loader(tmp_path: Path) -> None:
    (tmp_path / "index.Ab12Cd34.js").write_text(
        "const a=(0,U.lazy)(()=>H(()=>import(`./Slider.WU6er_Bo.js`),__vite__mapDeps([1])));"
        'const b=()=>import("./Table.CGMoNb2f.js");import{x}from"./react-dom.Dzbslgj4.js";'
    )
    (tmp_path / "loadVegaEmbed.B2YPPFq-.js").write_text("await import(`./embed.CX5AQgxi.js`)")
    (tmp_path / "Other.XyZ12345.js").write_text("import(`./Hidden.Q1w2E3r4.js`)")
    assert lazy_modules(tmp_path) == {
        "Slider": "Slider.WU6er_Bo.js",
        "Table": "Table.CGMoNb2f.js",
        "embed": "embed.CX5AQgxi.js",
    }
    assert lazy_modules(tmp_path / "missing") == {}


def test_the_installed_streamlit_has_every_element_module_the_pages_use() -> None:
    """A Streamlit release that renames one shows here (the page would load it late again)."""
    modules = lazy_modules(STATIC_SCRIPTS)
    assert [name for name in ELEMENT_MODULES if name not in modules] == []
    for name in ELEMENT_MODULES:
        assert (STATIC_SCRIPTS / modules[name]).is_file()


def test_the_preloading_script_imports_the_files_once_per_tab() -> None:
    html = preload_html(["Slider.WU6er_Bo.js", "embed.CX5AQgxi.js"])
    assert html.startswith("<script>") and html.endswith("</script>")
    [files] = re.findall(r"const files = (\[.*?\]);", html)
    assert json.loads(files) == ["Slider.WU6er_Bo.js", "embed.CX5AQgxi.js"]
    assert "if (window.convlensPreloads) return" in html
    installed = page_preload_html()
    assert installed is not None
    assert all(
        f'"{file}"' in installed
        for file in lazy_modules(STATIC_SCRIPTS).values()
        if file.rsplit(".", 2)[0] in ELEMENT_MODULES
    )
