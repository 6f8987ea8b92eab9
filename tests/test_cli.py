"""The command line: JSON contracts, exit statuses, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from images import BAD_IMAGES

from convlens.cli import main
from convlens.models import hub_cache_path, list_models
from convlens.paths import ASSETS_DIR

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m convlens ARGS` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "convlens", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=300,
    )


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("models", "predict", "graph", "weights"):
        assert command in result.stdout
    assert shutil.which("convlens") or (Path(sys.executable).parent / "convlens").exists()
    installed = subprocess.run(
        [str(Path(sys.executable).parent / "convlens"), "--version"], capture_output=True, text=True
    )
    assert installed.returncode == 0 and "convlens" in installed.stdout


def test_models_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list_models()
    for row in rows:
        assert set(row) == {"name", "input_size", "num_classes", "weights_available", "description"}
        assert len(row["input_size"]) == 3
        assert row["num_classes"] == (10 if row["input_size"][0] == 1 else 1000)
    available = {row["name"]: row["weights_available"] for row in rows}
    assert available["efficientnet_lite0"] is True
    assert available["alexnet"] is False  # TORCH_HOME is an empty temp dir in tests


def test_predict_json_on_the_default_model() -> None:
    result = run_cli("predict", "--image", "sample:chelsea", "--top", "3", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "efficientnet_lite0"
    assert payload["weights_status"] == "bundled"
    assert len(payload["predictions"]) == 3
    first = payload["predictions"][0]
    assert set(first) == {"label", "index", "probability"}
    assert first["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    probabilities = [p["probability"] for p in payload["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_predict_untrained_model_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model", "resnet18", "--image", "sample:coffee", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["weights_status"] == "untrained"
    assert main(["predict", "--model", "resnet18", "--image", "sample:coffee"]) == 0
    captured = capsys.readouterr()
    assert "python -m convlens weights fetch resnet18" in captured.err


def test_graph_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--model", "resnet18", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"] == "resnet18" and payload["input_size"] == [3, 224, 224]
    keys = {"id", "type", "output_shape", "params", "neurons", "receptive_field", "jump", "group"}
    types = {"conv", "linear", "pool", "norm", "activation", "dropout", "flatten", "other"}
    ids = [node["id"] for node in payload["nodes"]]
    for node in payload["nodes"]:
        assert set(node) == keys
        assert node["type"] in types
    assert "layer1.0.relu:2" in ids, "a reused module gets PATH:2 for its second call"
    assert all(src in ids and dst in ids for src, dst in payload["edges"])
    conv1 = payload["nodes"][ids.index("conv1")]
    assert (
        conv1["output_shape"] == [64, 112, 112]
        and conv1["receptive_field"] == 7
        and conv1["jump"] == 2
    )
    fc = payload["nodes"][ids.index("fc")]
    assert fc["receptive_field"] is None and fc["neurons"] == 1000


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_images_exit_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_IMAGES[name])
    assert main(["predict", "--image", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0]
    assert "Traceback" not in captured.err


def test_bad_image_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(BAD_IMAGES["cut.png"])
    result = run_cli("predict", "--image", str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["predict"],
        ["predict", "--image", "sample:chelsea", "--top", "zero"],
        ["predict", "--image", "sample:chelsea", "--top", "0"],
        ["predict", "--image", "sample:no_such_photo"],
        ["predict", "--image", "/no/such/file.png"],
        ["predict", "--model", "lenet99", "--image", "sample:chelsea"],
        ["graph", "--model", "lenet99"],
        ["frobnicate"],
        ["weights"],
        ["weights", "import", "alexnet", "/no/such/weights.pth"],
        ["predict", "--image", "sample:chelsea", "--weights", "/no/such/weights.pth"],
    ],
)
def test_usage_and_input_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("convlens: ")


def test_hostile_weights_are_refused_without_running_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Payload()}, path)
    assert (
        main(["predict", "--model", "alexnet", "--image", "sample:chelsea", "--weights", str(path)])
        == 2
    )
    assert not marker.exists()
    assert "evil.pth" in capsys.readouterr().err


def test_weights_import_then_models_reports_available(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convlens.models import build_untrained, model_spec

    path = tmp_path / "alexnet-copy.pth"
    torch.save(build_untrained(model_spec("alexnet")).state_dict(), path)
    assert main(["weights", "import", "alexnet", str(path)]) == 0
    assert hub_cache_path("alexnet").is_file()
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["alexnet"]["weights_available"] is True
    assert main(["predict", "--model", "alexnet", "--image", "sample:chelsea", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights_status"] == "cache"


def test_weights_import_refuses_a_mismatching_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convlens.models import build_untrained, model_spec

    path = tmp_path / "resnet.pth"
    torch.save(build_untrained(model_spec("resnet18")).state_dict(), path)
    assert main(["weights", "import", "alexnet", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing features.0.weight" in err
    assert not hub_cache_path("alexnet").exists()


def test_weights_fetch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "fetch", "efficientnet_lite0"]) == 0
    assert "ship with ConvLens" in capsys.readouterr().out
    # The tests run with CONVLENS_OFFLINE=1: a download is refused at once, in one line.
    assert main(["weights", "fetch", "alexnet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "weights import alexnet" in err
    assert not hub_cache_path("alexnet").exists()


def test_a_broken_user_model_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        "from torch import nn\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3)\n"
        "        self.fc = nn.Linear(10, 2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.conv(x))\n"
    )
    argv = ["predict", "--model-file", f"{source}:Tiny", "--image", "sample:chelsea"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "RuntimeError" in err


def test_a_user_model_predicts_and_graphs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "small.py"
    source.write_text(
        "from torch import nn\n"
        "class Small(nn.Module):\n"
        "    input_size = (3, 32, 32)\n"
        "    class_names = ['yes', 'no']\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True),\n"
        "                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
    )
    assert (
        main(["predict", "--model-file", f"{source}:Small", "--image", "sample:coffee", "--json"])
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert {p["label"] for p in payload["predictions"]} == {"yes", "no"}
    assert main(["graph", "--model", f"file:{source}:Small", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert [n["id"] for n in nodes] == ["body.0", "body.1", "body.2", "body.3", "body.4"]
    assert nodes[0]["receptive_field"] == 3


def test_train_runs_and_run_models_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny DeepEyes run trained by the CLI is listed, loads as run:DIR and can be deleted."""
    from convlens.models import load_model

    out = tmp_path / "runs" / "tiny"
    argv = ["train", "--arch", "deepeyes", "--epochs", "1", "--conv1", "2", "--conv2", "3"]
    argv += ["--fc1", "8", "--snapshot-every", "400", "--out", str(out)]
    assert main(argv) == 0
    assert f"run:{out}" in capsys.readouterr().out
    model = load_model(f"run:{out}")
    assert model.input_size == (1, 28, 28) and model.class_names[9] == "Ankle boot"
    assert model.weights_status == "file"
    assert (
        main(["predict", "--model", f"run:{out}@400", "--image", "fashion-mnist:test:0", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["model"] == f"run:{out}@400"
    assert main(["graph", "--model", f"run:{out}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"][0]["id"] == "features.conv1"
    assert main(["runs", "--json"]) == 0
    listed = [Path(row["path"]) for row in json.loads(capsys.readouterr().out)]
    assert out not in listed and all(p.parent.name == "runs" for p in listed)  # not a run folder
    assert main(["runs", "delete", str(out)]) == 0
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--arch", "deepeyes", "--epochs", "1", "--width", "2"],
        ["train", "--arch", "basecnn", "--epochs", "1", "--conv1", "3"],
        ["train", "--arch", "deepeyes", "--epochs", "0"],
        ["train", "--arch", "deepeyes", "--epochs", "1", "--resume"],
        ["train", "--arch", "lenet", "--epochs", "1"],
        ["runs", "stop", "no-such-run"],
        ["runs", "delete", "no-such-run"],
        ["predict", "--model", "run:/no/such/run", "--image", "sample:chelsea"],
        ["predict", "--model", "run:/tmp@last", "--image", "sample:chelsea"],
    ],
)
def test_training_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err


def test_runs_lists_user_runs_and_survives_broken_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from convlens.paths import convlens_home

    broken = convlens_home() / "runs" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    shipped = [row for row in rows if Path(row["path"]).is_relative_to(ASSETS_DIR)]
    assert len(shipped) >= 7 and all(row["status"] == "finished" for row in shipped)
    assert [row for row in rows if row not in shipped] == [
        {
            "path": str(broken),
            "arch": None,
            "status": "unreadable",
            "step": None,
            "test_accuracy": None,
        }
    ]


def test_runs_stop_ends_a_running_training_which_can_then_be_deleted(tmp_path: Path) -> None:
    """A real training process is listed as running, stopped by `runs stop`, then deleted."""
    import time

    from convlens.runformat import list_snapshots, run_status

    out = tmp_path / "long"
    command = [sys.executable, "-m", "convlens", "train", "--arch", "deepeyes", "--epochs", "50"]
    command += [
        "--conv1",
        "2",
        "--conv2",
        "3",
        "--fc1",
        "8",
        "--snapshot-every",
        "50",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list_snapshots(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_snapshots(out), "the run wrote a snapshot"
        assert run_status(out) == "running"
        assert run_cli("runs", "stop", str(out)).returncode == 0
        process.wait(timeout=60)
    finally:
        process.kill()
    assert run_status(out) == "incomplete"
    assert run_cli("runs", "delete", str(out)).returncode == 0
    assert not out.exists()


def test_resume_needs_only_the_folder_and_the_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run with non-default options continues with `--out RUN --resume --epochs N` alone."""
    from convlens.runformat import read_manifest, read_metrics

    out = tmp_path / "run"
    argv = ["train", "--arch", "deepeyes", "--epochs", "1", "--conv1", "2", "--conv2", "3"]
    argv += ["--fc1", "8", "--seed", "7", "--optimizer", "adam", "--out", str(out)]
    assert main(argv) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    manifest = read_manifest(out)
    assert manifest["config"]["seed"] == 7 and manifest["config"]["optimizer"] == "adam"
    assert [r["epoch"] for r in read_metrics(out) if "test_accuracy" in r] == [1, 2]
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--seed", "8"]) == 2
    assert "seed" in capsys.readouterr().err


def test_a_stopped_run_resumes_in_the_background_to_its_planned_epochs(tmp_path: Path) -> None:
    """What the Training page's Resume button does: `resume_run` finishes an interrupted run."""
    import time

    from convlens.runformat import read_metrics, run_status
    from convlens.runs import resume_run
    from convlens.training import train

    out = tmp_path / "stopped"

    def interrupt(step: int) -> None:
        if step == 30:
            raise KeyboardInterrupt

    options = {"conv1": 2, "conv2": 3, "fc1": 8, "limit_train": 1024, "limit_test": 256}
    with pytest.raises(KeyboardInterrupt):
        train(
            "deepeyes",
            out,
            epochs=2,
            progress=False,
            snapshot_every=10,
            callback=interrupt,
            **options,
        )
    assert run_status(out) == "incomplete"
    resume_run(str(out))
    deadline = time.monotonic() + 120
    while run_status(out) != "finished" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert run_status(out) == "finished", (out / "train.log").read_text()[-1500:]
    assert [r["epoch"] for r in read_metrics(out) if "test_accuracy" in r] == [1, 2]


def test_runs_started_at_once_get_their_own_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two app sessions pressing Start in the same second never share a run folder."""
    from concurrent.futures import ThreadPoolExecutor

    import convlens.runs as runs

    commands: list[list[str]] = []
    monkeypatch.setattr(runs, "_spawn", lambda command, out: commands.append(command))
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: runs.start_run("deepeyes", 1, {"seed": 1}), range(16)))
    assert len(set(folders)) == 16 and all(folder.is_dir() for folder in folders)
    assert {Path(command[command.index("--out") + 1]) for command in commands} == set(folders)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("picture.png", None, "'picture.png' is an image (PNG), not a weights file"),
        ("notes.txt", b"lecture notes\n" * 10, "'notes.txt' is not a weights file"),
        ("plain.pkl", b"\x80\x04\x95" + bytes(40), "'plain.pkl' holds pickled Python objects"),
    ],
)
def test_weights_import_says_what_the_file_is_in_one_line(
    name: str, content: bytes | None, message: str, tmp_path: Path, capsys
) -> None:
    from PIL import Image

    path = tmp_path / name
    if content is None:
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_bytes(content)
    assert main(["weights", "import", "alexnet", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convlens: {message}") and err.count("\n") == 1, err
    assert "pickled" not in err or name.endswith(".pkl")


def test_prepare_with_untrained_weights_says_so_and_keys_the_cache_by_the_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convlens.activations import cache_path
    from convlens.models import load_model

    argv = ["prepare", "--model", "deepeyes", "--data", "fashion-mnist:test", "--limit", "20"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == f"note: {load_model('deepeyes').weights_note}\n"
    assert "deepeyes is untrained" in captured.err
    assert captured.out.startswith("deepeyes (untrained weights) on fashion-mnist:test: 20 images")
    untrained = cache_path(load_model("deepeyes"), "fashion-mnist:test", limit=20)
    assert untrained.is_file()

    # other weights under the same name never find the untrained statistics
    trained = load_model("deepeyes", device="cpu").module
    with torch.no_grad():
        trained.classifier.fc2.bias += 1.0
    weights = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), weights)
    assert main([*argv, "--weights", str(weights)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "", "weights from a file are not untrained"
    assert "(file weights)" in captured.out and "already cached" not in captured.out
    assert cache_path(load_model("deepeyes", weights=weights), "fashion-mnist:test", limit=20) != (
        untrained
    )


def test_every_json_output_is_written_by_one_helper_with_one_indentation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from convlens.cli import JSON_INDENT, json_text

    commands = [
        ["models", "--json"],
        ["predict", "--image", "sample:chelsea", "--top", "3", "--json"],
        ["graph", "--model", "deepeyes", "--json"],
        ["runs", "--json"],
        ["deepeyes", "--run", "fashion_deepeyes", "--json"],
        ["annotations", "list", "--json"],
        [
            "analyze",
            "--model",
            "deepeyes",
            "--data",
            "fashion-mnist:test",
            "--limit",
            "10",
            "--layers",
            "features.conv1",
            "--top-k",
            "2",
            "--json",
        ],  # fmt: skip
        [
            "annotations",
            "ablate",
            "--model",
            "deepeyes",
            "--data",
            "fashion-mnist:test",
            "--limit",
            "10",
            "--json",
        ],  # fmt: skip
    ]
    assert main(["annotations", "set", "--model", "deepeyes", "--layer", "features.conv1",
                 "--filter", "3", "--label", "useless", "--note", "café"]) == 0  # fmt: skip
    capsys.readouterr()
    outputs = {}
    for argv in commands:
        assert main(argv) == 0, argv
        out = outputs[argv[0] + argv[1]] = capsys.readouterr().out
        assert out == json_text(json.loads(out)) + "\n", argv
        assert out.startswith(("{\n", "[\n")), argv  # indented, not one compact line
        indents = {len(line) - len(line.lstrip(" ")) for line in out.splitlines()}
        assert all(indent % JSON_INDENT == 0 for indent in indents), argv
    assert '"note": "café"' in outputs["annotationslist"], "non-ASCII is written as it is"


def test_json_text_keeps_long_lists_of_numbers_on_one_line_and_refuses_nan() -> None:
    from convlens.cli import json_text

    value = {"model": "m", "layers": [{"id": "conv", "max": [0.5] * 100}]}
    assert json_text(value) == (
        '{\n  "model": "m",\n  "layers": [\n    {\n      "id": "conv",\n'
        f'      "max": {json.dumps([0.5] * 100)}\n    }}\n  ]\n}}'
    )
    assert json_text({"a": [1, 2], "b": None}) == '{"a": [1, 2], "b": null}'
    with pytest.raises(ValueError):
        json_text({"x": float("nan")})
