"""A study's kernel energy (crossd.study.records.energy_ratio) against a plain loop over kernel entries."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import save_file

from crossd.study.records import energy_ratio


def reference_ratio(kernels: list[torch.Tensor], shift: bool) -> float:
    """Off-centre over centre energy, entry by entry in Python floats; ``shift`` reads entry (d, h, w) of the rolled
    kernel as entry (d - 1, h - 1, w - 1) mod 3 of the stored one."""
    centre = off = 0.0
    for w in kernels:
        for o, i, d, h, x in itertools.product(*(range(n) for n in w.shape)):
            source = ((d - 1) % 3, (h - 1) % 3, (x - 1) % 3) if shift else (d, h, x)
            value = float(w[o, i, source[0], source[1], source[2]]) ** 2
            if d == 1:
                centre += value
            else:
                off += value
    return off / centre


@pytest.mark.parametrize("shift", [False, True])
def test_energy_ratio_is_the_off_centre_over_centre_energy_of_the_3x3x3_kernels(tmp_path, shift):
    generator = torch.Generator().manual_seed(0)
    kernels = [torch.randn(4, 3, 3, 3, 3, generator=generator), torch.randn(2, 4, 3, 3, 3, generator=generator)]
    tensors = {
        "layer1.weight": kernels[0],
        "layer2.weight": kernels[1],
        "layer1.rotation_head.weight": torch.full((3, 4, 3, 3, 3), 100.0),  # not a kernel: left out
        "conv1.weight": torch.full((4, 3, 5, 5, 5), 100.0),  # not 3x3x3: left out
        "bn.weight": torch.ones(4),
    }
    path = tmp_path / "crossd.safetensors"
    save_file(tensors, str(path))
    assert energy_ratio(path, shift) == pytest.approx(reference_ratio(kernels, shift), rel=1e-12)
