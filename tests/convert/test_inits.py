"""The kernel init registry drives every consumer: each name it lists for a use is accepted there, and only those."""

import argparse

import pytest
import torch
from torch import nn

from crossd import load_checkpoint, to_3d, to_crossd
from crossd.commands.transfer import add_arguments
from crossd.convert.conv_3d import planar_conv
from crossd.convert.inits import KERNEL_INITS, USES, KernelInit, get_init, init_names, register_init
from crossd.convert.twin import volume_twin
from crossd.errors import SettingsError
from crossd.evaluate.config import EvaluateConfig
from crossd.models import create_model


def _convert(use: str, name: str) -> None:
    source = create_model("small_cnn", 4)
    if use == "to_3d":
        to_3d(create_model("small_cnn", 4, "crossd" if name == "crossd" else "regular"), init=name)
    elif use == "to_crossd":
        to_crossd(source, init=name)
    elif use == "checkpoint":
        target = to_3d(create_model("small_cnn", 4), init="i3d")
        load_checkpoint(target, source.state_dict(), init=name, verbose=False, strict=False)
    elif use == "twin":
        volume_twin(create_model("small_cnn", 4, "crossd" if name == "crossd" else "regular"), init=name)
    else:
        EvaluateConfig(data="d.npz", methods=[(name, None)], output_dir="out").validate()


@pytest.mark.parametrize("use", USES)
def test_every_listed_name_is_accepted_and_others_refused(use):
    for name in [*KERNEL_INITS, "nonsense"]:
        if name in init_names(use):
            _convert(use, name)
        else:
            expected = f"'{name}' is unknown.*expected one of {', '.join(init_names(use))}"
            with pytest.raises(SettingsError, match=expected):
                _convert(use, name)


def test_aliases_place_kernels_alike():
    source = create_model("small_cnn", 4)
    a, b = (to_3d(create_model("small_cnn", 4), init="i3d") for _ in range(2))
    load_checkpoint(a, source.state_dict(), init="i3d", verbose=False)
    load_checkpoint(b, source.state_dict(), init="inflate", verbose=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert get_init("inflate").same_as == "i3d"


def test_cli_choices_come_from_the_table():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "init")
    assert tuple(choices) == init_names("to_3d")
    with pytest.raises(ValueError, match="unknown use"):
        init_names("pretrain")


def _first_slice(kernel2d: torch.Tensor, shape) -> torch.Tensor:
    return torch.nn.functional.pad(kernel2d.unsqueeze(2), (0, 0, 0, 0, 0, shape[2] - 1))


def test_a_registered_init_is_accepted_where_it_says():
    """One ``register_init`` call makes a new init usable by ``to_3d``: here the 2D kernel in depth slice 0."""
    first = KernelInit("first-slice", "the 2D kernel in depth slice 0", ("to_3d",), conv=planar_conv(_first_slice))
    register_init(first)
    try:
        assert "first-slice" in init_names("to_3d") and "first-slice" not in init_names("checkpoint")
        model = create_model("small_cnn", 4)
        name, conv2d = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
        weight = to_3d(model, init="first-slice").get_submodule(name).weight
        assert torch.equal(weight[:, :, 0], conv2d.weight) and not weight[:, :, 1:].any()
        with pytest.raises(ValueError, match="registered already"):
            register_init(first)
    finally:
        del KERNEL_INITS["first-slice"]
