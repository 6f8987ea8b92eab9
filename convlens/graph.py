"""The model as a DAG of layers, its chain of layer nodes, layer groups and receptive fields.

The DAG comes from torch.fx when the model traces, and from module hooks plus a torch-function
mode (which follows tensors through functional code such as `x + identity`) when it does not.
Both give one node per layer call, named as in `named_modules` (see `convlens.hooks`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.overrides import TorchFunctionMode

from convlens.hooks import (
    PADDING_TYPES,
    call_id,
    hooked_calls,
    is_layer,
    layer_type,
    parse_call_id,
)

INPUT = "input"
MERGED_INTO_PREVIOUS = ("norm", "activation", "dropout")


@dataclass(frozen=True)
class FieldGeometry:
    """Where the receptive fields of a layer's output positions lie in the input image.

    Position (y, x) sees input rows top + y * jump_y to top + y * jump_y + height - 1, and the
    columns likewise; top and left are negative where the fields reach into the padding.
    """

    top: int
    left: int
    height: int
    width: int
    jump_y: int
    jump_x: int

    def box(self, y: int, x: int, image_height: int, image_width: int) -> tuple[int, int, int, int]:
        """Return the field of position (y, x) as (x0, y0, x1, y1), ends exclusive, clipped to the image."""
        y0, x0 = self.top + y * self.jump_y, self.left + x * self.jump_x
        return (
            min(max(x0, 0), image_width),
            min(max(y0, 0), image_height),
            min(max(x0 + self.width, 0), image_width),
            min(max(y0 + self.height, 0), image_height),
        )


@dataclass(frozen=True)
class Layer:
    """One call of one layer module, with what the network's structure says about it."""

    id: str
    path: str
    type: str
    class_name: str
    output_shape: tuple[int, ...]
    params: int
    neurons: int
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    receptive_field: int | None = None
    jump: int | None = None
    field_geometry: FieldGeometry | None = None
    sees_whole_image: bool = False
    group: str = ""
    chain_node: str = ""


@dataclass(frozen=True)
class ChainNode:
    """A node of the chain: a conv or linear layer merged with its norm and activation."""

    id: str
    type: str
    layers: tuple[str, ...]
    activation_layer: str
    output_shape: tuple[int, ...]
    group: str


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive chain nodes that end at a pooling layer or a drop in resolution."""

    id: str
    label: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class LayerGraph:
    """The layers of a model as a DAG, and the chain and groups built on it."""

    input_size: tuple[int, int, int]
    layers: tuple[Layer, ...]
    edges: tuple[tuple[str, str], ...]
    chain: tuple[ChainNode, ...]
    chain_edges: tuple[tuple[str, str], ...]
    groups: tuple[LayerGroup, ...]
    traced_with: str
    _by_id: dict[str, Layer] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({layer.id: layer for layer in self.layers})

    def layer(self, layer_id: str) -> Layer:
        """Return the layer with id `layer_id`."""
        return self._by_id[layer_id]

    def node(self, layer_id: str) -> ChainNode:
        """Return the chain node with id `layer_id`, its first layer's (KeyError if there is none)."""
        for node in self.chain:
            if node.id == layer_id:
                return node
        raise KeyError(layer_id)

    def group(self, group_id: str) -> LayerGroup:
        """Return the group with id `group_id` (KeyError if there is none)."""
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)

    def chain_node_of(self, layer_id: str) -> str | None:
        """Return the id of the chain node that holds the layer `layer_id`, or None."""
        layer = self._by_id.get(layer_id)
        return layer.chain_node if layer is not None else None

    def predecessors(self, layer_id: str) -> list[str]:
        """Return the ids of the layers that feed `layer_id`."""
        return [src for src, dst in self.edges if dst == layer_id]

    def receptive_field_box(self, layer_id: str, y: int, x: int) -> tuple[int, int, int, int]:
        """Return the input pixels that position (y, x) of `layer_id`'s output sees, as
        (x0, y0, x1, y1) with exclusive ends, clipped to the image; the whole image for a layer
        without a spatial field (linear) or with a global operation upstream."""
        layer = self._by_id[layer_id]
        _, height, width = self.input_size
        if layer.field_geometry is None or layer.sees_whole_image:
            return (0, 0, width, height)
        return layer.field_geometry.box(y, x, height, width)

    def flattened_channels(self, layer_id: str) -> int | None:
        """Return C when the linear layer `layer_id` reads a flattened (C, H, W) map, else None.

        CNNVis aggregates such a layer's weights per input channel, like a conv kernel's. The map
        is found by walking back through flatten and dropout layers (torch.flatten, a function,
        leaves no layer at all).
        """
        layer = self._by_id[layer_id]
        if layer.type != "linear" or len(layer.output_shape) != 1:
            return None
        source = layer_id
        while True:
            feeders = self.predecessors(source)
            if len(feeders) != 1:
                return None
            source = feeders[0]
            if self._by_id[source].type not in ("flatten", "dropout"):
                break
        shape = self._by_id[source].output_shape
        if len(shape) != 3:
            return None
        outputs, inputs = layer.output_shape[0], math.prod(shape)
        if layer.params not in (outputs * inputs, outputs * (inputs + 1)):
            return None
        return shape[0]


@dataclass
class _Call:
    id: str
    path: str
    module: nn.Module
    preds: list[str]
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...]
    global_input: bool


class _LayerTracer(torch.fx.Tracer):
    """A tracer that stops at layers and leaves other threads' forward passes alone.

    While it traces, torch.fx patches `nn.Module.__call__` and `__getattr__` on the class, for
    every thread: a page's forward pass in another thread would then go through this tracer and
    fail ("module is not installed as a submodule"). Calls from other threads pass straight
    through, and one trace runs at a time: two overlapping patchers would restore each other's
    patches, leaving `nn.Module.__call__` patched for good.
    """

    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.get_ident()

    def _foreign(self) -> bool:
        return threading.get_ident() != self._thread

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_layer(m)

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict
    ) -> Any:
        if self._foreign():
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._foreign():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


_TRACE_LOCK = threading.Lock()


def _shape(meta: object) -> tuple[int, ...] | None:
    """The shape without batch dimension of fx tensor metadata (the first one of a tuple output)."""
    shape = getattr(meta, "shape", None)
    if shape is not None:
        return tuple(int(v) for v in shape[1:])
    if isinstance(meta, (tuple, list)) and meta:
        return _shape(meta[0])
    return None


def _is_global_reduction(
    inputs: Iterable[tuple[int, ...] | None], output: tuple[int, ...] | None
) -> bool:
    """Whether an op turned a feature map of more than one position into a single position."""
    if output is None or len(output) != 3 or output[1] * output[2] != 1:
        return False
    return any(
        shape is not None and len(shape) == 3 and shape[1] * shape[2] > 1 for shape in inputs
    )


def _trace_fx(model: nn.Module, example: torch.Tensor) -> list[_Call]:
    with _TRACE_LOCK:
        graph = _LayerTracer().trace(model)
    module = torch.fx.GraphModule(model, graph)
    ShapeProp(module).propagate(example)
    modules = dict(model.named_modules())
    sources: dict[torch.fx.Node, frozenset[str]] = {}
    global_flag: dict[torch.fx.Node, bool] = {}
    counts: dict[str, int] = {}
    calls: list[_Call] = []
    for node in module.graph.nodes:
        inputs = node.all_input_nodes
        upstream = frozenset().union(*(sources[n] for n in inputs)) if inputs else frozenset()
        seen_global = any(global_flag[n] for n in inputs)
        shape = _shape(node.meta.get("tensor_meta"))
        if node.op == "placeholder":
            sources[node], global_flag[node] = frozenset({INPUT}), False
        elif node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
            identifier = call_id(node.target, counts[node.target])
            first_input = _shape(inputs[0].meta.get("tensor_meta")) if inputs else None
            calls.append(
                _Call(
                    identifier,
                    node.target,
                    modules[node.target],
                    sorted(upstream, key=_order_key(calls)),
                    first_input,
                    shape or (),
                    seen_global,
                )
            )
            sources[node], global_flag[node] = frozenset({identifier}), seen_global
        else:
            input_shapes = [_shape(n.meta.get("tensor_meta")) for n in inputs]
            sources[node] = upstream
            global_flag[node] = seen_global or _is_global_reduction(input_shapes, shape)
    return calls


def _order_key(calls: Sequence[_Call]):
    position = {call.id: index for index, call in enumerate(calls)}
    return lambda identifier: position.get(identifier, -1)


class _Provenance(TorchFunctionMode):
    """Follows which layer calls every tensor comes from, through functional code between layers."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[int, frozenset[str]] = {}
        self.global_flag: dict[int, bool] = {}
        self.keep_alive: list[torch.Tensor] = []
        self.depth = 0

    def tag(self, tensor: torch.Tensor, sources: frozenset[str], seen_global: bool) -> None:
        self.sources[id(tensor)] = sources
        self.global_flag[id(tensor)] = seen_global
        self.keep_alive.append(tensor)

    def lookup(
        self, values: Iterable[object]
    ) -> tuple[frozenset[str], bool, list[tuple[int, ...]]]:
        sources: frozenset[str] = frozenset()
        seen_global = False
        shapes = []
        for tensor in _tensors(values):
            sources |= self.sources.get(id(tensor), frozenset())
            seen_global = seen_global or self.global_flag.get(id(tensor), False)
            shapes.append(tuple(tensor.shape[1:]))
        return sources, seen_global, shapes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.depth == 0:
            sources, seen_global, shapes = self.lookup((args, kwargs))
            for tensor in _tensors([result]):
                reduced = _is_global_reduction(shapes, tuple(tensor.shape[1:]))
                self.tag(tensor, sources, seen_global or reduced)
        return result


def _tensors(values: Iterable[object]) -> Iterable[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _tensors(value)
        elif isinstance(value, dict):
            yield from _tensors(value.values())


def _trace_hooks(model: nn.Module, example: torch.Tensor) -> list[_Call]:
    mode = _Provenance()
    calls: list[_Call] = []
    pending: list[tuple[frozenset[str], bool, tuple[int, ...] | None]] = []

    def before(_module: nn.Module, inputs: tuple) -> None:
        sources, seen_global, shapes = mode.lookup(inputs)
        pending.append((sources, seen_global, shapes[0] if shapes else None))
        mode.depth += 1

    def after(layer_id: str, module: nn.Module, output: object) -> None:
        mode.depth -= 1
        sources, seen_global, input_shape = pending.pop()
        tensors = list(_tensors([output]))
        calls.append(
            _Call(
                layer_id,
                parse_call_id(layer_id)[0],
                module,
                sorted(sources, key=_order_key(calls)),
                input_shape,
                tuple(tensors[0].shape[1:]) if tensors else (),
                seen_global,
            )
        )
        for tensor in tensors:
            mode.tag(tensor, frozenset({layer_id}), seen_global)

    mode.tag(example, frozenset({INPUT}), False)
    with hooked_calls(model, after, before_call=before), mode:
        model(example)
    return calls


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


# field height, field width, jump down, jump right, and the input row and column where the
# field of output position (0, 0) starts (negative inside the padding)
RFInfo = tuple[int, int, int, int, int, int]
INPUT_FIELD: RFInfo = (1, 1, 1, 1, 0, 0)


def _apply_window(info: RFInfo, kernel, stride, dilation, leading=(0, 0)) -> RFInfo:
    """The field after a sliding window that pads `leading` (rows, columns) before its input."""
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel), _pair(stride), _pair(dilation)
    rf_h, rf_w, j_h, j_w, top, left = info
    return (
        rf_h + dh * (kh - 1) * j_h,
        rf_w + dw * (kw - 1) * j_w,
        j_h * sh,
        j_w * sw,
        top - leading[0] * j_h,
        left - leading[1] * j_w,
    )


def _leading_padding(call: _Call) -> tuple[int, int]:
    """The rows and columns of padding a windowed 2-D layer adds above and left of its input.

    Besides `padding` (an int, a pair, "valid" or "same"), a layer may pad through a padding child
    (EfficientNet's static same padding), or inside `forward` as TensorFlow's "SAME" does (its
    dynamic same padding): then the output is larger than `padding` explains, and the extra is
    split as TensorFlow splits it, the smaller half first.
    """
    module = call.module
    (kh, kw), (sh, sw) = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    dh, dw = _pair(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # torch puts the smaller half first
        padding = ((dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2)
    leading = list(_pair(padding))
    children = [child for child in module.children() if _is_padding(child)]
    if children:
        for child in children:
            if not isinstance(child, nn.Identity):
                pad = _pair(child.padding) * 2 if isinstance(child.padding, int) else child.padding
                leading[0] += int(pad[2])
                leading[1] += int(pad[0])
        return leading[0], leading[1]
    if call.input_shape is None or len(call.input_shape) != 3 or len(call.output_shape) != 3:
        return leading[0], leading[1]
    rounding = math.ceil if getattr(module, "ceil_mode", False) else math.floor
    for axis, (k, s, d) in enumerate(((kh, sh, dh), (kw, sw, dw))):
        size_in, size_out = call.input_shape[1 + axis], call.output_shape[1 + axis]
        explained = rounding((size_in + 2 * leading[axis] - d * (k - 1) - 1) / s) + 1
        if size_out > explained:
            total = max((size_out - 1) * s + d * (k - 1) + 1 - size_in, 0)
            leading[axis] = total // 2
    return leading[0], leading[1]


def _union(upstream: list[RFInfo]) -> RFInfo:
    """The field of a layer fed by several (added or concatenated): the box around all of theirs."""
    if not upstream:
        return INPUT_FIELD
    top = min(info[4] for info in upstream)
    left = min(info[5] for info in upstream)
    return (
        max(info[4] + info[0] for info in upstream) - top,
        max(info[5] + info[1] for info in upstream) - left,
        max(info[2] for info in upstream),
        max(info[3] for info in upstream),
        top,
        left,
    )


def _adaptive_window(info: RFInfo, input_shape, output_shape) -> tuple[RFInfo, bool]:
    """Treat adaptive pooling as the fixed window it amounts to for these sizes."""
    result = list(info)
    whole = False
    for axis in (0, 1):
        size_in, size_out = input_shape[1 + axis], output_shape[1 + axis]
        if size_out == size_in:
            continue
        if size_out == 1:
            whole = True
            continue
        stride = size_in // size_out
        kernel = size_in - (size_out - 1) * stride
        result[axis] += (kernel - 1) * result[2 + axis]
        result[2 + axis] *= stride
    return tuple(result), whole


def _receptive_field(call: _Call, upstream: list[RFInfo | None]) -> tuple[RFInfo | None, bool]:
    """Return the field of `call` from the fields of what feeds it, and whether it saw a global op."""
    if len(call.output_shape) != 3 or any(info is None for info in upstream):
        return None, False
    info = _union(upstream)
    module = call.module
    kind = layer_type(module)
    if isinstance(module, nn.modules.conv._ConvNd) and module.kernel_size.__len__() == 2:
        leading = _leading_padding(call)
        shifted = _apply_window(info, module.kernel_size, module.stride, module.dilation, leading)
        return shifted, False
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
        dilation = getattr(module, "dilation", 1)
        stride = module.stride if module.stride is not None else module.kernel_size
        leading = _leading_padding(call) if hasattr(module, "padding") else (0, 0)
        return _apply_window(info, module.kernel_size, stride, dilation, leading), False
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and call.input_shape:
        return _adaptive_window(info, call.input_shape, call.output_shape)
    if _is_padding(module) and not isinstance(module, nn.Identity):
        pad = module.padding
        if len(pad) == 4:  # (left, right, top, bottom)
            return _apply_window(info, 1, 1, 1, (int(pad[2]), int(pad[0]))), False
        return info, False
    same_size = call.input_shape is not None and call.input_shape[1:] == call.output_shape[1:]
    if same_size or kind in ("norm", "activation", "dropout") or _is_padding(module):
        return info, False
    return None, False


def _is_padding(module: nn.Module) -> bool:
    return isinstance(module, PADDING_TYPES)


def _window_attributes(module: nn.Module) -> dict[str, object]:
    if isinstance(
        module,
        (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd),
    ):
        padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
        padded = [c for c in module.children() if _is_padding(c) and not isinstance(c, nn.Identity)]
        if padded and not isinstance(padding, str):
            padding = _child_padding(padded[0], padding)
        stride = module.stride if module.stride is not None else module.kernel_size
        return {"kernel": _pair(module.kernel_size), "stride": _pair(stride), "padding": padding}
    return {}


def _child_padding(child: nn.Module, own: tuple[int, int]) -> tuple[int, int] | str:
    """The padding of a layer that pads its input through a child first (EfficientNet's static
    same padding: its own `padding` is 0): a (rows, columns) pair when both sides get the same, else
    each side spelled out (TensorFlow's "SAME" puts the odd row below and the odd column right)."""
    pad = child.padding
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
    top, bottom, left, right = top + own[0], bottom + own[0], left + own[1], right + own[1]
    if top == bottom and left == right:
        return (top, left)
    return f"{top} top, {bottom} bottom, {left} left, {right} right"


def _block_of(layer_id: str) -> str:
    """The module that a layer's block is: the path up to its first index (`layer2.0`)."""
    parts = parse_call_id(layer_id)[0].split(".")
    for index, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return parts[0]


def _build_chain(layers: list[Layer], edges: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    successors: dict[str, list[str]] = {layer.id: [] for layer in layers}
    predecessors: dict[str, list[str]] = {layer.id: [] for layer in layers}
    for src, dst in edges:
        successors[src].append(dst)
        predecessors[dst].append(src)
    kinds = {layer.id: layer.type for layer in layers}
    shapes = {layer.id: layer.output_shape for layer in layers}
    assigned: set[str] = set()
    chain: list[tuple[str, list[str]]] = []
    for layer in layers:
        if layer.id in assigned:
            continue
        members = [layer.id]
        current = layer.id
        while len(successors[current]) == 1:
            nxt = successors[current][0]
            mergeable = (
                kinds[nxt] in MERGED_INTO_PREVIOUS
                and predecessors[nxt] == [current]
                and nxt not in assigned
                and shapes[nxt] == shapes[current]
                and kinds[layer.id] != "pool"
            )
            if not mergeable:
                break
            members.append(nxt)
            current = nxt
        assigned.update(members)
        chain.append((layer.id, members))
    return chain


def _resolution(shape: tuple[int, ...]) -> int:
    return shape[1] * shape[2] if len(shape) == 3 else 1


def _build_groups(nodes: list[tuple[str, tuple[int, ...], str, bool]]) -> list[list[str]]:
    """Split chain nodes (id, output shape, type, is adaptive pool) into CNNVis layer groups.

    A group ends at a max / average pooling node, and before a node whose resolution drops
    (a strided convolution), taking along the earlier nodes of that node's block. The first
    adaptive or global pooling starts the classifier head, which is one group.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    last_resolution: int | None = None
    in_head = False
    for node_id, shape, kind, adaptive in nodes:
        resolution = _resolution(shape)
        is_pool = kind == "pool" and not adaptive
        drops = last_resolution is not None and resolution < last_resolution and not is_pool
        if current and not in_head and (adaptive or drops):
            block = _block_of(node_id)
            carried = []
            while current and not adaptive and _block_of(current[-1]) == block:
                carried.insert(0, current.pop())
            if current:
                groups.append(current)
            current = carried
        current.append(node_id)
        in_head = in_head or adaptive
        last_resolution = resolution
        if is_pool:
            groups.append(current)
            current, last_resolution = [], None
    if current:
        groups.append(current)
    return groups


def _group_labels(group_lists: list[list[str]]) -> list[str]:
    """Name each group by the module all its nodes share (`layer1`), else by its first and last block."""
    paths = [[parse_call_id(member)[0] for member in members] for members in group_lists]
    labels = []
    for index, members in enumerate(paths):
        prefix = members[0].split(".")
        for member in members[1:]:
            parts = member.split(".")
            common = 0
            while common < min(len(prefix), len(parts)) and prefix[common] == parts[common]:
                common += 1
            prefix = prefix[:common]
        shared = ".".join(prefix)
        elsewhere = any(
            path == shared or path.startswith(shared + ".")
            for other, others in enumerate(paths)
            if other != index
            for path in others
        )
        if shared and not elsewhere:
            name = shared
        else:
            first, last = _block_of(members[0]), _block_of(members[-1])
            name = first if first == last else f"{first} … {last}"
        labels.append(f"g{index} · {name}")
    return labels


def build_graph(
    model: nn.Module, input_size: tuple[int, int, int], method: str = "auto"
) -> LayerGraph:
    """Return the layer DAG of `model` for inputs of `input_size` (C, H, W), with chain and groups.

    `method` is "fx", "hooks" or "auto" (fx, falling back to hooks when the model does not trace).
    The model is run once on zeros, on its own device, without gradients.
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    example = torch.zeros(1, *input_size, device=device)
    # restore each module's own flag: a training model may hold frozen (eval) batch norms
    was_training = [(module, module.training) for module in model.modules()]
    model.eval()
    traced_with = method
    try:
        with torch.no_grad():
            if method == "hooks":
                calls = _trace_hooks(model, example)
            else:
                try:
                    calls = _trace_fx(model, example)
                    traced_with = "fx"
                except Exception:
                    if method == "fx":
                        raise
                    calls = _trace_hooks(model, example)
                    traced_with = "hooks"
    finally:
        for module, training in was_training:
            module.training = training
    return _assemble(calls, input_size, traced_with)


# Graphs built by `shared_graph`, per module object (dropped with the module) and input size.
_SHARED_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, int], LayerGraph]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_GRAPHS_LOCK = threading.Lock()


def shared_graph(model: nn.Module, input_size: tuple[int, int, int]) -> LayerGraph:
    """Return `build_graph(model, input_size)`, built once per module object and input size.

    For models whose structure no longer changes (loaded ones): a view that needs the graph, or
    only a cache file's name, does not trace and run the model again.
    """
    size = tuple(input_size)
    with _SHARED_GRAPHS_LOCK:
        found = _SHARED_GRAPHS.get(model, {}).get(size)
    if found is not None:
        return found
    graph = build_graph(model, size)
    with _SHARED_GRAPHS_LOCK:
        return _SHARED_GRAPHS.setdefault(model, {}).setdefault(size, graph)


def _assemble(calls: list[_Call], input_size: tuple[int, int, int], traced_with: str) -> LayerGraph:
    fields: dict[str, RFInfo | None] = {INPUT: INPUT_FIELD}
    layers: list[Layer] = []
    edges: list[tuple[str, str]] = []
    for call in calls:
        info, whole = _receptive_field(call, [fields.get(p) for p in call.preds])
        fields[call.id] = info
        edges.extend((pred, call.id) for pred in call.preds if pred != INPUT)
        layers.append(
            Layer(
                id=call.id,
                path=call.path,
                type=layer_type(call.module),
                class_name=type(call.module).__name__,
                output_shape=call.output_shape,
                params=sum(p.numel() for p in call.module.parameters()),
                neurons=call.output_shape[0] if call.output_shape else 0,
                receptive_field=max(info[0], info[1]) if info else None,
                jump=max(info[2], info[3]) if info else None,
                field_geometry=(
                    FieldGeometry(info[4], info[5], info[0], info[1], info[2], info[3])
                    if info
                    else None
                ),
                sees_whole_image=whole or call.global_input or (info is None and bool(call.preds)),
                **_window_attributes(call.module),
            )
        )
    by_id = {layer.id: layer for layer in layers}
    chain_members = _build_chain(layers, edges)
    node_of = {member: node_id for node_id, members in chain_members for member in members}
    group_input = [
        (
            node_id,
            by_id[members[-1]].output_shape,
            by_id[node_id].type,
            isinstance(_module_of(calls, node_id), (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)),
        )
        for node_id, members in chain_members
    ]
    group_lists = _build_groups(group_input)
    group_of = {node: f"g{index}" for index, members in enumerate(group_lists) for node in members}
    groups = tuple(
        LayerGroup(f"g{index}", label, tuple(members))
        for index, (members, label) in enumerate(
            zip(group_lists, _group_labels(group_lists), strict=True)
        )
    )
    chain = tuple(
        ChainNode(
            id=node_id,
            type=by_id[node_id].type,
            layers=tuple(members),
            activation_layer=next(
                (m for m in reversed(members) if by_id[m].type != "dropout"), members[0]
            ),
            output_shape=by_id[members[-1]].output_shape,
            group=group_of[node_id],
        )
        for node_id, members in chain_members
    )
    chain_edges: list[tuple[str, str]] = []
    for src, dst in edges:
        pair = (node_of[src], node_of[dst])
        if pair[0] != pair[1] and pair not in chain_edges:
            chain_edges.append(pair)
    final_layers = tuple(
        Layer(
            **{
                **layer.__dict__,
                "group": group_of[node_of[layer.id]],
                "chain_node": node_of[layer.id],
            }
        )
        for layer in layers
    )
    return LayerGraph(
        input_size=tuple(input_size),
        layers=final_layers,
        edges=tuple(edges),
        chain=chain,
        chain_edges=tuple(chain_edges),
        groups=groups,
        traced_with=traced_with,
    )


def _module_of(calls: list[_Call], layer_id: str) -> nn.Module:
    return next(call.module for call in calls if call.id == layer_id)


def first_conv(graph: LayerGraph) -> Layer | None:
    """Return the convolution that sees the input image first, if the model has one."""
    return next((layer for layer in graph.layers if layer.type == "conv"), None)


def field_note(layer: Layer) -> str:
    """Return a sentence on the receptive field of `layer`, for its details panel."""
    if layer.receptive_field is None:
        return "sees the whole image (no spatial map)"
    note = f"{layer.receptive_field}×{layer.receptive_field} input pixels, jump {layer.jump}"
    if layer.sees_whole_image:
        note += "; a global operation upstream also lets it see the whole image (the field shown is the convolution path's)"
    return note


def total_params(graph: LayerGraph) -> int:
    """Return the number of parameters over all distinct layer modules of the graph."""
    seen: dict[str, int] = {}
    for layer in graph.layers:
        seen[layer.path] = layer.params
    return sum(seen.values())
