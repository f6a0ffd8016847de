"""Tiny pretraining runs: an image folder of 16x16 PNGs and a config that trains on it in about a second."""

import pytest
from image_data import write_image_folder

from crossd.train import PretrainConfig


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "data", classes=3, per_class=4)


TINY = {
    "epochs": 1,
    "batch_size": 4,
    "workers": 0,
    "train_crop_size": 16,
    "val_resize_size": 20,
    "val_crop_size": 16,
    "print_freq": 1,
}


@pytest.fixture
def tiny_config(tmp_path, image_folder):
    """``tiny_config(**overrides)`` -> a one-epoch config on ``image_folder`` writing to ``tmp_path/out``."""

    def make(**overrides) -> PretrainConfig:
        return PretrainConfig(
            **{"data_path": str(image_folder), "output_dir": str(tmp_path / "out"), **TINY, **overrides}
        )

    return make
