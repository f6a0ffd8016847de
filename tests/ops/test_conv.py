"""Both exact Cross-D convolution paths against the FFT oracle, each other, gradcheck, autocast and memory."""

import pytest
import torch
import torch.nn.functional as F

from crossd.ops.conv import PATHS, choose_group_path, choose_path, crossd_conv2d
from crossd.ops.slicing import kernel_slice, slice_operator
from reference import fft_slice, reference_conv2d

# (K, stride, padding, dilation, groups, bias, batch)
CASES = [
    (1, 1, 0, 1, 1, False, 2),
    (3, 1, 1, 1, 1, True, 3),
    (3, 1, "same", 2, 2, False, 2),
    (3, 2, 0, 2, 1, True, 1),
    (5, 2, 2, 1, 2, True, 2),
    (5, 1, "same", 1, 1, False, 1),
    (7, 2, 3, 1, 1, False, 2),
]
EVEN_CASES = [(4, 1, "same", 1, 1, True, 2), (2, 2, 1, 1, 2, False, 3)]  # shift mode only


def _problem(k, groups, batch, dtype, ci=4, co=4, size=9):
    x = torch.randn(batch, ci, size, size - 1, dtype=dtype)
    weight = torch.randn(co, ci // groups, k, k, k, dtype=dtype)
    axis = torch.randn(batch, 3, dtype=dtype)
    angle = (torch.rand(batch, dtype=dtype) - 0.5) * 1.5
    bias = torch.randn(co, dtype=dtype)
    return x, weight, axis, angle, bias


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("path", ["weight", "input"])
@pytest.mark.parametrize(
    "mode, case", [(m, c) for m in ("shift", "rotate") for c in CASES] + [("shift", c) for c in EVEN_CASES]
)
def test_paths_match_fft_oracle_float64(mode, case, path):
    k, stride, padding, dilation, groups, use_bias, batch = case
    x, weight, axis, angle, bias = _problem(k, groups, batch, torch.float64)
    bias = bias if use_bias else None
    op = slice_operator(axis, angle, k, mode)
    out = crossd_conv2d(x, weight, op, bias, stride, padding, dilation, groups, path=path)
    ref = reference_conv2d(x, weight, axis, angle, mode, stride, padding, dilation, groups, bias)
    assert out.shape == ref.shape
    assert _rel_err(out, ref) <= 1e-10


@pytest.mark.parametrize("mode", ["shift", "rotate"])
@pytest.mark.parametrize("k, stride, padding", [(3, 1, 1), (7, 2, 3)])
def test_paths_agree_float32(mode, k, stride, padding):
    x, weight, axis, angle, bias = _problem(k, 1, 3, torch.float64, ci=6, co=5, size=12)
    ref = reference_conv2d(x, weight, axis, angle, mode, stride, padding, bias=bias)
    op = slice_operator(axis.float(), angle.float(), k, mode)
    outs = {
        path: crossd_conv2d(x.float(), weight.float(), op, bias.float(), stride, padding, path=path) for path in PATHS
    }
    for out in outs.values():
        assert out.dtype == torch.float32
        assert _rel_err(out.double(), ref) <= 1e-5
    assert _rel_err(outs["weight"], outs["input"]) <= 1e-5


@pytest.mark.parametrize("path", ["weight", "input"])
@pytest.mark.parametrize(
    "k, stride, padding, dilation, groups", [(3, 1, 1, 1, 1), (3, 2, 2, 2, 2), (2, 1, 0, 1, 1), (1, 2, 0, 1, 2)]
)
def test_gradcheck_x_weight_op(path, k, stride, padding, dilation, groups):
    x, weight, axis, angle, _ = _problem(k, groups, 2, torch.float64, ci=2, co=2, size=6)
    op = slice_operator(axis, angle, k, "shift")
    inputs = (x.requires_grad_(), weight.requires_grad_(), op.requires_grad_())

    def fn(x, weight, op):
        return crossd_conv2d(x, weight, op, None, stride, padding, dilation, groups, path=path)

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("path", ["weight", "input"])
def test_gradients_reach_rotation_parameters(path):
    x, weight, axis, angle, bias = _problem(3, 1, 2, torch.float64)
    axis.requires_grad_()
    angle.requires_grad_()
    out = crossd_conv2d(x, weight, slice_operator(axis, angle, 3, "rotate"), bias, 1, 1, path=path)
    grads = torch.autograd.grad(out.square().sum(), (axis, angle))
    ref = reference_conv2d(x, weight, axis, angle, "rotate", 1, 1, bias=bias)
    ref_grads = torch.autograd.grad(ref.square().sum(), (axis, angle))
    for g, r in zip(grads, ref_grads, strict=True):
        assert _rel_err(g, r) <= 1e-8


def test_batch_granularity_is_a_plain_conv_with_the_single_kernel():
    x, weight, axis, angle, bias = _problem(3, 1, 4, torch.float64)
    op = slice_operator(axis[:1], angle[:1], 3, "rotate")
    out = crossd_conv2d(x, weight, op, bias, 2, 1)
    kernel = kernel_slice(weight, axis[:1], angle[:1], "rotate")[0]
    assert torch.allclose(out, F.conv2d(x, kernel, bias, 2, 1), atol=1e-12)
    assert torch.allclose(kernel, fft_slice(weight, axis[:1], angle[:1], "rotate")[0], atol=1e-12)


def test_choose_path_follows_the_resnet18_crossover():
    assert choose_path(64, 1, 7, 56 * 56) == "weight"  # conv1
    assert choose_path(64, 1, 3, 28 * 28) == "weight"
    assert choose_path(256, 1, 3, 7 * 7) == "input"
    assert choose_path(512, 1, 3, 4 * 4) == "input"


def test_backward_keeps_neither_kernels_nor_expanded_input():
    """Only ``x``, ``W`` and ``M`` are saved: nothing the size of ``(B, Co, Ci, K, K)`` or ``(B, L, Ci K^3)``."""
    x, weight, axis, angle, _ = _problem(3, 1, 8, torch.float32, ci=16, co=16, size=6)
    op = slice_operator(axis, angle, 3, "rotate")
    largest = max(x.numel(), weight.numel(), op.numel())
    for path in ("weight", "input"):
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            crossd_conv2d(x.requires_grad_(), weight.requires_grad_(), op, None, 1, 1, path=path)
        assert sizes and max(sizes) <= largest, path


@pytest.mark.parametrize("path", ["weight", "input"])
def test_bf16_autocast_on_cpu_is_close_to_fp32(path):
    """bf16 keeps 8 bits of mantissa: we accept 5% of the output's range."""
    x, weight, axis, angle, bias = _problem(3, 1, 2, torch.float32, ci=8, co=8, size=10)
    op = slice_operator(axis, angle, 3, "rotate")
    weight.requires_grad_()
    ref = crossd_conv2d(x, weight, op, bias, 1, 1, path=path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crossd_conv2d(x, weight, op, bias, 1, 1, path=path)
    assert out.dtype == torch.bfloat16
    assert _rel_err(out.float(), ref) <= 5e-2
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # like conv2d, autocast leaves float64 alone
        assert crossd_conv2d(x.double(), weight.double(), op.double(), None, 1, 1, path=path).dtype == torch.float64


def test_bad_shapes_and_paths_are_rejected():
    x, weight, axis, angle, _ = _problem(3, 1, 2, torch.float32)
    op = slice_operator(axis, angle, 3, "rotate")
    with pytest.raises(ValueError, match="op must have shape"):
        crossd_conv2d(x, weight, op[:, :4], path="input")
    with pytest.raises(ValueError, match="channels"):
        crossd_conv2d(x[:, :3], weight, op)
    with pytest.raises(ValueError, match="path must be one of"):
        crossd_conv2d(x, weight, op, path="fft")


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _oracle_and_grads(x, weight, axis, angle, bias, mode, grad):
    """The FFT oracle's output and its gradients for ``x`` and ``weight`` (float64, CPU)."""
    x, weight = x.double().requires_grad_(), weight.double().requires_grad_()
    ref = reference_conv2d(x, weight, axis.double(), angle.double(), mode, 1, 1, bias=bias.double())
    return (ref.detach(), *torch.autograd.grad(ref, (x, weight), grad.double()))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("path", ["weight", "input"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_paths_on_each_device_and_layout_match_the_oracle(device, path, channels_last):
    x, weight, axis, angle, bias = _problem(3, 1, 3, torch.float32, ci=6, co=5, size=12)
    grad = torch.randn(3, 5, 12, 11)
    ref, ref_gx, ref_gw = _oracle_and_grads(x, weight, axis, angle, bias, "rotate", grad)
    xd = x.to(device).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    xd, wd = xd.requires_grad_(), weight.to(device).requires_grad_()
    op = slice_operator(axis.to(device), angle.to(device), 3, "rotate")
    out = crossd_conv2d(xd, wd, op, bias.to(device), 1, 1, path=path)
    out.backward(grad.to(device))
    assert out.device.type == device and out.dtype == torch.float32
    for mine, theirs in ((out, ref), (xd.grad, ref_gx), (wd.grad, ref_gw)):
        assert _rel_err(mine.detach().cpu().double(), theirs) <= 1e-3  # float32; on CUDA cuDNN may use TF32


@CUDA
@pytest.mark.parametrize("path", ["weight", "input"])
def test_bf16_autocast_on_cuda_is_close_to_fp32(path):
    x, weight, axis, angle, bias = (t.cuda() for t in _problem(3, 1, 2, torch.float32, ci=8, co=8, size=10))
    op = slice_operator(axis, angle, 3, "rotate")
    weight.requires_grad_()
    ref = crossd_conv2d(x, weight, op, bias, 1, 1, path=path)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = crossd_conv2d(x.contiguous(memory_format=torch.channels_last), weight, op, bias, 1, 1, path=path)
    assert out.dtype == torch.bfloat16
    assert _rel_err(out.float(), ref) <= 5e-2
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()


def _group_problem(k, groups, batch, n, dtype=torch.float64):
    x, weight, _, _, bias = _problem(k, groups, batch, dtype)
    axis = torch.randn(n, 3, dtype=dtype)
    angle = (torch.rand(n, dtype=dtype) - 0.5) * 1.5
    return x, weight, axis, angle, bias


def _loop_over_groups(x, weight, axis, angle, mode, bias, stride, padding, dilation, groups, size):
    """The slow reference: one ``kernel_slice`` and one ``F.conv2d`` per contiguous group of ``size`` samples."""
    outs = []
    for i, part in enumerate(x.split(size)):
        kernel = kernel_slice(weight, axis[i], angle[i], mode)[0]
        if padding == "same":
            outs.append(F.conv2d(part, kernel, bias, stride, "same", dilation, groups))
        else:
            outs.append(F.conv2d(part, kernel, bias, stride, padding, dilation, groups))
    return torch.cat(outs)


# (K, stride, padding, dilation, groups, batch, operators): groups of 3, 3, 3, 1 / 2, 2, 2 / 3, 2 samples
GROUP_CASES = [(3, 2, 1, 2, 2, 10, 4), (3, 1, "same", 1, 1, 6, 3), (3, 1, 1, 1, 1, 5, 2), (1, 2, 0, 1, 2, 10, 4)]


@pytest.mark.parametrize("mode", ["rotate", "project"])
@pytest.mark.parametrize("case", GROUP_CASES[:2])
def test_plane_groups_match_the_fft_oracle(case, mode):
    """One operator per contiguous group (the last smaller) is the FFT oracle applied per sample with its group's
    rotation, in float64 to 1e-10."""
    k, stride, padding, dilation, groups, batch, n = case
    x, weight, axis, angle, bias = _group_problem(k, groups, batch, n)
    size = -(-batch // n)
    out = crossd_conv2d(x, weight, slice_operator(axis, angle, k, mode), bias, stride, padding, dilation, groups)
    per_sample = (axis.repeat_interleave(size, 0)[:batch], angle.repeat_interleave(size, 0)[:batch])
    oracle = reference_conv2d(x, weight, *per_sample, mode, stride, padding, dilation, groups, bias)
    assert _rel_err(out, oracle) <= 1e-10


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", GROUP_CASES)
def test_plane_group_paths_match_a_loop_over_groups_with_gradients(case, path):
    """Every path with one operator per contiguous group equals a loop of ``conv2d`` over the groups with
    ``kernel_slice`` kernels, in float64 to 1e-10 (values) and 1e-9 (gradients of ``x``, ``W``, axes, angles)."""
    k, stride, padding, dilation, groups, batch, n = case
    mode = "project"
    x, weight, axis, angle, bias = _group_problem(k, groups, batch, n)
    size = -(-batch // n)
    leaves = [t.requires_grad_() for t in (x, weight, axis, angle)]
    out = crossd_conv2d(x, weight, slice_operator(axis, angle, k, mode), bias, stride, padding, dilation, groups, path)
    ref = _loop_over_groups(x, weight, axis, angle, mode, bias, stride, padding, dilation, groups, size)
    assert out.shape == ref.shape
    assert _rel_err(out, ref) <= 1e-10
    probe = torch.randn_like(ref)
    grads = torch.autograd.grad((out * probe).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * probe).sum(), leaves, allow_unused=True)
    for name, g, r in zip(("x", "weight", "axis", "angle"), grads, ref_grads, strict=True):
        if k == 1 and name in ("axis", "angle"):  # a 1x1x1 slice does not depend on the rotation
            continue
        assert _rel_err(g, r) <= 1e-9, name


def test_plane_groups_reject_an_operator_count_that_contiguous_groups_cannot_make():
    x, weight, axis, angle, _ = _group_problem(3, 1, 9, 4)  # groups of ceil(9/4) = 3 samples make 3 groups, not 4
    with pytest.raises(ValueError, match="n contiguous groups"):
        crossd_conv2d(x, weight, slice_operator(axis, angle, 3, "rotate"), None, 1, 1)
    with pytest.raises(ValueError, match="n contiguous groups"):
        crossd_conv2d(x[:2], weight, slice_operator(axis[:3], angle[:3], 3, "rotate"), None, 1, 1)


def test_choose_group_path_follows_the_measured_resnet18_choices():
    """Batch 16 in 4 groups at ResNet-18's 112² shapes (``crossd bench --granularity 4``, benchmarks/RESULTS.md)."""
    assert choose_group_path(64, 3, 1, 7, 56 * 56, 16, 4) == "loop"  # the 3-channel stem
    assert choose_group_path(64, 64, 1, 3, 28 * 28, 16, 4) == "stacked"
    assert choose_group_path(128, 128, 1, 3, 14 * 14, 16, 4) == "stacked"
    assert choose_group_path(512, 512, 1, 3, 4 * 4, 16, 4) == "input"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("path", ["stacked", "loop"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_group_paths_on_each_device_and_layout(device, path, channels_last):
    x, weight, axis, angle, bias = _group_problem(3, 1, 7, 3)  # groups of 3, 3, 1
    ref = _loop_over_groups(x, weight, axis, angle, "project", bias, 1, 1, 1, 1, 3)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    xd = x.float().to(device).contiguous(memory_format=layout)
    op = slice_operator(axis.float().to(device), angle.float().to(device), 3, "project")
    out = crossd_conv2d(xd, weight.float().to(device), op, bias.float().to(device), 1, 1, path=path)
    assert out.device.type == device and out.dtype == torch.float32
    assert _rel_err(out.cpu().double(), ref) <= 1e-3  # float32; on CUDA cuDNN may use TF32
    with torch.autocast(device, dtype=torch.bfloat16):
        low = crossd_conv2d(xd, weight.float().to(device), op, bias.float().to(device), 1, 1, path=path)
    assert low.dtype == torch.bfloat16 and _rel_err(low.cpu().double(), ref) <= 5e-2
