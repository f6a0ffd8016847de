"""method_names: how compared methods are labelled in the results; build_network: the network of an init."""

import pytest
import torch

from crossd.convert import planar_kernel
from crossd.errors import SettingsError
from crossd.evaluate.config import method_records
from crossd.evaluate.methods import Method, build_network, method_names
from crossd.evaluate.segmentation import SegmentationConfig
from crossd.io import save_safetensors
from crossd.models import ModelSpec, UNet3D, create_model


def test_labels_are_inits_then_checkpoint_stems_then_explicit_labels():
    methods = [("i3d", "a/regular.safetensors"), ("crossd", "x/model.safetensors", "crossd+volumes"), ("random", None)]
    assert [m.name for m in method_names(methods)] == ["i3d", "crossd+volumes", "random"]
    twice = [("crossd", "a/one.safetensors"), ("crossd", "b/two.safetensors")]
    assert [m.name for m in method_names(twice)] == ["crossd@one", "crossd@two"]
    assert method_records(methods)[1] == ["crossd", "x/model.safetensors", "crossd+volumes"]


def test_a_label_given_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        method_names([("crossd", "a.safetensors", "same"), ("i3d", "b.safetensors", "same")])


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
