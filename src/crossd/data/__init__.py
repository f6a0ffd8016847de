"""Datasets: image folders, MedMNIST/pooled ``.npz`` arrays and volumes (the demo's sets: :mod:`crossd.demo.data`)."""

from crossd.data.npz import ArraySplit, NpzData, load_npz

__all__ = ["ArraySplit", "NpzData", "load_npz"]
