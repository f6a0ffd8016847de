"""load_checkpoint: formats, 2D weights into Cross-D/3D models, MedicalNet-style 3D ResNets, the report."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models import resnet18

from crossd import CrossDConv, load_checkpoint, to_3d, to_crossd
from crossd.convert.kernels import planar_kernel


def _small_cnn(in_channels: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(4, 2),
    )


def _assert_same_state(model: nn.Module, state: dict) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("wrapper", ["plain", "model", "state_dict", "net"])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.module."])
def test_wrapped_and_prefixed_state_dicts(tmp_path, wrapper, prefix):
    source = _small_cnn()
    state = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save(state if wrapper == "plain" else {wrapper: state, "epoch": 3}, tmp_path / "ckpt.pth")
    target = _small_cnn()
    report = load_checkpoint(target, tmp_path / "ckpt.pth", verbose=False)
    assert report.ok and len(report.loaded) == len(source.state_dict())
    _assert_same_state(target, source.state_dict())


def test_safetensors(tmp_path):
    source = _small_cnn()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "m.safetensors"))
    target = _small_cnn()
    assert load_checkpoint(target, tmp_path / "m.safetensors", verbose=False).ok
    _assert_same_state(target, source.state_dict())


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": _small_cnn()}, tmp_path / "whole_model.pt")  # needs weights_only=False to read
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as refused:
        load_checkpoint(_small_cnn(), tmp_path / "whole_model.pt")
    message = str(refused.value)
    assert "\n" not in message and "never arbitrary pickles" in message
    assert "weights_only" not in message  # torch's advice to unpickle anyway is not passed on


def test_a_corrupt_file_is_one_line(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as refused:
        load_checkpoint(_small_cnn(), tmp_path / "corrupt.pt")
    assert "\n" not in str(refused.value) and "weights_only" not in str(refused.value)


@pytest.mark.parametrize(("mode", "init", "arch"), [("rotate", "center", "resnet18"), ("shift", "i3d", "small")])
def test_2d_weights_into_a_crossd_model(mode, init, arch):
    build = (lambda: resnet18(num_classes=3)) if arch == "resnet18" else _small_cnn
    source = build()
    model = to_crossd(build(), mode=mode)  # random 3D kernels, fresh heads
    report = load_checkpoint(model, source.state_dict(), init=init, verbose=False)
    convs = [name for name, module in model.named_modules() if isinstance(module, CrossDConv)]
    assert report.ok and set(report.adapted) == {f"{name}.weight" for name in convs}
    assert set(report.explained.values()) == {"new rotation head (the checkpoint has none)"}
    for name in convs:
        kernel2d = source.get_submodule(name).weight.detach()
        k = kernel2d.shape[-1]
        expected = kernel2d if init == "center" else kernel2d / k
        torch.testing.assert_close(planar_kernel(model.get_submodule(name)), expected)


def test_torchvision_2d_weights_into_a_3d_model_give_the_2d_model_on_one_slice():
    source = resnet18(num_classes=3).eval()
    for module in source.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
    model3d = to_3d(resnet18(num_classes=3), init="random").eval()
    report = load_checkpoint(model3d, source.state_dict(), init="center", verbose=False)
    assert report.ok and len(report.adapted) == 20
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model3d(image[:, :, None]), source(image), rtol=1e-4, atol=1e-5)
    inflated = to_3d(resnet18(num_classes=3), init="random")
    load_checkpoint(inflated, source.state_dict(), init="i3d", verbose=False)
    torch.testing.assert_close(inflated.layer1[0].conv1.weight.sum(2), source.layer1[0].conv1.weight)


@pytest.mark.parametrize("axis", ["d", "h"])
def test_2d_weights_into_a_2_5d_model_find_the_flat_axis(axis):
    """Into a 2.5D model a 2D kernel goes flat along the axis where the 3D kernel has size 1: the model then equals
    ``to_3d(source, init="2.5d")``; into a full 3D kernel ``init="2.5d"`` cannot place it and says so."""
    source = resnet18(num_classes=3)
    expected = to_3d(source, init="2.5d", axis=axis)
    target = to_3d(resnet18(num_classes=3), init="2.5d", axis=axis)
    report = load_checkpoint(target, source.state_dict(), init="2.5d", verbose=False)
    assert report.ok and len(report.adapted) == 20 and "2D kernel -> 3D (2.5d)" in report.adapted["conv1.weight"]
    _assert_same_state(target, expected.state_dict())
    cube = to_3d(resnet18(num_classes=3), init="random")
    report = load_checkpoint(cube, source.state_dict(), init="2.5d", strict=False, verbose=False)
    assert report.mismatched["conv1.weight"] == "(64, 3, 7, 7) vs (64, 3, 7, 7, 7)"


def _medicalnet_state(model3d: nn.Module, shortcut: str) -> dict:
    """A MedicalNet-style checkpoint: 1-channel 7x7x7 conv1, `module.` prefix, a `conv_seg` head, no `fc`."""
    state = {}
    for key, value in model3d.state_dict().items():
        if key.startswith("fc.") or (shortcut == "A" and ".downsample." in key):
            continue
        value = torch.randn_like(value) if value.is_floating_point() else value
        state["module." + key] = value[:, :1].clone() if key == "conv1.weight" else value
    state["module.conv_seg.0.weight"] = torch.randn(32, 512, 3, 3, 3)
    state["module.conv_seg.2.weight"] = torch.randn(2, 32, 1, 1, 1)
    return {"state_dict": state}


def test_medicalnet_resnet_into_a_converted_resnet(tmp_path):
    model3d = to_3d(resnet18(num_classes=2), init="random")
    torch.save(_medicalnet_state(model3d, shortcut="B"), tmp_path / "resnet_18.pth")
    with pytest.warns(UserWarning, match="conv1.weight: 1 input channel averaged into 3"):
        with pytest.raises(ValueError, match=r"(?s)missing 2,.*missing: fc\.weight, fc\.bias.*unexpected: conv_seg"):
            load_checkpoint(model3d, tmp_path / "resnet_18.pth")
    before = model3d.conv1.weight.detach().clone()
    with pytest.warns(UserWarning, match="averaged into 3"):
        report = load_checkpoint(model3d, tmp_path / "resnet_18.pth", exclude=["fc", "conv_seg"], verbose=False)
    assert report.ok and set(report.adapted) == {"conv1.weight"}
    stored = torch.load(tmp_path / "resnet_18.pth", weights_only=True)["state_dict"]
    torch.testing.assert_close(model3d.conv1.weight, stored["module.conv1.weight"].repeat(1, 3, 1, 1, 1) / 3)
    assert not torch.equal(model3d.conv1.weight, before)
    assert torch.equal(model3d.layer4[1].conv2.weight, stored["module.layer4.1.conv2.weight"])


def test_strict_failure_reports_and_leaves_the_model_alone():
    model3d = to_3d(resnet18(num_classes=2), init="random")
    before = {k: v.clone() for k, v in model3d.state_dict().items()}
    state = _medicalnet_state(model3d, shortcut="A")["state_dict"]
    with pytest.warns(UserWarning):
        with pytest.raises(ValueError) as info:
            load_checkpoint(model3d, state, exclude=["fc"])
    message = str(info.value)
    assert "missing 15" in message and "layer2.0.downsample.0.weight" in message
    assert "unexpected 2" in message and "conv_seg.0.weight" in message
    _assert_same_state(model3d, before)
    with pytest.warns(UserWarning):
        report = load_checkpoint(model3d, state, strict=False, exclude=["fc", "conv_seg"], verbose=False)
    assert not report.ok and len(report.missing) == 15  # 3 downsample blocks x (conv + 4 BN tensors)


def test_three_channels_into_one_and_shape_mismatches(capsys):
    source = _small_cnn(3)
    target = to_3d(_small_cnn(1), init="random")
    with pytest.warns(UserWarning, match="3 input channels summed into 1"):
        with pytest.raises(ValueError, match=r"(?s)shape-mismatched 2.*5\.weight \(\(2, 4\) vs \(3, 4\)\)"):
            target[5] = nn.Linear(4, 3)
            load_checkpoint(target, source.state_dict())
    with pytest.warns(UserWarning, match="summed"):
        report = load_checkpoint(target, source.state_dict(), exclude=["5"])
    assert report.ok and "5.weight" in report.excluded
    assert "loaded 6, adapted 1" in capsys.readouterr().out  # printed by default
    torch.testing.assert_close(target[0].weight[:, :, 1], source[0].weight.sum(1, keepdim=True))


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.layer_scale = nn.Parameter(torch.randn(3, 1, 1))

    def forward(self, x):
        return self.layer_scale * self.conv(x)


def test_channel_broadcast_parameters_gain_a_depth_axis():
    source = _Scaled()
    target = to_3d(_Scaled(), init="random")
    report = load_checkpoint(target, source.state_dict(), init="i3d", verbose=False)
    assert report.ok and set(report.adapted) == {"conv.weight", "layer_scale"}
    assert torch.equal(target.layer_scale, source.layer_scale.detach()[..., None])


def test_a_one_channel_checkpoint_reaches_every_command_through_channel_adaptation(tmp_path, capsys):
    """MRI/CT networks are often 1-channel: `crossd transfer` (and everything else built on load_2d_model:
    `evaluate --init`, `pretrain --weights`) averages the kernel into 3 channels with a warning."""
    from torchvision.models import resnet18

    from crossd.cli import main
    from crossd.models import load_2d_model

    net = resnet18(num_classes=4)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    torch.save(net.state_dict(), tmp_path / "mri.pt")
    with pytest.warns(UserWarning, match="conv1.weight: 1 input channel averaged into 3"):
        model, spec = load_2d_model(tmp_path / "mri.pt")
    assert spec.num_classes == 4 and torch.equal(model.conv1.weight, net.conv1.weight.repeat(1, 3, 1, 1) / 3)
    grey = torch.rand(1, 1, 32, 32)
    net.eval(), model.eval()
    assert torch.allclose(model(grey.repeat(1, 3, 1, 1)), net(grey), atol=1e-5)  # same response to a grey image
    with pytest.warns(UserWarning):
        code = main(
            ["transfer", str(tmp_path / "mri.pt"), "--init", "i3d", "--output", str(tmp_path / "a.safetensors")]
        )
    assert code == 0 and (tmp_path / "a.safetensors").is_file()


def test_regular2d_from_a_crossd_checkpoint_uses_its_angle_0_kernels(tmp_path):
    from crossd.evaluate.methods import Method, build_network
    from crossd.io import save_safetensors
    from crossd.models import ModelSpec, create_model

    spec = ModelSpec("small_cnn", "crossd", "shift", 10)
    crossd_model = create_model(spec.arch, spec.num_classes, "crossd", "shift")
    save_safetensors(crossd_model.state_dict(), tmp_path / "c.safetensors", spec.metadata())
    model, loading = build_network(Method("regular2d", "regular2d", str(tmp_path / "c.safetensors")), 2)
    assert loading["source_conv"] == "crossd" and not any(isinstance(m, CrossDConv) for m in model.modules())
    for i, stage in enumerate(crossd_model.features):
        assert torch.equal(model.features[i][0].weight, planar_kernel(stage[0]))
        assert torch.equal(model.features[i][1].weight, stage[1].weight)
    assert torch.equal(model.fc.weight, crossd_model.fc.weight)
