"""Datasets: image folders, MedMNIST/pooled ``.npz`` arrays, volumes, and the demo's MRI-derived sets."""

from crossd.data.npz import ArraySplit, NpzData, load_npz

__all__ = ["ArraySplit", "NpzData", "load_npz"]
