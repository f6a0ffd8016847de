"""The twin registry: layer twins by nearest registered class, forward twins by exact type, registered once."""

import pytest
import torch
from torch import nn

from crossd import to_3d
from crossd.convert import layer_to_3d, register_twin
from crossd.convert.twins import _FORWARD_TWINS, _LAYER_TWINS, forward_twin


class Halve2d(nn.Module):
    """A user's 2D-only layer: halves the spatial size by taking every other pixel."""

    def forward(self, x):
        return x[:, :, ::2, ::2]


class Halve2dSubclass(Halve2d):
    pass


class Mean2d(nn.Module):
    """A user's block whose forward averages the two image axes."""

    def forward(self, x):
        return x.mean((2, 3))


class Halve3d(nn.Module):
    def forward(self, x):
        return x[:, :, ::2, ::2, ::2]


@pytest.fixture
def registered():
    yield
    for table, key in ((_LAYER_TWINS, Halve2d), (_FORWARD_TWINS, Mean2d)):
        table.pop(key, None)


def test_registered_twins_are_used_by_to_3d(registered):
    register_twin(Halve2d)(lambda module: Halve3d())

    @register_twin(Mean2d)
    class Mean3d(Mean2d):
        def forward(self, x):
            return x.mean((2, 3, 4))

    assert forward_twin(Mean2d()) is Mean3d and forward_twin(type("Other", (Mean2d,), {})()) is None  # exact type
    assert isinstance(layer_to_3d(Halve2dSubclass()), Halve3d)  # nearest registered class in the MRO
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Halve2d(), Mean2d())
    model3d, report = to_3d(model, init="i3d", return_report=True)
    assert report.ok and type(model3d[2]) is Mean3d and isinstance(model3d[1], Halve3d)
    with torch.no_grad():
        assert model3d(torch.randn(2, 1, 4, 6, 8)).shape == (2, 2)


def test_the_nearest_registered_class_wins():
    timm = pytest.importorskip("timm.layers")
    norm = timm.BatchNormAct2d(4)  # a BatchNorm2d subclass: timm's twin, not torch's, keeps the activation
    assert type(layer_to_3d(norm)).__name__ == "BatchNormAct3d"
    assert type(layer_to_3d(nn.BatchNorm2d(4))) is nn.BatchNorm3d


def test_a_twin_must_be_a_subclass_or_callable():
    with pytest.raises(TypeError, match="subclass of it or a callable"):
        register_twin(Halve2d)(3)
