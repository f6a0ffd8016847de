"""Tiny datasets and checkpoints for the evaluation tests, and one torch thread (the machine is shared)."""

from __future__ import annotations

import numpy as np
import pytest

from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs with one torch thread (see tests/conftest.py)."""


def write_npz(path, shape, classes=2, n=24, pooled=True, seed=0):
    """Random uint8 samples ``(n, *shape)`` whose brightness depends on the label, in either npz layout."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, *shape)) * 100 + labels.reshape(-1, *[1] * len(shape)) * 60).astype(np.uint8)
    if pooled:
        np.savez(path, images=images, labels=labels[:, None])
    else:
        np.savez(
            path,
            train_images=images[:16],
            train_labels=labels[:16, None],
            val_images=images[16:],
            val_labels=labels[16:, None],
        )
    return path


def write_checkpoint(path, conv):
    """A resnet18 (regular or Cross-D, 10 classes) as safetensors with crossd metadata."""
    spec = ModelSpec("resnet18", conv, "rotate", 10)
    save_safetensors(create_model(spec.arch, spec.num_classes, conv).state_dict(), path, spec.metadata())
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_data")
    write_npz(root / "vol.npz", (8, 8, 8))
    write_npz(root / "img.npz", (16, 16), classes=3, pooled=False)
    write_checkpoint(root / "crossd.safetensors", "crossd")
    write_checkpoint(root / "regular.safetensors", "regular")
    return root
