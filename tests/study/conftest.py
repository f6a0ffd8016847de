"""A tiny study: 2D images and 3D volumes of 3 classes, a small CNN, one seed, 2 folds, 1 epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_data import write_medmnist_npz


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs with one torch thread (see tests/conftest.py)."""


def write_volumes(path, classes=3, n=12, size=8):
    """Volumes ``(n, size, size, size)`` whose brightness depends on the label, as a pooled ``.npz``."""
    rng = np.random.default_rng(2)
    labels = np.arange(n) % classes
    images = (rng.random((n, size, size, size)) * 100 + labels.reshape(-1, 1, 1, 1) * 60).astype(np.uint8)
    np.savez(path, images=images, labels=labels[:, None])
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``{"pretrain", "downstream", "volumes"}`` paths of tiny sets."""
    root = tmp_path_factory.mktemp("study_data")
    return {
        "pretrain": str(write_medmnist_npz(root / "images.npz", per_split=8, size=16, splits=("train", "val", "test"))),
        "downstream": str(write_volumes(root / "downstream.npz")),
        "volumes": str(write_volumes(root / "volumes.npz", n=6)),
    }


@pytest.fixture
def tiny_study(tmp_path, tiny_data):
    """``tiny_study(arms="", **evaluate)`` -> the path of a tiny study's TOML file (see :func:`tiny_study_text`)."""

    def write(arms: str = "", **evaluate) -> Path:
        path = tmp_path / "tiny.toml"
        path.write_text(tiny_study_text(tiny_data, arms, **evaluate))
        return path

    return write


def tiny_study_text(data: dict, arms: str = "", **evaluate) -> str:
    """The TOML text of a 1-seed, 2-fold, 1-epoch study on ``data`` with a regular and a rotate arm (+ ``arms``)."""
    settings = {"protocols": ["bn"], "inits": ["random", "i3d"], "folds": 2, "epochs": 1, "lr": 0.01, **evaluate}
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"').replace("True", "true") for k, v in settings.items())
    return f"""
seeds = [0]

[data]
pretrain = "{data["pretrain"]}"
downstream = "{data["downstream"]}"
volumes = "{data["volumes"]}"

[pretrain]
model = "small_cnn"
epochs = 1
batch_size = 4

[evaluate]
{lines}

[references]
i3d = "I3D"

[[arms]]
name = "regular"
conv = "regular"
init = "i3d"

[[arms]]
name = "rotate"
conv = "crossd"
description = "Cross-D rotate"
{arms}
"""
