"""Slow, obviously-correct references for the Cross-D operator, used only as test oracles.

``fft_slice_shift`` is the published formula written literally: the complex spectrum ``(B, Co, Ci, K, K, K)``
multiplied by ``exp(-2 pi i sum(R f))``, inverse FFT, real part, middle depth slice.
``fft_slice_rotate`` evaluates the kernel's trigonometric (FFT) interpolant at the rotated plane's points, one
point at a time. ``fft_slice_project`` is the Fourier slice theorem written literally: the kernel's spectrum
evaluated by an explicit DFT sum at the ``K x K`` frequencies of the rotated central plane, then an inverse 2D FFT.
``PublishedCrossDConv`` is the authors' layer as described in ``shared/design/operator.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _skew(k):
    z = torch.zeros((), dtype=k.dtype)
    return torch.stack([torch.stack([z, -k[2], k[1]]), torch.stack([k[2], z, -k[0]]), torch.stack([-k[1], k[0], z])])


def _unit(axis):
    return axis / (axis.norm() + 1e-8)


def fft_slice_shift(weight, axis, angle):
    k = weight.shape[-1]
    c = k // 2
    f = torch.fft.fftfreq(k, dtype=weight.dtype)
    grid = torch.stack(torch.meshgrid(f, f, f, indexing="ij"))  # (3, K, K, K)
    spectrum = torch.fft.fftn(weight.to(torch.complex128), dim=(-3, -2, -1))
    out = []
    for b in range(axis.shape[0]):
        rot = torch.eye(3, dtype=weight.dtype) + angle[b] * _skew(_unit(axis[b]))
        rotated = torch.einsum("ij,jdhw->idhw", rot, grid)
        phase = torch.exp(-2j * math.pi * rotated.sum(0))
        moved = torch.fft.ifftn(spectrum * phase, dim=(-3, -2, -1)).real
        out.append(moved[:, :, c])
    return torch.stack(out)


def _rodrigues(axis, angle):
    kk = _skew(axis / axis.norm())
    return torch.eye(3, dtype=axis.dtype) + torch.sin(angle) * kk + (1 - torch.cos(angle)) * kk @ kk


def fft_slice_rotate(weight, axis, angle):
    k = weight.shape[-1]
    c = k // 2
    f = torch.fft.fftfreq(k, dtype=weight.dtype)
    fd, fh, fw = torch.meshgrid(f, f, f, indexing="ij")
    spectrum = torch.fft.fftn(weight.to(torch.complex128), dim=(-3, -2, -1))
    out = torch.zeros(axis.shape[0], *weight.shape[:2], k, k, dtype=weight.dtype)
    for b in range(axis.shape[0]):
        rot = _rodrigues(axis[b], angle[b])
        for y in range(k):
            for x in range(k):
                p = rot @ torch.tensor([0.0, y - c, x - c], dtype=weight.dtype) + c
                phase = torch.exp(2j * math.pi * (fd * p[0] + fh * p[1] + fw * p[2]))
                out[b, :, :, y, x] = (spectrum * phase).sum((-3, -2, -1)).real / k**3
    return out


def fft_slice_project(weight, axis, angle):
    """Projection along ``R[:, 0]``: spectrum on the plane ``u R[:, 1] + v R[:, 2]``, inverse 2D DFT (odd K)."""
    k = weight.shape[-1]
    c = k // 2
    centred = torch.arange(k, dtype=weight.dtype) - c
    nd, nh, nw = torch.meshgrid(centred, centred, centred, indexing="ij")
    freqs = torch.fft.fftfreq(k, dtype=weight.dtype) * k  # integer frequencies in FFT order
    out = torch.zeros(axis.shape[0], *weight.shape[:2], k, k, dtype=weight.dtype)
    for b in range(axis.shape[0]):
        rot = _rodrigues(axis[b], angle[b])
        plane = torch.zeros(*weight.shape[:2], k, k, dtype=torch.complex128)
        for i, u in enumerate(freqs):
            for j, v in enumerate(freqs):
                xi = u * rot[:, 1] + v * rot[:, 2]  # a point of the rotated central plane of the spectrum
                phase = torch.exp(-2j * math.pi * (xi[0] * nd + xi[1] * nh + xi[2] * nw) / k)
                plane[:, :, i, j] = (weight * phase).sum((-3, -2, -1))
        # inverse 2D DFT gives taps at centred positions (0 = centre); roll them back to 0..K-1
        out[b] = torch.fft.ifft2(plane).real.roll((c, c), (-2, -1))
    return out


ORACLES = {"shift": fft_slice_shift, "rotate": fft_slice_rotate, "project": fft_slice_project}


def fft_slice(weight, axis, angle, mode):
    return ORACLES[mode](weight, axis, angle)


def reference_conv2d(x, weight, axis, angle, mode, stride=1, padding=0, dilation=1, groups=1, bias=None):
    """Per-sample loop: slice with the FFT oracle, then an ordinary ``conv2d`` for each sample."""
    kernels = fft_slice(weight, axis, angle, mode)
    outs = [F.conv2d(x[b : b + 1], kernels[b], bias, stride, padding, dilation, groups) for b in range(x.shape[0])]
    return torch.cat(outs)


class PublishedCrossDConv(nn.Module):
    """The authors' layer re-derived from its published behaviour (materialises the complex 6D tensor)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        self.weights_3d = nn.Parameter(torch.randn(out_channels, in_channels, *(kernel_size,) * 3))
        self.rotation_params = nn.Sequential(
            nn.Conv2d(in_channels, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1)
        )

    def forward(self, x):
        r = self.rotation_params(x).flatten(2)
        v = (r * torch.softmax(r, dim=-1)).sum(-1)
        axis = v[:, :3] / (v[:, :3].norm(dim=1, keepdim=True) + 1e-8)
        angle = torch.tanh(v[:, 3]) * math.pi / 4
        k = self.kernel_size
        f = torch.fft.fftfreq(k, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(f, f, f, indexing="ij"))
        eye = torch.eye(3, dtype=x.dtype)
        rot = torch.stack([eye + angle[b] * _skew(axis[b]) for b in range(x.shape[0])])
        rotated = torch.einsum("bij,jdhw->bidhw", rot, grid)
        phase = torch.exp(-2j * math.pi * rotated.sum(1))  # (B, K, K, K)
        spectrum = torch.fft.fftn(self.weights_3d, dim=(-3, -2, -1))
        moved = torch.fft.ifftn(spectrum[None] * phase[:, None, None], dim=(-3, -2, -1)).real
        kernels = moved[:, :, :, k // 2]
        outs = [F.conv2d(x[b : b + 1], kernels[b], None, self.stride, self.padding) for b in range(x.shape[0])]
        return torch.cat(outs)
