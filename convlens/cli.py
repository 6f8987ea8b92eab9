"""`python -m convlens` / `convlens`: the command line over the same library functions as the app."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from convlens import __version__
from convlens.access import whole_number
from convlens.ui.launch import add_serving_options

if TYPE_CHECKING:
    from convlens.models import LoadedModel


JSON_INDENT = 2
JSON_WIDTH = 100


_JSON_LINE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def json_text(value: object, level: int = 0) -> str:
    """Return `value` as the JSON that every `--json` prints: an object or list on one line when
    it fits in JSON_WIDTH, and a list of plain values (numbers, strings: a neuron's statistics)
    however long; else one item a line, indented by JSON_INDENT a level. NaN is a ValueError."""
    if not isinstance(value, dict | list | tuple) or not value:
        return _JSON_LINE.encode(value)
    room = JSON_WIDTH - JSON_INDENT * level
    if 3 * len(value) <= room:  # else it cannot fit: each item takes ", " and a character
        line = _JSON_LINE.encode(value)
        if len(line) <= room:
            return line
    if not isinstance(value, dict) and not any(
        isinstance(item, dict | list | tuple) for item in value
    ):
        return _JSON_LINE.encode(value)
    pad = " " * (JSON_INDENT * (level + 1))
    if isinstance(value, dict):
        # json.dumps writes a number, true or null key as a string; so does this
        lines = [
            f"{pad}{_JSON_LINE.encode(key if isinstance(key, str) else json.dumps(key))}: "
            f"{json_text(item, level + 1)}"
            for key, item in value.items()
        ]
        opening, closing = "{", "}"
    else:
        lines = [f"{pad}{json_text(item, level + 1)}" for item in value]
        opening, closing = "[", "]"
    return f"{opening}\n" + ",\n".join(lines) + f"\n{' ' * (JSON_INDENT * level)}{closing}"


def _print_json(value: object) -> None:
    print(json_text(value))


class CliError(Exception):
    """A usage or input error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise CliError(f"{message} (see `{self.prog} --help`)")


def _add_model_options(parser: argparse.ArgumentParser, weights: bool = True) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="a name from `convlens models`, or file:PATH.py:ClassName (default: efficientnet_lite0)",
    )
    parser.add_argument(
        "--model-file", default=None, metavar="PATH.py:ClassName", help="your own nn.Module class"
    )
    if weights:
        parser.add_argument(
            "--weights", default=None, metavar="PATH", help="a state dict (.pt, .pth, .safetensors)"
        )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = _Parser(
        prog="convlens",
        description="Look inside convolutional neural networks. Run `streamlit run app.py` for the app.",
    )
    parser.add_argument("--version", action="version", version=f"convlens {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("--json", action="store_true", help="print JSON")

    predict = commands.add_parser("predict", help="classify one image")
    _add_model_options(predict)
    predict.add_argument(
        "--image",
        required=True,
        help="sample:NAME, a file, fashion-mnist:test:INDEX or DIR:INDEX of an ImageFolder",
    )
    predict.add_argument("--top", type=int, default=5, help="how many classes (default 5)")
    predict.add_argument(
        "--download",
        action="store_true",
        help="download torchvision weights that are not on this machine (needs internet)",
    )
    predict.add_argument("--json", action="store_true", help="print JSON")

    explain = commands.add_parser(
        "explain",
        help="one convolution explained: the arithmetic behind one value of a conv layer's map",
    )
    _add_model_options(explain)
    explain.add_argument(
        "--image",
        required=True,
        help="sample:NAME, a file, fashion-mnist:test:INDEX or DIR:INDEX of an ImageFolder",
    )
    explain.add_argument(
        "--layer", required=True, metavar="ID", help="a conv layer (`convlens graph` lists them)"
    )
    explain.add_argument("--filter", required=True, type=int, metavar="K", help="0-based")
    explain.add_argument(
        "--at", required=True, metavar="Y,X", help="the position in the layer's output, 0-based"
    )
    explain.add_argument("--json", action="store_true", help="print JSON")

    graph = commands.add_parser("graph", help="the layers of a model, as a DAG (needs no weights)")
    _add_model_options(graph, weights=False)
    graph.add_argument("--json", action="store_true", help="print JSON")

    app = commands.add_parser(
        "app",
        help="start the app (streamlit run serve.py, warmed up); extra options go to streamlit",
    )
    add_serving_options(app)
    app.add_argument("streamlit_args", nargs=argparse.REMAINDER, metavar="STREAMLIT_OPTION")

    train = commands.add_parser(
        "train", help="train a small CNN on Fashion-MNIST, recording the run"
    )
    train.add_argument("--arch", choices=["deepeyes", "basecnn"], help="required unless --resume")
    train.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"])
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument(
        "--out", default=None, metavar="RUN_DIR", help="default: $CONVLENS_HOME/runs/..."
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its recorded options (--epochs may grow)",
    )
    train.add_argument("--seed", type=int, default=None, help="default 0")
    train.add_argument(
        "--snapshot-every", type=int, default=None, metavar="STEPS", help="default 100"
    )
    train.add_argument("--lr", type=float, default=None, help="default: 0.01 (sgd), 0.001 (adam)")
    train.add_argument("--batch-size", type=int, default=None, help="default 64")
    train.add_argument("--optimizer", choices=["sgd", "adam"], default=None, help="default sgd")
    train.add_argument("--loss", choices=["ce", "hinge"], default=None, help="default ce")
    train.add_argument("--init", default=None, help="default (PyTorch's), kaiming or normal:STD")
    train.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default=None,
        help="learning rate; default constant",
    )
    train.add_argument("--weight-decay", type=float, default=None, help="default 0")
    train.add_argument(
        "--probe-images", type=int, default=None, help="test images the probe samples (default 256)"
    )
    train.add_argument(
        "--probe-patches",
        type=int,
        default=None,
        help="receptive fields per conv layer in the probe (default 2000)",
    )
    train.add_argument(
        "--keep-snapshots",
        type=int,
        default=None,
        metavar="N",
        help="thin the snapshots to N (first and last kept); default: keep all",
    )
    train.add_argument("--width", type=float, default=None, help="basecnn: width multiplier")
    train.add_argument("--depth", choices=["shallow", "base", "deep"], default=None)
    train.add_argument("--batchnorm", action="store_true", help="basecnn: batch norm after convs")
    train.add_argument("--conv1", type=int, default=None, help="deepeyes: filters of conv1")
    train.add_argument("--conv2", type=int, default=None, help="deepeyes: filters of conv2")
    train.add_argument("--fc1", type=int, default=None, help="deepeyes: units of fc1")

    runs = commands.add_parser("runs", help="list, stop or delete recorded training runs")
    runs.add_argument("--json", action="store_true", help="print JSON")
    run_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION", parser_class=_Parser)
    for action, text in (("stop", "stop a running run"), ("delete", "delete a run folder")):
        run_commands.add_parser(action, help=text).add_argument("run", metavar="RUN")
    pack = run_commands.add_parser(
        "pack", help="shrink a finished run for shipping, in place, and write its card"
    )
    pack.add_argument("run", metavar="RUN")
    pack.add_argument(
        "--snapshots", type=int, default=10, help="snapshots to keep, evenly spaced (default 10)"
    )
    pack.add_argument(
        "--weights",
        type=int,
        default=1,
        help="snapshots that keep their weights (the last in float32; default 1)",
    )
    pack.add_argument("--note", default="", help="a paragraph for the card: what the run shows")
    pack.add_argument(
        "--role", default="", help="one line the app shows with the model, e.g. 'meant to fail: …'"
    )

    deepeyes = commands.add_parser(
        "deepeyes",
        help="a recorded run: perplexity histograms, dead / always-on filters, stable layers",
    )
    deepeyes.add_argument(
        "--run",
        required=True,
        metavar="RUN",
        help="a run folder, or its name under the run folders",
    )
    deepeyes.add_argument(
        "--snapshot", type=int, default=None, metavar="STEP", help="default: the last snapshot"
    )
    deepeyes.add_argument("--json", action="store_true", help="print JSON")

    cnnvis = commands.add_parser(
        "cnnvis",
        help="the CNNVis picture of a model (neuron clusters, bundled edges) as SVG, PNG or JSON",
    )
    _add_model_options(cnnvis)
    cnnvis.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="labelled images: fashion-mnist:test or an ImageFolder",
    )
    cnnvis.add_argument(
        "--layers",
        default=None,
        metavar="L1,L2",
        help="expand the layer groups that hold these layers (default: the last conv group)",
    )
    cnnvis.add_argument(
        "--clusters",
        default="auto",
        metavar="K|meanshift",
        help="K-Means clusters per layer, or meanshift",
    )
    cnnvis.add_argument("--facet", choices=["features", "activations"], default="features")
    cnnvis.add_argument(
        "--palette", choices=["green / red", "blue / orange"], default="green / red"
    )
    cnnvis.add_argument(
        "--out", required=True, metavar="FILE", help="FILE.svg, FILE.png or FILE.json"
    )

    weights = commands.add_parser("weights", help="fetch or import pretrained weights")
    weight_commands = weights.add_subparsers(
        dest="weights_command", metavar="ACTION", parser_class=_Parser
    )
    fetch = weight_commands.add_parser("fetch", help="download weights into the torch hub cache")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    imported = weight_commands.add_parser(
        "import", help="check a weights file and put it in the cache"
    )
    imported.add_argument("name", metavar="NAME")
    imported.add_argument("file", metavar="FILE")
    _add_annotations_parser(commands)
    _add_analysis_parsers(commands)
    return parser


def _add_annotations_parser(commands: argparse._SubParsersAction) -> None:
    from convlens.annotations import EXPORT_FORMATS, LABELS

    annotations = commands.add_parser(
        "annotations",
        help="label filters useful / useless / unsure; list, export, import, and check by ablation",
    )
    actions = annotations.add_subparsers(
        dest="annotations_command", metavar="ACTION", parser_class=_Parser
    )
    model_help = "a name from `convlens models`, run:RUN_DIR[@STEP] or file:PATH.py:ClassName"
    labelled = actions.add_parser("set", help="label one filter (or unit) of a model's weights")
    labelled.add_argument("--model", required=True, help=model_help)
    labelled.add_argument(
        "--layer", required=True, metavar="ID", help="a conv or linear layer (see `convlens graph`)"
    )
    labelled.add_argument("--filter", required=True, type=int, metavar="K", help="0-based index")
    labelled.add_argument("--label", required=True, choices=LABELS)
    labelled.add_argument("--note", default=None, help="free text (default: keep the stored note)")
    labelled.add_argument("--author", default=None, help="default: your login name")
    listed = actions.add_parser("list", help="list the stored annotations")
    listed.add_argument("--model", default=None, help="only this model name")
    listed.add_argument("--json", action="store_true", help="print JSON")
    exported = actions.add_parser("export", help="write every annotation as CSV or JSON")
    exported.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    exported.add_argument("--out", default=None, metavar="FILE", help="default: standard output")
    imported = actions.add_parser(
        "import", help="add the annotations of an export (all rows, or none if one is invalid)"
    )
    imported.add_argument("file", metavar="FILE")
    ablated = actions.add_parser(
        "ablate", help="accuracy before and after zeroing the filters labelled useless"
    )
    ablated.add_argument("--model", required=True, help=model_help)
    ablated.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="fashion-mnist:test, fashion-mnist:train or an ImageFolder directory",
    )
    ablated.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="the first N images (default: all for 1x28x28 models, else 1000)",
    )
    ablated.add_argument(
        "--author", default=None, help="only this author's labels (default: everyone's latest)"
    )
    ablated.add_argument("--json", action="store_true", help="print JSON")


def _add_analysis_parsers(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="activations over a dataset: per-class means, maxima, frequencies, top patches",
        description="Per neuron of each layer, over the first N images of a source: the mean "
        "activation per class, the maximum, the activation frequency (the share of 2,000 sampled "
        "patches per layer above half the maximum; all patches when a layer has fewer) and the "
        "top-k image patches with their receptive fields. One forward pass; cached on disk.",
    )
    prepare = commands.add_parser(
        "prepare", help="fill the activation cache ahead of a lecture (same options as analyze)"
    )
    for parser in (analyze, prepare):
        _add_model_options(parser)
        parser.add_argument(
            "--data",
            required=True,
            metavar="SOURCE",
            help="fashion-mnist:test, fashion-mnist:train, samples or an ImageFolder directory",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            metavar="N",
            help="the first N images (default: all for 1x28x28 models, else 1000)",
        )
        parser.add_argument(
            "--layers", default=None, metavar="L1,L2", help="conv / linear layers (default: all)"
        )
        parser.add_argument("--top-k", type=int, default=9, help="patches per neuron (default 9)")
        parser.add_argument(
            "--reduce",
            choices=["mean", "max"],
            default="mean",
            help="an image's activation: the spatial mean (default) or max of its map",
        )
    analyze.add_argument("--out", default=None, metavar="FILE", help="write the JSON to FILE")
    analyze.add_argument("--json", action="store_true", help="print JSON")


def _model_name(args: argparse.Namespace) -> str:
    from convlens.models import DEFAULT_MODEL

    if args.model_file and args.model:
        raise CliError("give either --model or --model-file, not both")
    if args.model_file:
        return f"file:{args.model_file}"
    return args.model or DEFAULT_MODEL


def _run_models(args: argparse.Namespace) -> None:
    from convlens.models import zoo

    entries = zoo()
    if args.json:
        rows = [
            {
                "name": entry.name,
                "input_size": list(entry.input_size),
                "num_classes": entry.num_classes,
                "weights_available": entry.weights_available,
                "description": entry.description,
            }
            for entry in entries
        ]
        _print_json(rows)
        return
    width = max(len(entry.name) for entry in entries) + 2
    print(f"{'name':<{width}}{'input':<14}{'classes':>8}  weights")
    for entry in entries:
        size = "x".join(str(v) for v in entry.input_size)
        state = "available" if entry.weights_available else f"missing: `{entry.how_to_get_weights}`"
        print(f"{entry.name:<{width}}{size:<14}{entry.num_classes:>8}  {state}")


def _run_predict(args: argparse.Namespace) -> None:
    from convlens.data import load_image
    from convlens.models import resolve_model
    from convlens.predict import predict

    if args.top < 1:
        raise CliError("--top must be at least 1")
    image = load_image(args.image)
    model = resolve_model(_model_name(args), weights=args.weights, download=args.download)
    predictions = predict(model, image.image, top=args.top)
    if args.json:
        payload = {
            "model": model.name,
            "weights_status": model.weights_status,
            "predictions": [
                {"label": p.label, "index": p.index, "probability": p.probability}
                for p in predictions
            ],
        }
        _print_json(payload)
        return
    _note_untrained(model)
    print(f"{model.name} ({model.weights_status} weights) on {image.source}:")
    for p in predictions:
        print(f"  {p.probability:7.2%}  {p.label} (#{p.index})")


def _note_untrained(model: LoadedModel) -> None:
    """Say on stderr, in one line, that `model` has untrained weights (and how to get trained
    ones): what it computed is then not what the pretrained network does. Called once the work
    succeeded, so that an error stays the only line."""
    if not model.pretrained:
        print(f"note: {model.weights_note}", file=sys.stderr)


def _run_graph(args: argparse.Namespace) -> None:
    from convlens.annotations import counted
    from convlens.graph import build_graph
    from convlens.models import build_untrained, model_spec, resolve_model
    from convlens.runformat import RUN_PREFIX

    name = _model_name(args)
    if name.startswith(("file:", RUN_PREFIX)):
        loaded = resolve_model(name, device="cpu")
        module, input_size = loaded.module, loaded.input_size
    else:
        spec = model_spec(name)
        module, input_size = build_untrained(spec), spec.input_size
    graph = build_graph(module, input_size)
    if args.json:
        payload = {
            "model": name,
            "input_size": list(input_size),
            "nodes": [
                {
                    "id": layer.id,
                    "type": layer.type,
                    "output_shape": list(layer.output_shape),
                    "params": layer.params,
                    "neurons": layer.neurons,
                    "receptive_field": layer.receptive_field,
                    "jump": layer.jump,
                    "group": layer.group,
                }
                for layer in graph.layers
            ],
            "edges": [list(edge) for edge in graph.edges],
        }
        _print_json(payload)
        return
    print(
        f"{name}: {counted(len(graph.layers), 'layer')}, "
        f"{counted(len(graph.chain), 'chain node')}, {counted(len(graph.groups), 'group')}"
    )
    print(f"{'id':<34}{'type':<11}{'output':<16}{'params':>10}{'field':>7}{'jump':>6}  group")
    for layer in graph.layers:
        shape = "x".join(str(v) for v in layer.output_shape)
        field = "-" if layer.receptive_field is None else str(layer.receptive_field)
        jump = "-" if layer.jump is None else str(layer.jump)
        print(
            f"{layer.id:<34}{layer.type:<11}{shape:<16}{layer.params:>10}{field:>7}{jump:>6}  {layer.group}"
        )


# The text output shows the input channels that add the most, strongest first; --json has all.
EXPLAIN_CHANNELS_SHOWN = 8


def _run_explain(args: argparse.Namespace) -> None:
    import numpy as np

    from convlens.data import load_image
    from convlens.explain import ExplainError, convolution_step, parse_position
    from convlens.models import resolve_model

    try:
        y, x = parse_position(args.at)
    except ExplainError as error:
        raise CliError(f"--at: {error}") from None
    image = load_image(args.image)
    model = resolve_model(_model_name(args), weights=args.weights)
    try:
        step = convolution_step(model, image.image, args.layer, args.filter, y, x)
    except ExplainError as error:
        raise CliError(str(error)) from None
    if args.json:
        _print_json(
            {
                "model": model.name,
                "weights_status": model.weights_status,
                "image": image.source,
                "layer": step.layer,
                "node": step.node,
                "filter": step.filter,
                "at": [step.y, step.x],
                "stride": list(step.stride),
                "dilation": list(step.dilation),
                "origin": list(step.origin),
                "input_size": list(step.input_size),
                "first_input_channel": step.first_input_channel,
                "window": step.window.tolist(),
                "kernel": step.kernel.tolist(),
                "channel_sums": step.channel_sums.tolist(),
                "bias": step.bias,
                "pre_activation": step.pre_activation,
                "norm": step.norm,
                "norm_scale": step.norm_scale,
                "norm_shift": step.norm_shift,
                "normalised": step.normalised,
                "activation_name": step.activation_name,
                "activation": step.activation,
            }
        )
        return
    _note_untrained(model)
    channels, kh, kw = step.window.shape
    last_row = step.origin[0] + step.dilation[0] * (kh - 1)
    last_column = step.origin[1] + step.dilation[1] * (kw - 1)
    print(
        f"{model.name} · {step.layer} · filter {step.filter} at (y {step.y}, x {step.x}) on {image.source}"
    )
    print(
        f"window: {channels} input channel{'s' if channels > 1 else ''} "
        f"(from {step.first_input_channel}) × {kh}×{kw}, rows {step.origin[0]}…{last_row}, "
        f"columns {step.origin[1]}…{last_column} of the layer's input (outside it: padding), "
        f"stride {step.stride[0]}×{step.stride[1]}, dilation {step.dilation[0]}×{step.dilation[1]}"
    )
    order = np.argsort(-np.abs(step.channel_sums), kind="stable")[:EXPLAIN_CHANNELS_SHOWN]
    for channel in sorted(int(c) for c in order):
        print(
            f"\ninput channel {step.first_input_channel + channel}: "
            f"Σ window × kernel = {step.channel_sums[channel]:.4f}"
        )
        for name, values in (("window", step.window[channel]), ("kernel", step.kernel[channel])):
            for row, numbers in enumerate(values):
                label = f"{name}:" if row == 0 else ""
                print(f"  {label:<8}" + " ".join(f"{v:8.4f}" for v in numbers))
    rest = channels - len(order)
    print()
    if rest:
        others = float(step.channel_sums.sum() - step.channel_sums[order].sum())
        print(f"  the other {rest} input channels add {others:.4f} (--json lists every one)")
    print(
        f"  Σ over {channels} input channel{'s' if channels > 1 else ''}: {step.channel_sums.sum():10.4f}"
    )
    print(f"  + bias:{'':>{21 + len(str(channels))}}{step.bias:10.4f}")
    print(f"  = the convolution's output:{step.pre_activation:>{len(str(channels)) + 1}.4f}")
    if step.norm is not None:
        if step.norm_scale is not None:
            print(
                f"  {step.norm}: {step.pre_activation:.4f} × {step.norm_scale:.4f} "
                f"+ {step.norm_shift:.4f} = {step.normalised:.4f}"
            )
        else:
            print(f"  {step.norm}: {step.normalised:.4f}")
    if step.activation_name is not None:
        print(f"  {step.activation_name}: {step.activation:.4f}")
    print(
        f"value of {step.node}'s map, filter {step.filter} at ({step.y}, {step.x}): {step.activation:.4f}"
    )


def _run_weights(args: argparse.Namespace) -> None:
    from convlens.models import download_weights, import_weights, model_spec

    if args.weights_command == "fetch":
        for name in args.names:
            spec = model_spec(name)
            if spec.bundled_weights() is not None:
                print(f"{name}: weights ship with ConvLens, nothing to fetch")
                continue
            print(f"{name}: {download_weights(name, progress=True)}")
    elif args.weights_command == "import":
        print(f"{args.name}: imported into {import_weights(args.name, args.file)}")
    else:
        raise CliError("convlens weights: choose an action: fetch or import (see --help)")


def _run_train(args: argparse.Namespace) -> None:
    from convlens.annotations import counted
    from convlens.runformat import read_manifest
    from convlens.training import train

    if args.epochs < 1:
        raise CliError("--epochs must be at least 1")
    arch = args.arch
    if args.resume:
        if args.out is None:
            raise CliError("--resume needs --out RUN_DIR")
        try:
            arch = arch or read_manifest(args.out)["arch"]
        except (OSError, ValueError, KeyError) as error:
            raise CliError(f"{args.out} holds no run to resume") from error
    elif arch is None:
        raise CliError("--arch is required (deepeyes or basecnn)")
    architecture_options = {
        "deepeyes": {"conv1": args.conv1, "conv2": args.conv2, "fc1": args.fc1},
        "basecnn": {"width": args.width, "depth": args.depth, "batchnorm": args.batchnorm or None},
    }
    wrong = [
        f"--{key}"
        for other, values in architecture_options.items()
        if other != arch
        for key, value in values.items()
        if value is not None
    ]
    if wrong:
        raise CliError(f"{', '.join(wrong)}: not an option of --arch {arch}")
    given = {
        **architecture_options[arch],
        "lr": args.lr,
        "seed": args.seed,
        "snapshot_every": args.snapshot_every,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "loss": args.loss,
        "init": args.init,
        "schedule": args.schedule,
        "weight_decay": args.weight_decay,
        "probe_images": args.probe_images,
        "probe_patches": args.probe_patches,
        "keep_snapshots": args.keep_snapshots,
    }
    options = {key: value for key, value in given.items() if value is not None}
    try:
        summary = train(arch, args.out, epochs=args.epochs, resume=args.resume, **options)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as error:
        raise CliError(str(error)) from error
    print(
        f"{summary.path}: {counted(summary.steps, 'step')}, {counted(summary.epochs, 'epoch')}, "
        f"test accuracy {summary.test_accuracy:.2%}, {summary.seconds:.0f} s; "
        f"open it as run:{summary.path}"
    )


def _run_runs(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from convlens.runformat import find_run
    from convlens.runs import delete_run, list_runs, stop_run

    try:
        if args.runs_command == "stop":
            print(f"asked process {stop_run(args.run)} to stop; resume with --resume")
            return
        if args.runs_command == "delete":
            print(f"deleted {delete_run(args.run)}")
            return
        if args.runs_command == "pack":
            from convlens.shipped import pack_run

            card = pack_run(
                find_run(args.run),
                snapshots=args.snapshots,
                weights=args.weights,
                note=args.note,
                role=args.role,
            )
            print(f"packed {card.name}: {card.storage}")
            return
    except (ValueError, OSError) as error:
        raise CliError(str(error)) from error
    runs = list_runs()
    if args.json:
        keys = ("path", "arch", "status", "step", "test_accuracy")
        _print_json([{key: asdict(run)[key] for key in keys} for run in runs])
        return
    if not runs:
        print("no runs yet; train one with `python -m convlens train --arch deepeyes --epochs 1`")
    for run in runs:
        accuracy = "-" if run.test_accuracy is None else f"{run.test_accuracy:.2%}"
        origin = "shipped" if run.shipped else "yours"
        print(
            f"{run.status:<11}{run.arch or '?':<10}step {run.step or '-':<7}{accuracy:>8}  {origin:<8}{run.path}"
        )


def _run_annotations(args: argparse.Namespace) -> None:
    actions = {
        "set": _annotations_set,
        "list": _annotations_list,
        "export": _annotations_export,
        "import": _annotations_import,
        "ablate": _annotations_ablate,
    }
    if args.annotations_command not in actions:
        raise CliError(f"convlens annotations: choose an action: {', '.join(actions)} (see --help)")
    actions[args.annotations_command](args)


def _annotations_set(args: argparse.Namespace) -> None:
    from convlens.annotations import AnnotationStore, check_layer_filter, weights_facts

    # the fingerprint and layer widths, cached by weights file: the model is built only when
    # its weights are new or changed
    facts = weights_facts(args.model)
    try:
        check_layer_filter(facts.layers, args.layer, args.filter, args.model)
        row = AnnotationStore().set_annotation(
            args.model,
            facts.fingerprint,
            args.layer,
            args.filter,
            args.label,
            note=args.note,
            author=args.author,
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    if not facts.pretrained:
        print(f"note: {args.model} has untrained weights here", file=sys.stderr)
    print(
        f"{row.model} (weights {row.weights_fingerprint}) {row.layer} #{row.filter}: "
        f"{row.label}, by {row.author}"
    )


def _annotations_list(args: argparse.Namespace) -> None:
    from convlens.annotations import AnnotationStore

    rows = AnnotationStore().list_annotations(model=args.model)
    if args.json:
        _print_json([row.to_dict() for row in rows])
        return
    if not rows:
        print("no annotations yet; add one with `convlens annotations set --model NAME ...`")
        return
    for row in rows:
        note = f"  {row.note}" if row.note else ""
        print(
            f"{row.model}  {row.weights_fingerprint}  {row.layer} #{row.filter}  {row.label:<8}"
            f"{row.author}  {row.updated_at}{note}"
        )


def _annotations_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from convlens.annotations import AnnotationStore, counted

    store = AnnotationStore()
    text = store.export_annotations(args.format)
    if args.out is None:
        sys.stdout.write(text)
        return
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot write {args.out}: {error.strerror or error}") from error
    print(f"wrote {counted(len(store.list_annotations()), 'annotation')} to {args.out}")


def _annotations_import(args: argparse.Namespace) -> None:
    from pathlib import Path

    from convlens.annotations import AnnotationStore, counted

    try:
        report = AnnotationStore().import_annotations(Path(args.file))
    except ValueError as error:
        raise CliError(str(error)) from error
    if not report.ok:
        for error in report.errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        bad_rows = {error.row for error in report.errors if error.row is not None}
        what = "invalid file"
        if bad_rows:
            verb = "is" if len(bad_rows) == 1 else "are"
            what = f"{len(bad_rows)} of {counted(report.rows, 'row')} {verb} invalid"
        raise CliError(f"{args.file}: {what}; nothing was imported")
    skipped = f" ({report.kept_newer} kept the newer stored label)" if report.kept_newer else ""
    print(f"applied {report.applied} of {counted(report.rows, 'row')} from {args.file}{skipped}")


def _annotations_ablate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from convlens.ablation import AblationError, ablate
    from convlens.annotations import AnnotationStore, counted
    from convlens.models import resolve_model
    from convlens.weights import weights_fingerprint

    model = resolve_model(args.model)
    fingerprint = weights_fingerprint(model.module)
    store = AnnotationStore()
    filters = store.useless_filters(args.model, fingerprint, author=args.author)
    other_weights = sum(
        row.weights_fingerprint != fingerprint for row in store.list_annotations(model=args.model)
    )
    if other_weights:
        print(
            f"note: {counted(other_weights, 'label')} of {args.model} "
            f"{'is' if other_weights == 1 else 'are'} for other weights and not used",
            file=sys.stderr,
        )
    bar = tqdm(unit="img", desc="ablation", disable=args.json or not sys.stderr.isatty())

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = ablate(model, args.data, filters, limit=args.limit, progress=progress)
    except AblationError as error:
        raise CliError(str(error)) from error
    finally:
        bar.close()
    if args.json:
        _print_json(result.to_dict())
        return
    on = f"on {counted(result.images, 'image')} of {args.data}"
    if not result.ablated_filters:
        by = f" by {args.author}" if args.author else ""
        print(
            f"no filter of {args.model} (weights {fingerprint}) is labelled useless{by}; "
            f"accuracy {result.baseline_accuracy:.2%} {on}"
        )
        return
    change = result.ablated_accuracy - result.baseline_accuracy
    print(
        f"{args.model} (weights {fingerprint}), {on}: accuracy {result.baseline_accuracy:.2%} -> "
        f"{result.ablated_accuracy:.2%} ({change * 100:+.2f} points) with "
        f"{counted(result.ablated_filters, 'useless filter')} zeroed"
    )
    width = max(len(layer) for layer in result.per_layer) + 2
    for layer, part in result.per_layer.items():
        change = part.accuracy - result.baseline_accuracy
        print(
            f"  {layer:<{width}}{part.accuracy:7.2%} ({change * 100:+.2f} points)  "
            f"filters {list(part.filters)}"
        )


def _analysis_options(args: argparse.Namespace) -> dict:
    layers = args.layers.split(",") if args.layers is not None else None
    return {"limit": args.limit, "layers": layers, "top_k": args.top_k, "reduce": args.reduce}


def _progress_bar():
    """Return a tqdm bar on stderr (hidden when it is not a terminal) and its progress callback."""
    from tqdm.auto import tqdm

    bar = tqdm(unit="img", disable=None, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def _run_analyze(args: argparse.Namespace) -> None:
    from pathlib import Path

    from convlens.activations import analyze, describe
    from convlens.models import resolve_model

    model = resolve_model(_model_name(args), weights=args.weights)
    bar, progress = _progress_bar()
    try:
        analysis = analyze(model, args.data, progress=progress, **_analysis_options(args))
    except ValueError as error:
        raise CliError(str(error)) from error
    finally:
        bar.close()
    if args.out or args.json:
        text = json_text(analysis.to_json())
        if args.out:
            Path(args.out).write_text(text + "\n")
        if args.json:
            print(text)
            return
    _note_untrained(model)
    print(describe(analysis))


def _run_prepare(args: argparse.Namespace) -> None:
    import time

    from convlens.activations import analyze, cache_path
    from convlens.annotations import counted
    from convlens.models import resolve_model

    model = resolve_model(_model_name(args), weights=args.weights)
    bar, progress = _progress_bar()
    try:
        path = cache_path(model, args.data, **_analysis_options(args))
        cached = path.is_file()
        start = time.perf_counter()
        analysis = analyze(model, args.data, progress=progress, **_analysis_options(args))
    except ValueError as error:
        raise CliError(str(error)) from error
    finally:
        bar.close()
    what = (
        f"{model.name} ({model.weights_status} weights) on {analysis.data}: "
        f"{counted(analysis.images, 'image')}, {counted(len(analysis.layers), 'layer')}"
    )
    # the cache key holds the weights' fingerprint: these statistics are never shown for others
    _note_untrained(model)
    if cached:
        print(f"{what} already cached in {path}")
    else:
        print(f"{what} analysed in {time.perf_counter() - start:.1f} s and cached in {path}")


def _run_deepeyes(args: argparse.Namespace) -> None:
    from convlens.deepeyes import describe, diagnose_run
    from convlens.runformat import find_run

    try:
        diagnosis = diagnose_run(find_run(args.run), step=args.snapshot)
    except ValueError as error:
        raise CliError(str(error)) from error
    if args.json:
        _print_json(diagnosis.to_json())
        return
    print(describe(diagnosis))


def _run_cnnvis(args: argparse.Namespace) -> None:
    from pathlib import Path

    import vl_convert

    from convlens.activations import analyze, open_source
    from convlens.cnnvis.drawing import draw, patch_crops
    from convlens.cnnvis.view import Options, build_view, default_groups
    from convlens.graph import build_graph
    from convlens.models import resolve_model

    out = Path(args.out)
    if out.suffix.lower() not in (".svg", ".png", ".json"):
        raise CliError(f"--out must end in .svg, .png or .json, not '{out.suffix}'")
    count = whole_number(args.clusters)
    if args.clusters == "meanshift":
        method, clusters = "meanshift", None
    elif args.clusters == "auto" or (count is not None and count > 0):
        method, clusters = "kmeans", count
    else:
        raise CliError(f"--clusters takes a number of clusters or meanshift, not '{args.clusters}'")
    model = resolve_model(_model_name(args), weights=args.weights)
    source = open_source(args.data)
    if not source.classes or source.labels is None:
        raise CliError(
            f"{args.data} has no classes; CNNVis clusters neurons by their average activation per class"
        )
    graph = build_graph(model.module, model.input_size)
    bar, progress = _progress_bar()
    try:
        analysis = analyze(model, args.data, progress=progress)
    except ValueError as error:
        raise CliError(str(error)) from error
    finally:
        bar.close()
    if args.layers:
        wanted = [graph.chain_node_of(layer) or layer for layer in args.layers.split(",")]
        unknown = [layer for layer in wanted if layer not in {node.id for node in graph.chain}]
        if unknown:
            raise CliError(
                f"{model.name} has no layer {', '.join(unknown)}; `convlens graph` lists them"
            )
        expanded = tuple(dict.fromkeys(graph.node(layer).group for layer in wanted))
    else:
        expanded = default_groups(graph, analysis)
    view = build_view(
        model.name,
        model.module,
        graph,
        analysis,
        Options(expanded=expanded, method=method, clusters=clusters),
    )
    if out.suffix.lower() == ".json":
        out.write_text(json_text(view.to_json()) + "\n")
    else:
        spec = draw(
            view, patch_crops(source.load, model.transform), facet=args.facet, palette=args.palette
        ).to_dict()
        if out.suffix.lower() == ".svg":
            out.write_text(vl_convert.vegalite_to_svg(spec))
        else:
            out.write_bytes(vl_convert.vegalite_to_png(spec, scale=2))
    _note_untrained(model)
    print(f"{model.name}: groups {', '.join(expanded)} expanded; written to {out}")


COMMANDS = {
    "train": _run_train,
    "runs": _run_runs,
    "models": _run_models,
    "predict": _run_predict,
    "graph": _run_graph,
    "explain": _run_explain,
    "weights": _run_weights,
    "annotations": _run_annotations,
    "analyze": _run_analyze,
    "prepare": _run_prepare,
    "deepeyes": _run_deepeyes,
    "cnnvis": _run_cnnvis,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 bad input or usage)."""
    from convlens.data import ImageSourceError
    from convlens.models import ModelError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["app"] and not {"-h", "--help"} & set(argv[1:]):
        # Everything after `app` belongs to streamlit, which parses it itself.
        from convlens.ui.launch import AppOptionError, run_app

        try:
            run_app(argv[1:])
        except AppOptionError as error:
            print(f"convlens: {error}", file=sys.stderr)
            return 2
        return 0
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        COMMANDS[args.command](args)
    except (CliError, ModelError, ImageSourceError) as error:
        print(f"convlens: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) stopped early; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        # Whatever else a user's model or file makes go wrong: one line, not a traceback.
        if os.environ.get("CONVLENS_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"convlens: {type(error).__name__}: {message[:300]} "
            "(CONVLENS_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2
    return 0
