"""``crossd bench`` and ``crossd.bench``: shapes, timing helper, reference loading, memory probe, CLI smoke."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd.bench import interleaved_medians, load_reference_layer, measure_step_rss, resnet18_shapes
from crossd.cli import main
from crossd.errors import SettingsError

REFERENCE = Path(__file__).parent / "reference.py"


def test_shapes_are_those_of_torchvision_resnet18():
    seen = {}

    def hook(module, inputs, _output):
        key = (module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0])
        seen.setdefault(key, inputs[0].shape[-1])

    model = resnet18(weights=None)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 112, 112))
    shapes = resnet18_shapes(112)
    assert [s.size for s in shapes] == [112, 28, 14, 7, 4]
    for s in shapes:
        assert seen[(s.in_channels, s.out_channels, s.kernel_size, s.stride)] == s.size


def test_interleaved_medians_times_every_candidate():
    calls = []
    medians = interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then strictly interleaved


def test_reference_layer_loads_from_a_file(tmp_path):
    cls = load_reference_layer(REFERENCE)
    assert cls.__name__ == "PublishedCrossDConv"
    assert load_reference_layer(f"{REFERENCE}:PublishedCrossDConv").__name__ == "PublishedCrossDConv"
    with pytest.raises(ValueError, match="no nn.Module named"):
        load_reference_layer(f"{REFERENCE}:Nope")
    with pytest.raises(SettingsError, match="^reference .*missing.py: no such file$"):
        load_reference_layer(tmp_path / "missing.py")


def test_memory_probe_reports_peak_and_training_share():
    mem = measure_step_rss("plain", batch_size=2, image_size=32, threads=1, steps=1)
    assert mem["max_rss"] > mem["training"] > 0


def test_cli_quick_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--threads", "1", "--modes", "shift", "--reference", str(REFERENCE), "--json", str(out)]
    assert main(argv) == 0
    assert "ResNet-18 SGD step" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [row["name"].split()[0] for row in result["layers"]] == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    assert set(result["step"]["ratio"]) == {"shift"}
    assert all(row["shift/auto x"] > 0 and row["reference x"] > 0 for row in result["layers"])


def test_cli_rejects_bad_sizes(capsys):
    assert main(["bench", "--size", "8"]) == 2
    assert "--size" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["plain", "rotate", "shift"])
def test_a_resnet18_training_step_on_cuda_channels_last_bf16(kind):
    from crossd.bench import build_model

    model = build_model(kind).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(4, 3, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (4,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())


def test_granularities_are_candidates_of_the_same_run():
    from crossd.bench import layer_ratios, step_ratios

    rows = layer_ratios(["project"], 4, 32, 1, granularities=("batch", 2), plane_sampling="random")
    assert len(rows) == 5
    for row in rows:  # one plane per batch is a plain conv2d (auto only); 2 groups time every formulation
        assert {k for k in row if k.endswith(" x")} == {
            "project G=batch/auto x", "head only x",
            *(f"project G=2/{p} x" for p in ("auto", "stacked", "loop", "weight", "input")),
        }  # fmt: skip
        assert row["auto_path G=2"] in ("stacked", "loop", "input") and row["project G=2/loop x"] > 0
    step = step_ratios(["project"], 4, 32, 1, granularities=("sample", 2), plane_sampling="random")
    assert set(step["ratio"]) == {"project", "project G=2"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--granularity", "0"], "--granularity must be 'sample', 'batch' or a positive integer, got 0"),
        (["--modes", "shift", "--plane-sampling", "grid"], "needs mode 'rotate' or 'project'"),
    ],
)
def test_cli_rejects_bad_plane_settings_before_timing(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
