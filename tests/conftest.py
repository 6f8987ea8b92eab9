"""Shared fixtures: every test runs offline, with its own torch hub cache and ConvLens home."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The suite must stay fast and reproducible on a 2-core runner.
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point TORCH_HOME and CONVLENS_HOME at fresh temporary folders, switch downloads off.

    Returns the temporary TORCH_HOME. Tests that need pretrained weights of a torchvision model
    write stand-in files into this cache themselves; nothing reads the real cache or the network.
    """
    root = tmp_path_factory.mktemp("home")
    torch_home = root / "torch"
    monkeypatch.setenv("CONVLENS_OFFLINE", "1")
    # `convlens app` would analyse the shipped models in the background; tests ask for it.
    monkeypatch.setenv("CONVLENS_PREPARE", "0")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("CONVLENS_HOME", str(root / "convlens"))
    # torch.hub.set_dir() would override TORCH_HOME for the rest of the process; undo it.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    assert Path(torch.hub.get_dir()) == torch_home / "hub"
    return torch_home
