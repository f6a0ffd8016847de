"""method_names: how compared methods are labelled in the results."""

import pytest
import torch
from torch import nn

from crossd.evaluate.config import method_records
from crossd.evaluate.methods import Method, build_network, method_names, new_layers, replace_head
from crossd.models import SliceModel


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
