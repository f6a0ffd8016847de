"""Filter animations and 3D kernel pictures: frame counts and sizes, and the kernels they show."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from crossd import CrossDConv
from crossd.report.animation import (
    _strongest,
    filters_gif,
    find_crossd_layer,
    grey_kernels,
    input_filters_gif,
    kernel3d_figure,
    kernel3d_png,
    neighbour_correlation,
    render_frames,
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
    beside = kernel3d_png(torch.randn(6, 3, 3, 3, 3), tmp_path / "d.png", 4, regular=torch.randn(6, 3, 3, 3), dpi=50)
    assert iio.imread(beside).shape[:2] == (round((0.8 * 4 + 0.6) * 50), round((0.8 * 4 + 0.6) * 50))
    with pytest.raises(ValueError, match="same layer"):
        kernel3d_png(torch.randn(6, 3, 3, 3, 3), tmp_path / "e.png", regular=torch.randn(5, 3, 3, 3))


def test_the_regular_column_shows_the_same_kernels_as_its_row():
    """Row r shows Cross-D kernel #k in its depth columns and the regular network's kernel #k beside it, even
    though the regular network's strongest kernels are other ones."""
    rng = np.random.default_rng(0)
    weight = torch.from_numpy(rng.normal(size=(6, 1, 3, 3, 3)) * np.arange(1, 7)[:, None, None, None, None])
    regular = torch.from_numpy(rng.normal(size=(6, 1, 3, 3)) * np.arange(6, 0, -1)[:, None, None, None])
    fig = kernel3d_figure(weight.float(), max_filters=3, regular=regular.float())
    axes = np.array(fig.axes).reshape(3, 4)
    for row, k in enumerate((5, 4, 3)):  # the Cross-D kernel's strongest first
        assert axes[row, 0].get_ylabel() == axes[row, 3].get_ylabel() == f"#{k}"
        expected = regular[k, 0].numpy() / np.abs(regular[k, 0].numpy()).max()
        np.testing.assert_allclose(axes[row, 3].images[0].get_array()[..., 0], (expected + 1) / 2, atol=1e-6)


def test_kernels_are_grey_summed_peak_normalised_and_strongest_first():
    weight = np.random.default_rng(0).normal(size=(5, 3, 3, 3, 3))
    weight[3] *= 10  # the strongest kernel
    grey = grey_kernels(weight, 1)
    np.testing.assert_allclose(grey[:, 0], weight.sum(1))
    shown, order = _strongest(weight, 2, grey_input=True)
    assert order[0] == 3 and shown.shape == (2, 1, 3, 3, 3)
    np.testing.assert_allclose(np.abs(shown).reshape(2, -1).max(1), 1.0)
    np.testing.assert_allclose(shown[0], grey[3] / np.abs(grey[3]).max())


def test_neighbour_correlation_tells_noise_from_smooth_kernels():
    rng = np.random.default_rng(0)
    assert abs(neighbour_correlation(rng.normal(size=(64, 7, 7)))) < 0.05
    y, x = np.mgrid[-3:4, -3:4]
    blobs = np.stack([np.exp(-((x - a) ** 2 + (y - b) ** 2) / 4.0) for a, b in rng.integers(-2, 3, (16, 2))])
    assert neighbour_correlation(blobs) > 0.5
    edges = np.stack([np.sign(x + 0.5) * s for s in rng.choice([-1, 1], 8)])
    assert neighbour_correlation(edges) > 0.5


def test_filters_gif_puts_the_most_angle_dependent_kernel_first(tmp_path, monkeypatch):
    layer = CrossDConv(1, 3, 3, padding=1)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0, 1, 1, 1] = 1.0  # a centre voxel: the same at every angle
        layer.weight[2, 0, 0] = torch.randn(3, 3)  # off-centre: changes as the plane turns
    drawn = []
    monkeypatch.setattr("crossd.report.animation.write_gif", lambda frames, path, fps: drawn.append(frames) or path)
    captured = {}
    original = render_frames

    def spy(panels, *args, **kwargs):
        captured["panels"] = panels
        return original(panels, *args, **kwargs)

    monkeypatch.setattr("crossd.report.animation.render_frames", spy)
    filters_gif(layer, tmp_path / "f.gif", frames=4, axes=("h",), dpi=30, grey_input=True)
    first, last = captured["panels"][0][:, 0], captured["panels"][0][:, -1]
    assert first.std(axis=0).sum() > 0.1 and last.std(axis=0).sum() < 1e-6


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A Cross-D and a regular ResNet-18 (4 classes) saved as crossd ``model.safetensors`` files."""
    from crossd.io import save_safetensors
    from crossd.models import ModelSpec, create_model

    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for conv in ("crossd", "regular"):
        spec = ModelSpec("resnet18", conv, "rotate", 4)
        model = create_model(spec.arch, spec.num_classes, spec.conv, spec.mode)
        paths[conv] = save_safetensors(model.state_dict(), root / f"{conv}.safetensors", spec.metadata())
    return paths


def test_viz_cli_writes_the_gif_and_the_png(checkpoints, tmp_path):
    from crossd.cli import main

    gif, png = tmp_path / "f.gif", tmp_path / "k.png"
    assert main(["viz", "filters", str(checkpoints["crossd"]), "--layer", "layer1.0.conv1", "--output", str(gif),
                 "--frames", "3", "--axes", "h"]) == 0  # fmt: skip
    assert iio.imread(gif, index=None).shape == (3, round(3.6 * 80), round(3.2 * 80), 3)
    assert main(["viz", "kernel3d", str(checkpoints["crossd"]), "--output", str(png), "--max-filters", "2"]) == 0
    assert iio.imread(png).shape[:2] == (round((0.8 * 2 + 0.6) * 100), round((0.8 * 7 + 0.6) * 100))


def test_viz_cli_explains_unsuitable_checkpoints(checkpoints, tmp_path, capsys):
    from crossd.cli import main

    out = str(tmp_path / "x.gif")
    assert main(["viz", "filters", str(checkpoints["regular"]), "--output", out]) == 2
    assert "need a Cross-D checkpoint" in capsys.readouterr().err
    assert main(["viz", "kernel3d", str(checkpoints["regular"]), "--output", out]) == 2
    assert "not a 3D kernel" in capsys.readouterr().err
    assert main(["viz", "kernel3d", str(checkpoints["crossd"]), "--layer", "conv9", "--output", out]) == 2
    err = capsys.readouterr().err
    assert "error: --layer 'conv9': " in err and "has no such layer; 3D kernels: conv1, layer1.0.conv1" in err
    assert not (tmp_path / "x.gif").exists()
