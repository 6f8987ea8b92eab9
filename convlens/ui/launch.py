"""`python -m convlens app`: `streamlit run app.py`, with the heavy imports warmed up meanwhile.

The page script runs in the server's process, so modules that a background thread has imported
while the browser loads Streamlit's front end need not be imported again by the first run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

APP = Path(__file__).resolve().parent.parent.parent / "app.py"


def warm_up() -> None:
    """Import the library the pages need and run the default model once (kernels set up once).

    Nothing Streamlit-aware is imported here: components must be declared by the page runs,
    once the server's runtime exists.
    """
    from convlens import charts, graph, weights  # noqa: F401
    from convlens.data import DEFAULT_IMAGE, load_image
    from convlens.models import DEFAULT_MODEL, load_model
    from convlens.predict import predict

    predict(load_model(DEFAULT_MODEL), load_image(DEFAULT_IMAGE).image)


def run_app(streamlit_args: Sequence[str] = ()) -> None:
    """Start the app like `streamlit run app.py ARGS`; does not return."""
    from streamlit.web import cli

    threading.Thread(target=warm_up, name="convlens-warm-up", daemon=True).start()
    cli.main(["run", str(APP), *streamlit_args], prog_name="streamlit")
