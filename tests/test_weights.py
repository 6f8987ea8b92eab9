"""Aggregating weights per (output, input channel): what CNNVis colours its edges by."""

import torch

from convlens.weights import edge_matrix


def test_edge_matrix_sums_conv_kernels():
    weight = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    expected = torch.tensor([[6.0, 22.0, 38.0], [54.0, 70.0, 86.0]])  # 0+1+2+3 = 6, ...
    assert torch.equal(edge_matrix(weight), expected)


def test_edge_matrix_sums_a_flattened_linear_layer_per_input_channel():
    # 2 outputs reading a flattened (3 channels, 2 positions) map: inputs c0p0 c0p1 c1p0 c1p1 ...
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [-1.0, 1.0, 0.0, 0.0, 2.0, 2.0]])
    assert torch.equal(edge_matrix(weight, 3), torch.tensor([[3.0, 7.0, 11.0], [0.0, 0.0, 4.0]]))
    assert torch.equal(edge_matrix(weight), weight)  # a plain linear layer: one edge per unit
    assert torch.equal(edge_matrix(weight, 4), weight)  # 6 inputs are not 4 channels' worth
