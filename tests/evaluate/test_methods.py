"""method_names: how compared methods are labelled in the results; build_network: the network of an init; the
preprocessing taken from checkpoints."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from crossd.convert import planar_kernel
from crossd.data.preprocessing import Preprocessing, PreprocessingWarning
from crossd.errors import SettingsError
from crossd.evaluate.methods import Method, build_network, method_names, new_layers, replace_head, resolve_preprocessing
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.task_config import method_records
from crossd.io import save_safetensors
from crossd.models import ModelSpec, SliceModel, UNet3D, create_model


def test_labels_are_inits_then_checkpoint_stems_then_explicit_labels():
    methods = [("i3d", "a/regular.safetensors"), ("crossd", "x/model.safetensors", "crossd+volumes"), ("random", None)]
    assert [m.name for m in method_names(methods)] == ["i3d", "crossd+volumes", "random"]
    twice = [("crossd", "a/one.safetensors"), ("crossd", "b/two.safetensors")]
    assert [m.name for m in method_names(twice)] == ["crossd@one", "crossd@two"]
    assert method_records(methods)[1] == ["crossd", "x/model.safetensors", "crossd+volumes"]


def test_a_label_given_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        method_names([("crossd", "a.safetensors", "same"), ("i3d", "b.safetensors", "same")])


@pytest.mark.parametrize("init, axes", [("slices", "d"), ("slices3", "dhw")])
@pytest.mark.parametrize("source", ["crossd", "regular"])
def test_slice_inits_wrap_the_plain_2d_network_of_either_checkpoint(data_dir, init, axes, source):
    ckpt = str(data_dir / f"{source}.safetensors")
    model, loading = build_network(Method(init, init, ckpt), 3, slice_pool="attention")
    plain, _ = build_network(Method("regular2d", "regular2d", ckpt), 2)  # a Cross-D checkpoint: angle-0 kernels
    assert isinstance(model, SliceModel) and (model.axes, type(model.pool).__name__) == (axes, "GatedAttentionPool")
    assert loading == {
        "init": init,
        "checkpoint": ckpt,
        "arch": "resnet18",
        "source_conv": source,
        "axes": axes,
        "pool": "attention",
        "chunk": model.chunk,
    }
    encoder = model.encoder.state_dict()
    for name, value in plain.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(encoder[name], value, rtol=0, atol=0, msg=name)
    assert isinstance(model.encoder.fc, nn.Identity)


def test_the_new_layers_of_a_slice_model_are_its_head_and_pool(data_dir):
    ckpt = str(data_dir / "regular.safetensors")
    model, _ = build_network(Method("slices", "slices", ckpt), 3, slice_pool="attention")
    layers = new_layers(model, replace_head(model, 2))
    assert {id(p) for p in layers.parameters()} == {id(p) for m in (model.head, model.pool) for p in m.parameters()}
    plain, _ = build_network(Method("regular2d", "regular2d", ckpt), 2)
    head = replace_head(plain, 2)
    assert new_layers(plain, head) is head


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A one-epoch small_cnn pretraining run (16 px images, ImageNet normalisation) and its output folder."""
    from image_data import write_image_folder

    from crossd.train import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("pretrained")
    data = write_image_folder(root / "data", classes=2, per_class=2, splits=("train", "val"))
    pretrain(
        PretrainConfig(
            data_path=str(data), output_dir=str(root / "out"), model="small_cnn", epochs=1, batch_size=2, workers=0,
            train_crop_size=16, val_resize_size=16, val_crop_size=16, quiet=True,
        )
    )  # fmt: skip
    return root / "out"


def _evaluate_args(data_dir, checkpoint, out, *extra):
    return [
        "evaluate", "--data", str(data_dir / "vol.npz"), "--init", f"i3d={checkpoint}", "--folds", "2",
        "--repeats", "1", "--epochs", "1", "--quiet", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def test_pretraining_records_its_preprocessing_and_transfer_carries_it(pretrained, tmp_path):
    from crossd.convert.published import read_checkpoint
    from crossd.transfer import transfer_checkpoint

    expected = Preprocessing("imagenet", None, 16, 3)
    for name in ("checkpoint.pt", "model.safetensors"):
        assert Preprocessing.from_metadata(read_checkpoint(pretrained / name).metadata) == expected, name
    weights, sidecar = transfer_checkpoint(pretrained / "model.safetensors", "i3d", tmp_path / "m3d.safetensors")
    assert Preprocessing.from_metadata(read_checkpoint(weights).metadata) == expected
    assert json.loads(sidecar.read_text())["preprocessing"] == expected.to_dict()


def test_evaluate_takes_the_normalisation_from_the_checkpoint_and_warns_when_overridden(data_dir, pretrained, tmp_path):
    from crossd.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error", PreprocessingWarning)  # no warning when nothing is overridden
        assert main(_evaluate_args(data_dir, pretrained / "model.safetensors", tmp_path / "a")) == 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["args"]["normalize"] == "imagenet"
    with pytest.warns(PreprocessingWarning, match="normalize radimagenet overrides imagenet, the one the checkpoints"):
        args = _evaluate_args(data_dir, pretrained / "model.safetensors", tmp_path / "b", "--normalize", "radimagenet")
        assert main(args) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["args"]["normalize"] == "radimagenet"


def test_checkpoints_without_a_record_or_disagreeing_fall_back_to_the_default_with_a_warning(data_dir, tmp_path):
    old = data_dir / "regular.safetensors"  # written without a record, as before crossd kept one
    with pytest.warns(PreprocessingWarning, match="normalize: no checkpoint records"):
        assert resolve_preprocessing([("i3d", old)], None, None) == ("radimagenet", None)
    recorded = tmp_path / "recorded.safetensors"
    state = load_file(old)
    save_file(state, recorded, {**safe_open(str(old), "pt").metadata(), **Preprocessing("minmax").metadata()})
    assert resolve_preprocessing([("i3d", recorded), ("acs", old)], None, None) == ("minmax", None)
    imagenet = tmp_path / "imagenet.safetensors"
    save_file(state, imagenet, Preprocessing("imagenet", (0.0, 255.0)).metadata())
    with pytest.warns(PreprocessingWarning) as caught:
        assert resolve_preprocessing([("i3d", recorded), ("acs", imagenet)], None, None) == ("radimagenet", None)
    assert [str(w.message).split(";")[0] for w in caught] == [
        "normalize: the checkpoints were pretrained with different ones (imagenet.safetensors: imagenet, "
        "recorded.safetensors: minmax)",
        "window: the checkpoints were pretrained with different ones (imagenet.safetensors: 0,255, "
        "recorded.safetensors: none (min-max scaling))",
    ]
    assert resolve_preprocessing([("random", None)], None, (-1.0, 1.0)) == ("radimagenet", (-1.0, 1.0))


def test_the_command_line_prints_each_warning_as_one_line(data_dir, pretrained, tmp_path):
    argv = _evaluate_args(data_dir, pretrained / "model.safetensors", tmp_path / "c", "--normalize", "none")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "crossd", *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "crossd evaluate: warning: --normalize none is deprecated and means minmax: samples are still scaled to "
        "[0, 1] (min-max, or the window), only the mean/std step is left out",
        "crossd evaluate: warning: --normalize minmax overrides imagenet, the one the checkpoints were pretrained "
        "with (model.safetensors)",
    ], lines


def test_2_5d_from_a_crossd_checkpoint_and_as_a_segmentation_encoder(tmp_path):
    """``--init 2.5d=CKPT``: a Cross-D checkpoint gives its angle-0 kernels, flat in depth; the 3D network is a
    U-Net encoder; an init that builds no 3D encoder is refused by the segmentation settings."""
    crossd = create_model("resnet18", 2, "crossd")
    path = save_safetensors(
        crossd.state_dict(), tmp_path / "c.safetensors", ModelSpec("resnet18", "crossd", "rotate", 2).metadata()
    )
    net, loading = build_network(Method("2.5d", "2.5d", str(path)), 3)
    assert (loading["init"], loading["source_conv"]) == ("2.5d", "crossd")
    assert torch.equal(net.layer1[0].conv1.weight[:, :, 0], planar_kernel(crossd.layer1[0].conv1))
    assert net.layer1[0].conv1.weight.shape == (64, 64, 1, 3, 3)
    with torch.no_grad():
        assert UNet3D(net, 3).eval()(torch.randn(1, 3, 8, 32, 32)).shape == (1, 3, 8, 32, 32)
    SegmentationConfig(data="mni152", methods=[("2.5d", path)], output_dir=tmp_path).validate()
    with pytest.raises(SettingsError, match="methods 'regular2d' builds no 3D segmentation encoder"):
        SegmentationConfig(data="mni152", methods=[("regular2d", path)], output_dir=tmp_path).validate()
