"""Filter animations and 3D kernel pictures: frame counts and sizes, and the kernels they show."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from crossd import CrossDConv
from crossd.report.animation import (
    filters_gif,
    find_crossd_layer,
    input_filters_gif,
    kernel3d_png,
    sweep_angles,
    sweep_kernels,
)


def _model() -> nn.Sequential:
    return nn.Sequential(CrossDConv(3, 6, 3, padding=1), nn.ReLU(), CrossDConv(6, 5, 3, padding=1)).eval()


def test_sweep_kernels_rotate_the_centre_slice():
    layer = _model()[0]
    kernels = sweep_kernels(layer, torch.tensor([0.0, math.pi / 2]), "d")
    centre = layer.weight.detach()[:, :, 1]
    assert kernels.shape == (2, 6, 3, 3, 3)
    torch.testing.assert_close(kernels[0], centre, atol=1e-5, rtol=0)
    turned = [torch.rot90(centre, k, dims=(-2, -1)) for k in (1, -1)]
    assert any(torch.allclose(kernels[1], t, atol=1e-5) for t in turned)
    assert not torch.allclose(sweep_kernels(layer, torch.tensor([0.5]), "h")[0], centre, atol=1e-3)


def test_sweep_angles_loop_within_the_head_range():
    angles = sweep_angles(8)
    assert len(angles) == 8 and angles[0] == 0
    assert math.isclose(angles.max().item(), math.pi / 4) and math.isclose(angles.min().item(), -math.pi / 4)


def test_filters_gif_has_one_frame_per_angle_and_one_panel_per_axis(tmp_path):
    layer = _model()[0]
    path = filters_gif(layer, tmp_path / "f.gif", frames=6, axes=("d", "w"), dpi=50)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 6
    assert frames.shape[1:3] == (round(3.6 * 50), round(3.2 * 50 * 2))
    assert not np.array_equal(frames[0], frames[1])  # the kernels move


def test_input_filters_gif_has_one_frame_per_input(tmp_path):
    model = _model()
    path = input_filters_gif(model, find_crossd_layer(model, "2"), torch.randn(4, 3, 12, 12), tmp_path / "i.gif")
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (4, round(3.6 * 80), round(3.2 * 80))


def test_find_crossd_layer_names_the_alternatives():
    model = _model()
    assert find_crossd_layer(model, "2") is model[2]
    with pytest.raises(ValueError, match="ReLU, not a CrossDConv; Cross-D layers: 0, 2"):
        find_crossd_layer(model, "1")
    with pytest.raises(ValueError, match="no layer"):
        find_crossd_layer(model, "conv9")


def test_kernel3d_png_draws_rows_of_depth_slices(tmp_path):
    small = kernel3d_png(torch.randn(2, 1, 3, 3, 3), tmp_path / "a.png", dpi=50)
    tall = kernel3d_png(torch.randn(6, 4, 3, 3, 3), tmp_path / "b.png", max_filters=4, dpi=50)
    assert iio.imread(small).shape[:2] == (round((0.8 * 2 + 0.6) * 50), round((0.8 * 3 + 0.6) * 50))
    assert iio.imread(tall).shape[:2] == (round((0.8 * 4 + 0.6) * 50), round((0.8 * 3 + 0.6) * 50))
    with pytest.raises(ValueError, match="3D kernel"):
        kernel3d_png(torch.randn(2, 1, 3, 3), tmp_path / "c.png")
