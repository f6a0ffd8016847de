"""The kernel init table drives every consumer: each name it lists for a use is accepted there, and only those."""

import argparse

import pytest
import torch

from crossd import load_checkpoint, to_3d, to_crossd
from crossd.commands.transfer import add_arguments
from crossd.convert.inits import KERNEL_INITS, USES, init_names
from crossd.errors import SettingsError
from crossd.models import create_model


def _convert(use: str, name: str) -> None:
    source = create_model("small_cnn", 4)
    if use == "to_3d":
        to_3d(create_model("small_cnn", 4, "crossd" if name == "crossd" else "regular"), init=name)
    elif use == "to_crossd":
        to_crossd(source, init=name)
    else:
        target = to_3d(create_model("small_cnn", 4), init="i3d")
        load_checkpoint(target, source.state_dict(), init=name, verbose=False)


@pytest.mark.parametrize("use", USES)
def test_every_listed_name_is_accepted_and_others_refused(use):
    for name in [i.name for i in KERNEL_INITS]:
        if name in init_names(use):
            _convert(use, name)
        else:
            with pytest.raises(SettingsError, match="init must be one of"):
                _convert(use, name)


def test_aliases_place_kernels_alike():
    source = create_model("small_cnn", 4)
    a, b = (to_3d(create_model("small_cnn", 4), init="i3d") for _ in range(2))
    load_checkpoint(a, source.state_dict(), init="i3d", verbose=False)
    load_checkpoint(b, source.state_dict(), init="inflate", verbose=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert next(i for i in KERNEL_INITS if i.name == "inflate").same_as == "i3d"


def test_cli_choices_come_from_the_table():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "init")
    assert tuple(choices) == init_names("to_3d")
    with pytest.raises(ValueError, match="unknown use"):
        init_names("pretrain")
