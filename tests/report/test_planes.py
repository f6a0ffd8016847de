"""The planes Cross-D rotation heads pick: tilt against a rotation-matrix reference, one record per layer."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from crossd import CrossDConv
from crossd.report.planes import npz_images, plane_tilt, planes_figure, planes_png, predicted_planes


def _rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Reference: the matrix exponential of ``angle`` times the cross-product matrix of the unit axis."""
    from scipy.linalg import expm

    a = axis / np.linalg.norm(axis)
    cross = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return expm(angle * cross)


def test_plane_tilt_is_the_angle_the_depth_normal_turns():
    rng = np.random.default_rng(0)
    axes, angles = rng.normal(size=(20, 3)), rng.uniform(-math.pi / 4, math.pi / 4, 20)
    normal = np.array([1.0, 0.0, 0.0])
    expected = [
        math.acos(np.clip(_rotation_matrix(a, t) @ normal @ normal, -1, 1)) for a, t in zip(axes, angles, strict=True)
    ]
    tilt = plane_tilt(torch.from_numpy(axes), torch.from_numpy(angles))
    np.testing.assert_allclose(tilt.numpy(), expected, atol=1e-9)
    about_d = plane_tilt(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0.7]))
    assert about_d.item() == pytest.approx(0.0, abs=1e-6)  # an in-plane turn tilts nothing


def test_predicted_planes_records_every_crossd_layer(tmp_path):
    model = nn.Sequential(CrossDConv(3, 4, 3, padding=1), nn.ReLU(), CrossDConv(4, 2, 3, padding=1))
    planes = predicted_planes(model, torch.randn(5, 3, 8, 8))
    assert list(planes) == ["0", "2"] and model.training  # the mode is restored
    for record in planes.values():
        assert record["angle"].shape == record["tilt"].shape == (5,)
        assert np.all(np.abs(record["angle"]) <= 45 + 1e-9) and np.all(record["tilt"] >= 0)
    path = planes_png(planes, tmp_path / "p.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no Cross-D layer"):
        planes_png({}, tmp_path / "q.png")


def test_npz_images_takes_one_split(tmp_path):
    from image_data import write_medmnist_npz

    path = write_medmnist_npz(tmp_path / "a.npz", per_split=4, size=8, splits=("train", "test"))
    assert npz_images(path, 3, split="test").shape == (3, 3, 8, 8)
    assert npz_images(path, 10).shape == (8, 3, 8, 8)  # pooled
    with pytest.raises(ValueError, match="no split 'val'"):
        npz_images(path, 2, split="val")


def test_every_text_of_the_figure_is_readable():
    from matplotlib.text import Text

    rng = np.random.default_rng(0)
    planes = {
        f"layer{i}.0.conv{j}": {"angle": rng.normal(size=9), "tilt": rng.random(9)} for i in range(4) for j in (1, 2)
    }
    fig = planes_figure(planes, title="t")
    fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert labels == list(planes) and len(texts) > 20
    assert min(t.get_fontsize() for t in texts) >= 9  # points; 9 pt at 100 dpi is 12.5 px
    assert fig.dpi == 100
