"""The README's two commands are what CI and a new user run: they must stay in step."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The bash blocks of the README's "Two commands" section, in order (app, then tests)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    app, tests = readme_commands()
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == [tests]
    assert tests.startswith("./setup.sh --test && ") and app.startswith("./setup.sh && ")


def test_setup_refuses_an_unknown_option() -> None:
    result = subprocess.run(
        [str(ROOT / "setup.sh"), "--tset"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and result.stderr.strip() == "usage: ./setup.sh [--test]"
