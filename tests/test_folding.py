"""Batch norms folded into their convolutions (`convlens.folding`): the same outputs, shared
modules, and no fold where a convolution's output is read or used elsewhere."""

from __future__ import annotations

import torch
from torch import nn

from convlens.folding import conv_batch_norm_pairs, fold_batch_norms, folded_model
from convlens.hooks import record_outputs


class BranchNet(nn.Module):
    """conv1 -> bn1 folds; conv2's output also feeds a shortcut, so folding bn2 into it changes
    the sum; bn3 follows a ReLU, not a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.bn3 = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bn1(self.conv1(x))
        b = self.conv2(a)
        c = self.bn2(b) + b
        return self.head(self.bn3(self.relu(c)))


def output_of(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    with torch.no_grad(), record_outputs(model, {layer}) as outputs:
        model(x)
    return outputs[layer]


def branch_net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = BranchNet()
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 2)
        norm.bias.data.uniform_(-1, 1)
    return model.eval(), torch.randn(1, 2, 8, 8)


def test_pairs_are_batch_norms_applied_straight_to_a_conv_output():
    model, x = branch_net()
    pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("head.0", "head.1")]
    assert conv_batch_norm_pairs(model, x) == pairs


def test_folding_keeps_the_outputs_and_shares_the_other_modules():
    model, x = branch_net()
    folded = fold_batch_norms(model, [("conv1", "bn1"), ("head.0", "head.1")])
    assert torch.allclose(folded(x), model(x), rtol=1e-5, atol=1e-6)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.head[1], nn.Identity)
    assert folded.conv2 is model.conv2 and folded.bn3 is model.bn3
    assert isinstance(model.bn1, nn.BatchNorm2d) and isinstance(model.head[1], nn.BatchNorm2d)
    assert torch.equal(model.conv1.weight, branch_net()[0].conv1.weight), "the model is untouched"


def test_a_fold_that_changes_the_readout_is_not_used():
    model, x = branch_net()
    assert not torch.allclose(
        fold_batch_norms(model, [("conv2", "bn2")])(x), model(x), rtol=1e-4, atol=1e-4
    ), "conv2's output is also the shortcut: folding bn2 into it changes the sum"
    assert folded_model(model, x, {"head.1"}) is model


def test_the_readout_conv_keeps_its_own_output_and_folds_are_kept_until_weights_change():
    model, x = branch_net()
    del model.bn2  # no shortcut problem left: conv2 -> identity
    model.bn2 = nn.Identity()
    folded = folded_model(model, x, {"conv1"})
    assert folded is not model and isinstance(folded.conv1, nn.Conv2d)
    assert folded.conv1 is model.conv1 and isinstance(folded.bn1, nn.BatchNorm2d)
    assert isinstance(folded.head[1], nn.Identity)
    assert torch.equal(output_of(folded, x, "conv1"), output_of(model, x, "conv1"))
    at_norm = output_of(folded_model(model, x, {"head.1"}), x, "head.1")  # now an identity
    assert torch.allclose(at_norm, output_of(model, x, "head.1"), rtol=1e-5, atol=1e-6)
    assert folded_model(model, x, {"conv1"}).head[0] is folded.head[0], "folded once per weights"
    with torch.no_grad():
        model.head[1].running_mean.add_(1.0)  # weights loaded in place
    refolded = folded_model(model, x, {"conv1"})
    assert refolded.head[0] is not folded.head[0]
    assert torch.allclose(refolded(x), model(x), rtol=1e-5, atol=1e-6)


def test_the_folds_are_checked_once_per_weights_whatever_is_read():
    """Each new layer read (a guided back-propagation of another layer) costs no forward pass."""
    model, x = branch_net()
    model.bn2 = nn.Identity()
    first = folded_model(model, x, {"conv1"})
    passes = []
    model.register_forward_pre_hook(lambda *_: passes.append(1))
    other = folded_model(model, x, {"head.1"})
    assert passes == [], "found and checked at the first read"
    assert isinstance(other.bn1, nn.Identity) and isinstance(first.bn1, nn.BatchNorm2d)
    assert torch.allclose(other(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_model_in_training_mode_is_not_folded():
    model, x = branch_net()
    assert folded_model(model.train(), x, {"head.1"}) is model


def test_folds_made_in_inference_mode_serve_gradients_later():
    model, x = branch_net()
    model.bn2 = nn.Identity()
    with torch.inference_mode():
        folded_model(model, x, {"head.1"})(x)
    image = x.clone().requires_grad_(True)
    folded_model(model, image.detach(), {"head.1"})(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_weights_made_in_inference_mode_are_not_folded():
    """They keep no version counter, so a change of weights could not be told."""
    with torch.inference_mode():
        model, x = branch_net()
        model.bn2 = nn.Identity()  # nothing else keeps the batch norms from folding
    assert folded_model(model, x, {"head.1"}) is model


class SamePaddingConv(nn.Conv2d):
    """A convolution that zero-pads its input first, as EfficientNet's `Conv2dStaticSamePadding`."""

    def __init__(self, channels: int, kernel: int, stride: int, padding: tuple) -> None:
        super().__init__(channels, channels, kernel, stride=stride, groups=channels, bias=False)
        self.static_padding = nn.ZeroPad2d(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.static_padding(x))


def test_an_even_static_padding_is_folded_into_a_plain_conv_and_an_uneven_one_kept():
    torch.manual_seed(1)
    model = nn.Sequential(
        SamePaddingConv(3, 3, 1, (1, 1, 1, 1)),
        nn.BatchNorm2d(3),
        SamePaddingConv(3, 3, 2, (0, 1, 0, 1)),
        nn.BatchNorm2d(3),
    ).eval()
    for norm in (model[1], model[3]):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 9, 9)
    folded = folded_model(model, x, set())
    assert type(folded[0]) is nn.Conv2d and folded[0].padding == (1, 1)
    assert folded[0].weight is not model[0].weight  # the batch norm's scale is folded in
    assert isinstance(folded[2], SamePaddingConv), "uneven padding stays a padding module"
    assert torch.allclose(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model[0], SamePaddingConv), "the model itself is left as it was"
    cropping = nn.Sequential(SamePaddingConv(3, 3, 1, (-1, -1, -1, -1)), nn.BatchNorm2d(3)).eval()
    folded = folded_model(cropping, x, set())
    assert isinstance(folded[0], SamePaddingConv), "a negative padding crops: left as it is"
    assert torch.allclose(folded(x), cropping(x), rtol=1e-5, atol=1e-5)
