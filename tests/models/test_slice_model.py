"""SliceModel against a slow reference (slice by slice, features read by a hook on the 2D classifier), the
identical-slices property on every classification model of docs/models.md, chunking, channels and input checks."""

import copy
import importlib

import pytest
import torch
import torchvision
from model_table import MODELS, build_model
from torch import nn

from crossd import to_3d, to_crossd
from crossd.errors import DataError, SettingsError
from crossd.evaluate.methods import replace_head
from crossd.models import SliceModel
from crossd.models.slice_model import AXES, GatedAttentionPool
from crossd.models.small_cnn import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # float32: the same image in a batch of S, averaged


def _resnet(classes: int = 3) -> nn.Module:
    return torchvision.models.resnet18(num_classes=classes).eval()


def _hooked_features(model2d: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` -> the input of ``model2d.fc``, ``(N, F)``, read by a forward hook."""
    seen = []
    handle = model2d.fc.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    model2d(images)
    handle.remove()
    return seen[0]


def _reference(model2d: nn.Module, sliced: SliceModel, x: torch.Tensor) -> torch.Tensor:
    """SliceModel's output computed one slice at a time with plain tensor maths."""
    pooled = []
    for axis in AXES[sliced.axes]:
        feats = torch.stack([_hooked_features(model2d, x.select(axis, i)) for i in range(x.shape[axis])], 1)
        kind = type(sliced.pool).__name__
        if kind == "MeanPool":
            pooled.append(feats.mean(1))
        elif kind == "MaxPool":
            pooled.append(feats.max(1).values)
        else:
            p = sliced.pool
            hidden = torch.tanh(feats @ p.attention.weight.T + p.attention.bias)
            hidden = hidden * torch.sigmoid(feats @ p.gate.weight.T + p.gate.bias)
            scores = (hidden @ p.score.weight.T + p.score.bias)[..., 0]
            weights = torch.exp(scores - scores.max(1, keepdim=True).values)
            pooled.append((weights[..., None] * feats).sum(1) / weights.sum(1, keepdim=True))
    return torch.cat(pooled, 1) @ sliced.head.weight.T + sliced.head.bias


@pytest.mark.parametrize("axes", list(AXES))
@pytest.mark.parametrize("pool", ["mean", "max", "attention"])
def test_matches_the_slice_by_slice_reference(axes, pool):
    model2d = _resnet()
    sliced = SliceModel(model2d, axes, pool, chunk=None).eval()
    x = torch.randn(2, 3, 4, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(sliced(x), _reference(model2d, sliced, x), rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("pool", ["mean", "max", "attention"])
def test_identical_slices_give_the_2d_output(pool):
    model2d = _resnet()
    image = torch.randn(2, 3, 32, 32)
    volume = image[:, :, None].expand(-1, -1, 6, -1, -1)
    with torch.no_grad():
        out = SliceModel(model2d, "d", pool).eval()(volume)
        torch.testing.assert_close(out, model2d(image), rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("training", [False, True])
def test_on_a_network_without_depth_mixing_layers_2_5d_and_mean_slices_are_one_model(training):
    """SmallCNN has no pool before its global average, so its 2.5D form (depth-1 kernels, stride 1 along d)
    convolves each slice alone and averages over slices and pixels at the end: exactly SliceModel(m, "d", "mean"),
    BatchNorm batch statistics included (both normalise over B x D x H x W). Study 8 finds the two rows equal."""
    model2d = SmallCNN(num_classes=3, widths=(4, 8, 8)).train(training)
    flat = to_3d(copy.deepcopy(model2d), init="2.5d").train(training)
    sliced = SliceModel(copy.deepcopy(model2d), "d", "mean", chunk=None).train(training)
    x = torch.randn(2, 3, 5, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(flat(x), sliced(x), rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("name", [n for n, entry in MODELS.items() if not entry.segmentation])
def test_every_classification_model_of_the_table_keeps_its_2d_output(name):
    pytest.importorskip(MODELS[name].library)
    model2d = build_model(name)
    image = torch.randn(1, MODELS[name].in_channels, 32, 32)
    with torch.no_grad():
        expected = model2d(image)
        out = SliceModel(model2d, "d", "mean", inplace=True).eval()(image[:, :, None].expand(-1, -1, 3, -1, -1))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=ATOL)


def test_a_crossd_network_runs_its_2d_forward_on_the_slices():
    model2d = to_crossd(_resnet(), init="center").eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = SliceModel(model2d, "d", "max").eval()(image[:, :, None].expand(-1, -1, 3, -1, -1))
        torch.testing.assert_close(out, model2d(image), rtol=1e-4, atol=ATOL)


def test_three_views_concatenate_and_start_as_the_mean_of_the_single_views():
    model2d = _resnet()
    sliced = SliceModel(model2d, "dhw").eval()
    assert (sliced.head.in_features, sliced.head.out_features) == (3 * 512, 3)
    x = torch.randn(2, 3, 6, 8, 10)
    with torch.no_grad():
        single = [SliceModel(model2d, axes).eval()(x) for axes in "dhw"]
        torch.testing.assert_close(sliced(x), sum(single) / 3, rtol=1e-4, atol=ATOL)
    assert model2d.fc.out_features == 3  # the given network is untouched (copied)


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunks_give_the_same_output_in_eval_mode(chunk):
    model2d = _resnet()
    x = torch.randn(2, 3, 7, 16, 16)
    with torch.no_grad():
        whole = SliceModel(model2d, "dhw", "attention", chunk=None).eval()
        chunked = copy.deepcopy(whole)
        chunked.chunk = chunk
        torch.testing.assert_close(chunked(x), whole(x), rtol=1e-4, atol=ATOL)


def test_chunked_training_recomputes_with_the_same_gradients_and_one_statistics_update():
    x = torch.randn(2, 3, 5, 16, 16)
    sliced = SliceModel(_resnet(), "d", "attention", chunk=2).train()
    reference = copy.deepcopy(sliced)
    sliced(x).square().sum().backward()
    # reference: the same chunks (2, 2, 1 slices of each volume) through the encoder directly, all kept in memory
    parts = [reference.encoder(x[:, :, i : i + 2].movedim(2, 1).flatten(0, 1)) for i in range(0, 5, 2)]
    feats = torch.cat([p.view(2, -1, 512) for p in parts], 1)
    reference.head(reference.pool(feats)).square().sum().backward()
    for (name, got), want in zip(sliced.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-3, atol=1e-5, msg=name)
    for (name, got), want in zip(sliced.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)  # updated once, not twice


def test_grey_volumes_are_repeated_to_the_networks_channels_and_other_counts_refused():
    sliced = SliceModel(_resnet(), "d").eval()
    grey = torch.randn(1, 1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(sliced(grey), sliced(grey.repeat(1, 3, 1, 1, 1)))
    with pytest.raises(DataError, match=r"2 channels, the 2D network takes 3 .*\(1, 2, 3, 16, 16\)"):
        sliced(torch.randn(1, 2, 3, 16, 16))
    with pytest.raises(DataError, match=r"takes volumes \(B, C, D, H, W\), got shape \(1, 3, 16, 16\)"):
        sliced(torch.randn(1, 3, 16, 16))


def test_bad_settings_and_networks_are_refused_in_one_line():
    with pytest.raises(SettingsError, match="axes must be one of"):
        SliceModel(_resnet(), axes="x")
    with pytest.raises(SettingsError, match="pool must be one of"):
        SliceModel(_resnet(), pool="sum")
    with pytest.raises(SettingsError, match="chunk must be at least 1"):
        SliceModel(_resnet(), chunk=0)
    with pytest.raises(SettingsError, match="Sequential has no nn.Linear classifier"):
        SliceModel(nn.Sequential(nn.Conv2d(3, 4, 3)))
    not_flat = SliceModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(6, 2)))
    with pytest.raises(SettingsError, match=r"input to its classifier has shape \(2, 4, 6, 6\), not \(N, 6\)"):
        not_flat(torch.randn(1, 3, 2, 8, 8))


def test_the_head_is_the_last_linear_so_evaluate_replaces_it_not_the_attention():
    sliced = SliceModel(_resnet(), "d", "attention")
    assert isinstance(sliced.pool, GatedAttentionPool)
    head = replace_head(sliced, 5)
    assert sliced.head is head and sliced(torch.randn(2, 3, 3, 16, 16)).shape == (2, 5)


def test_the_memory_benchmark_builds_each_configuration_and_measures_a_step(monkeypatch):
    monkeypatch.syspath_prepend("benchmarks")
    bench = importlib.import_module("slice_memory")
    assert isinstance(bench.build("3d").conv1, nn.Conv3d)
    assert (bench.build("slices:none").chunk, bench.build("slices3:4").axes) == (None, "dhw")
    row = bench.measure("slices:2", 6, 1, 1, "cpu")
    assert row["config"] == "slices:2" and row["step_s"] > 0 and row["memory_mib"] >= 0
