"""Model factory: torchvision names and crossd's own models, regular and Cross-D, rebuilt from checkpoints."""

import pytest
import torch

from crossd import CrossDConv, to_3d
from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model, load_2d_model


@pytest.mark.parametrize("conv", ["regular", "crossd"])
def test_small_cnn_converts_and_round_trips(tmp_path, conv):
    model = create_model("small_cnn", 4, conv)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert any(isinstance(m, CrossDConv) for m in model.modules()) == (conv == "crossd")
    path = save_safetensors(
        model.state_dict(), tmp_path / "m.safetensors", ModelSpec("small_cnn", conv, "rotate", 4).metadata()
    )
    loaded, spec = load_2d_model(path)
    assert spec == ModelSpec("small_cnn", conv, "rotate", 4)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    init = "crossd" if conv == "crossd" else "i3d"
    assert to_3d(loaded, init=init).eval()(torch.randn(1, 3, 8, 8, 8)).shape == (1, 4)


def test_foreign_state_dict_is_inferred(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in create_model("resnet18", 7).state_dict().items()}}, path)
    _, spec = load_2d_model(path)
    assert spec == ModelSpec("resnet18", "regular", "rotate", 7)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="arch 'resnet7' is not a known model"):
        create_model("resnet7")
