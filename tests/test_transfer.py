"""crossd transfer: 3D models from 2D checkpoints, checked against independent computations."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from crossd.cli import main
from crossd.errors import CheckpointError
from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model
from crossd.models.from_2d import build_3d_model, load_3d_model
from crossd.nn import ACSConv3d
from crossd.transfer import transfer_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(path, conv):
    """A resnet18 checkpoint with non-trivial BatchNorm statistics and affine parameters."""
    model = create_model("resnet18", 5, conv)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    save_safetensors(model.state_dict(), path, ModelSpec("resnet18", conv, "rotate", 5).metadata())
    return path, load_file(str(path))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    return {conv: _checkpoint(root / f"{conv}.safetensors", conv) for conv in ("regular", "crossd")}


def acs_reference(x, kernel, stride, padding):
    """ACS by hand: output channels split (ceil, ceil, floor) in thirds; the 2D kernel slides over the (H, W)
    planes for the first third, the (D, W) planes for the second, the (D, H) planes for the last."""
    co = kernel.shape[0]
    sizes = [(co + 2) // 3, (co + 1) // 3, co // 3]
    axial, coronal, sagittal = torch.split(kernel, sizes)

    def planes(volume, axis, weight):
        # run conv2d on every plane orthogonal to `axis` (taking every stride-th plane), stack along `axis`
        outputs = [
            F.conv2d(volume.select(axis, i), weight, stride=stride, padding=padding)
            for i in range(0, volume.shape[axis], stride)
        ]
        return torch.stack(outputs, dim=axis)

    return torch.cat([planes(x, 2, axial), planes(x, 3, coronal), planes(x, 4, sagittal)], dim=1)


@pytest.mark.parametrize("conv", ["regular", "crossd"])
def test_acs_conv_equals_the_2d_kernel_on_three_planes(checkpoints, conv):
    path, state = checkpoints[conv]
    model, info = build_3d_model("acs", path)
    assert info.source_conv == conv and info.init == "acs"
    for name, stride, padding, channels in [("conv1", 2, 3, 3), ("layer1.0.conv1", 1, 1, 64)]:
        layer = model.get_submodule(name)
        assert isinstance(layer, ACSConv3d)
        weight = state[f"{name}.weight"]
        kernel = weight if conv == "regular" else weight[:, :, weight.shape[2] // 2]  # rotate mode: angle 0
        x = torch.randn(1, channels, 9, 10, 11)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), acs_reference(x, kernel, stride, padding), atol=1e-4, rtol=1e-4)


def test_crossd_transfer_copies_kernels_and_drop_bn_stats_mirrors_the_authors(checkpoints):
    path, state = checkpoints["crossd"]
    kept, _ = build_3d_model("crossd", path)
    dropped, info = build_3d_model("crossd", path, drop_bn_stats=True)
    assert info.drop_bn_stats
    assert torch.equal(kept.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert isinstance(kept.layer1[0].conv1, nn.Conv3d) and not any("rotation" in k for k in kept.state_dict())
    assert torch.equal(kept.bn1.running_mean, state["bn1.running_mean"])
    assert torch.equal(dropped.bn1.running_mean, torch.zeros(64)) and torch.equal(dropped.bn1.weight, torch.ones(64))
    assert torch.equal(dropped.layer1[0].bn2.running_var, torch.ones(64))
    # the downsample BatchNorm has no "bn" in its key: the authors' loading keeps it
    assert torch.equal(dropped.layer2[0].downsample[1].running_mean, state["layer2.0.downsample.1.running_mean"])


def test_random_and_missing_checkpoints(checkpoints):
    path, state = checkpoints["regular"]
    model, info = build_3d_model("random", path)
    assert info.arch == "resnet18" and not torch.equal(model.bn1.running_mean, state["bn1.running_mean"])
    with pytest.raises(ValueError, match="needs a 2D checkpoint"):
        build_3d_model("i3d", None)
    with pytest.raises(ValueError, match="needs a Cross-D checkpoint"):
        build_3d_model("crossd", path)


def test_transfer_checkpoint_saves_a_reloadable_model_and_sidecar(checkpoints, tmp_path):
    path, _ = checkpoints["crossd"]
    weights, sidecar = transfer_checkpoint(path, "i3d", tmp_path / "out" / "m3d.safetensors")
    description = json.loads(sidecar.read_text())
    assert description["arch"] == "resnet18" and description["init"] == "i3d"
    assert description["source_checkpoint"] == str(path) and description["source_conv"] == "crossd"
    with safe_open(str(weights), "pt") as f:
        assert json.loads(f.metadata()["crossd.transfer"]) == description
    fresh, _ = build_3d_model("random", path)
    fresh.load_state_dict(load_file(str(weights)))  # strict: same architecture
    expected, _ = build_3d_model("i3d", path)
    assert torch.equal(fresh.layer1[0].conv1.weight, expected.layer1[0].conv1.weight)
    with torch.no_grad():
        assert fresh.eval()(torch.randn(1, 3, 8, 8, 8)).shape == (1, 5)


def test_cli(checkpoints, tmp_path, capsys):
    path, _ = checkpoints["regular"]
    assert main(["transfer", str(path), "--init", "center", "--output", str(tmp_path / "m.safetensors")]) == 0
    assert (tmp_path / "m.json").is_file() and "wrote" in capsys.readouterr().out
    assert main(["transfer", str(path), "--init", "acs", "--output", str(tmp_path / "m.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("conv", ["regular", "crossd"])
def test_cli_2_5d_writes_a_model_that_loads(checkpoints, tmp_path, conv):
    """``--init 2.5d --axis h``: kernels flat along H (the angle-0 kernels of a Cross-D checkpoint), recorded."""
    path, state = checkpoints[conv]
    out = tmp_path / "m.safetensors"
    assert main(["transfer", str(path), "--init", "2.5d", "--axis", "h", "--output", str(out)]) == 0
    description = json.loads(out.with_suffix(".json").read_text())
    assert (description["init"], description["axis"], description["source_conv"]) == ("2.5d", "h", conv)
    model, _ = build_3d_model("2.5d", path, axis="h")
    model.load_state_dict(load_file(str(out)))  # strict: the 2.5D architecture
    weight = state["layer1.0.conv1.weight"]
    kernel = weight if conv == "regular" else weight[:, :, weight.shape[2] // 2]  # rotate mode: angle 0
    assert torch.equal(model.layer1[0].conv1.weight, kernel.unsqueeze(3))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 8, 8, 8)).shape == (1, 5)


def test_plain_torchvision_state_dicts_in_pt_files(checkpoints, tmp_path):
    _, state = checkpoints["regular"]
    torch.save({"model": state}, tmp_path / "wrapped.pt")  # no crossd metadata: architecture inferred
    model, info = build_3d_model("center", tmp_path / "wrapped.pt")
    assert info.arch == "resnet18" and info.source_conv == "regular" and info.source_num_classes == 5
    assert torch.equal(model.conv1.weight[:, :, 3], state["conv1.weight"])


def _readme_block(after: str) -> str:
    """The first fenced Python block of README.md after the line containing ``after``."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("```python", text.index(after)) + len("```python")
    return text[start : text.index("```", start)]


def test_readme_snippet_loads_a_transferred_model(checkpoints, tmp_path, monkeypatch, capsys):
    path, _ = checkpoints["crossd"]
    transfer_checkpoint(path, "crossd", tmp_path / "m3d.safetensors")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(_readme_block("A model written by `crossd transfer` loads back"), namespace)
    assert namespace["logits"].shape == (1, 2)
    assert capsys.readouterr().out.split() == ["resnet18", "crossd", "5"]
    model, _ = build_3d_model("crossd", path)
    loaded = namespace["model"]
    for name, tensor in model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(CheckpointError, match="not a crossd transfer output"):
        load_3d_model(path)
