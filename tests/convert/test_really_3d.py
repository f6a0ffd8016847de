"""check_really_3d: every kind of image operation in a 3D forward pass is named by module; real 3D code is not."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossd import to_3d
from crossd.convert import check_really_3d


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _slicewise_conv(x):  # depth treated as batch: the classic silent failure
    conv = torch.ones(2, 2, 3, 3) / 18
    return torch.stack([F.conv2d(x[:, :, d], conv, padding=1) for d in range(x.shape[2])], 2)


IMAGE_OPERATIONS = {
    "slicewise conv2d": (_slicewise_conv, "conv2d on (1, 2, 6, 5)"),
    "two-axis squeeze": (lambda x: x * x.mean((2, 3), keepdim=True).sigmoid(), "mean over axes (2, 3)"),
    "fold depth into batch": (lambda x: F.relu(x.transpose(1, 2).reshape(-1, 2, 6, 5)), "into a 4D tensor"),
    "2D pooling of a fold": (lambda x: F.max_pool2d(x.flatten(1, 2), 2), "turns (1, 2, 4, 6, 5) into a 4D"),
    "norm over spatial axes": (lambda x: F.layer_norm(x, x.shape[-2:]), "layer_norm over the last 2 axes"),
    "pad of two axes": (lambda x: F.pad(x, (1, 1, 1, 1)), "pad of (1, 2, 4, 6, 5) on its last two axes only"),
    "4D interpolate": (lambda x: F.interpolate(x[:, :, 0], scale_factor=2.0, mode="bilinear"), "interpolate"),
}


@pytest.mark.parametrize("case", list(IMAGE_OPERATIONS))
def test_image_operations_are_named_by_module(case):
    fn, words = IMAGE_OPERATIONS[case]
    model = nn.Sequential(nn.Conv3d(2, 2, 3, padding=1), nn.Sequential(nn.ReLU(), _Lambda(fn)))
    found = check_really_3d(model, torch.randn(1, 2, 4, 6, 5))
    assert list(found) == ["1.1"] and words in found["1.1"], found


def test_real_3d_code_is_not_flagged():
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1),
        nn.BatchNorm3d(4),
        _Lambda(lambda x: x * x.mean((2, 3, 4), keepdim=True).sigmoid()),  # a 3D squeeze-excite
        _Lambda(lambda x: F.layer_norm(x.permute(0, 2, 3, 4, 1), (4,)).permute(0, 4, 1, 2, 3)),  # channels-last
        _Lambda(lambda x: F.interpolate(F.pad(x, (1, 1, 1, 1, 1, 1)), scale_factor=2.0, mode="trilinear")),
        nn.AdaptiveAvgPool3d(1),
        _Lambda(lambda x: x.squeeze(-1).squeeze(-1).squeeze(-1)),  # one pooled voxel may be squeezed
    )
    model.train()
    assert check_really_3d(model, torch.randn(2, 2, 3, 4, 5)) == {}
    assert model.training  # flags restored


def test_reduction_over_channels_to_4d_is_not_a_fold():
    """``x.sum(1)`` of a volume gives a 4D tensor and is flagged: a 3D model should keep its channel axis."""
    found = check_really_3d(_Lambda(lambda x: x.sum(1)), torch.randn(1, 2, 3, 4, 5))
    assert "turns (1, 2, 3, 4, 5) into a 4D tensor" in found[""]


def test_a_failing_forward_is_named_with_what_ran_before():
    model = nn.Sequential(_Lambda(lambda x: x.mean((2, 3))), nn.Linear(7, 2))
    found = check_really_3d(model, torch.randn(1, 3, 4, 5, 6))
    assert "mean over axes (2, 3)" in found["0"] and "forward failed" in found["1"]


def test_needs_a_volume():
    with pytest.raises(ValueError, match=r"example must be a volume \(N, C, D, H, W\), got shape \(1, 3, 8, 8\)"):
        check_really_3d(nn.Identity(), torch.randn(1, 3, 8, 8))


def test_to_3d_reports_the_verdict():
    class Slicewise(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):  # a helper the static scan cannot read as 2D
            return self.conv(x) if x.dim() == 4 else self.apply_to_slices(x)

        def apply_to_slices(self, x):
            return torch.stack([self.conv.weight.new_ones(()) * s for s in x.unbind(2)], 2)

    volume = torch.randn(1, 2, 3, 4, 5)
    _, report = to_3d(nn.Sequential(nn.Conv2d(2, 2, 1)), init="i3d", example_input=volume, return_report=True)
    assert report.really_3d is True and report.ok and "really 3D: yes" in str(report)
    with pytest.warns(UserWarning, match="into a 4D tensor"):
        _, report = to_3d(Slicewise(), init="i3d", example_input=volume, return_report=True)
    assert report.really_3d is False and "into a 4D tensor" in report.unconverted[""]
    assert to_3d(Slicewise(), init="i3d", return_report=True)[1].really_3d is None
