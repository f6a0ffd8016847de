"""Speed and memory of Cross-D against plain convolutions, as ratios measured in one process.

Every timing interleaves its candidates (one run of each, in turn, ``repeats`` times) and reports the median, so
the ratios survive a noisy, shared machine better than absolute times do. Three measurements:

- :func:`layer_ratios`: forward + backward of one layer (rotation head included) at the convolution shapes of
  a torchvision ResNet-18, ``CrossDConv`` (``path="auto"`` and each path forced) against ``nn.Conv2d``;
- :func:`step_ratios`: a whole SGD training step of ``to_crossd(resnet18())`` against ``resnet18()``;
- :func:`peak_memory`: the maximum resident set size of that training step, each model in its own process.

``granularities`` (``"sample"``, ``"batch"``, integers ``G``: planes per batch, :mod:`crossd.ops.groups`) and
``plane_sampling`` configure the Cross-D layers and models; every granularity is a candidate of the same
interleaved timing, labelled ``"<mode>"`` for ``"sample"`` and ``"<mode> G=<granularity>"`` otherwise. For plane
groups the layer timings force each formulation (``"stacked"``, ``"loop"``, ``"weight"``, ``"input"``).

``reference`` (a Python file defining the authors' layer, never bundled) adds its layer timings.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from crossd.convert import to_crossd
from crossd.errors import SettingsError
from crossd.nn import CrossDConv
from crossd.nn.crossd_conv import set_plane_sampling
from crossd.nn.rotation_head import RotationHead
from crossd.ops.conv import choose_group_path, choose_path
from crossd.ops.groups import Granularity, group_count, group_size
from crossd.ops.input_side import output_size

PATHS = ("auto", "weight", "input")
GROUP_PATHS = ("auto", "stacked", "loop", "weight", "input")


def label(mode: str, granularity: Granularity = "sample") -> str:
    """A candidate's name: the mode, with ``" G=<granularity>"`` unless it is per sample."""
    return mode if granularity == "sample" else f"{mode} G={granularity}"


def group_paths(granularity: Granularity, batch_size: int) -> tuple[str, ...]:
    """The formulations worth timing: every one for plane groups, ``PATHS`` per sample, ``auto`` alone for one
    plane per batch (a plain ``conv2d`` whatever the path)."""
    n = group_count(batch_size, group_size(batch_size, granularity))
    if n == batch_size:
        return PATHS
    return ("auto",) if n == 1 else GROUP_PATHS


@dataclass(frozen=True)
class LayerShape:
    """One convolution of ResNet-18: channels, kernel, stride, padding and the input's spatial size."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    size: int


def resnet18_shapes(image_size: int) -> list[LayerShape]:
    """``conv1`` and the first 3x3 convolution of each stage of a torchvision ResNet-18 fed ``image_size`` images."""
    s = output_size(output_size(image_size, 7, 2, 3, 1), 3, 2, 1, 1)  # conv1, then max-pool
    shapes = [LayerShape("conv1 7x7 s2", 3, 64, 7, 2, 3, image_size)]
    for i, channels in enumerate((64, 128, 256, 512)):
        if i:
            s = output_size(s, 3, 2, 1, 1)
        shapes.append(LayerShape(f"layer{i + 1} {channels}->{channels} {s}x{s}", channels, channels, 3, 1, 1, s))
    return shapes


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict:
    """Median seconds per call of each candidate, timed in turn ``repeats`` times after ``warmup`` calls."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return run


def load_reference_layer(path: str | Path) -> type[nn.Module]:
    """The layer class of a user's copy of the authors' file (``FILE`` or ``FILE:ClassName``).

    Without a class name the file must define exactly one ``nn.Module`` subclass; it is built as
    ``cls(in_channels, out_channels, kernel_size, stride=..., padding=...)``.
    """
    file, _, class_name = str(path).partition(":")
    if not Path(file).is_file():
        raise SettingsError(f"{file}: no such file", field="reference")
    spec = importlib.util.spec_from_file_location("crossd_reference_layer", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    }
    if class_name:
        if class_name not in classes:
            raise SettingsError(
                f"{file} defines no nn.Module named {class_name!r}; it has {sorted(classes)}", field="reference"
            )
        return classes[class_name]
    if len(classes) != 1:
        raise SettingsError(
            f"{file} defines {len(classes)} nn.Module classes {sorted(classes)}; name one as FILE:Class",
            field="reference",
        )
    return next(iter(classes.values()))


def layer_ratios(
    modes: list[str],
    batch_size: int,
    image_size: int,
    repeats: int,
    reference: str | None = None,
    granularities: tuple[Granularity, ...] = ("sample",),
    plane_sampling: str = "head",
) -> list[dict]:
    """Per ResNet-18 layer shape: ``nn.Conv2d`` forward+backward time and each Cross-D variant's ratio to it.

    ``"head only"`` is the rotation head alone (part of every Cross-D time): the share no path can remove.
    ``auto_path`` is the per-sample choice; ``auto_path <label>`` the choice for each plane-group granularity.
    """
    reference_cls = load_reference_layer(reference) if reference else None
    rows = []
    for shape in resnet18_shapes(image_size):
        torch.manual_seed(0)
        x = torch.randn(batch_size, shape.in_channels, shape.size, shape.size)
        x.requires_grad_(shape.in_channels != 3)  # the stem's input needs no gradient inside a network
        conf = (shape.in_channels, shape.out_channels, shape.kernel_size, shape.stride, shape.padding)
        candidates = {"conv2d": _fwd_bwd(nn.Conv2d(*conf, bias=False), x)}
        for mode in modes:
            for granularity in granularities:
                for path in group_paths(granularity, batch_size):
                    layer = CrossDConv(*conf, mode=mode, path=path, granularity=granularity)
                    layer = set_plane_sampling(layer, plane_sampling)
                    candidates[f"{label(mode, granularity)}/{path}"] = _fwd_bwd(layer, x)
        candidates["head only"] = _fwd_bwd(RotationHead(shape.in_channels), x)
        if reference_cls is not None:
            layer = reference_cls(*conf[:3], stride=shape.stride, padding=shape.padding)
            candidates["reference"] = _fwd_bwd(layer, x)
        medians = interleaved_medians(candidates, repeats)
        base = medians.pop("conv2d")
        out_pixels = output_size(shape.size, shape.kernel_size, shape.stride, shape.padding, 1) ** 2
        auto = {"auto_path": choose_path(shape.out_channels, 1, shape.kernel_size, out_pixels)}
        for granularity in granularities:
            n = group_count(batch_size, group_size(batch_size, granularity))
            if 1 < n < batch_size:
                auto[f"auto_path G={granularity}"] = choose_group_path(
                    shape.out_channels, shape.in_channels, 1, shape.kernel_size, out_pixels, batch_size, n
                )
        rows.append(
            {**asdict(shape), "conv2d_ms": base * 1e3, **auto} | {f"{name} x": t / base for name, t in medians.items()}
        )
    return rows


def _train_step(model: nn.Module, batch_size: int, image_size: int) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, 1000, (batch_size,))
    model.train()

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return run


def build_model(kind: str, granularity: Granularity = "sample", plane_sampling: str = "head") -> nn.Module:
    """``"plain"`` (torchvision ResNet-18) or a Cross-D mode name (the same model through ``to_crossd``, with the
    given granularity and plane sampling)."""
    torch.manual_seed(0)
    model = resnet18(weights=None)
    if kind == "plain":
        return model
    model = to_crossd(model, mode=kind, inplace=True, granularity=granularity)
    return set_plane_sampling(model, plane_sampling) if plane_sampling != "head" else model


def _variants(modes: list[str], granularities: tuple[Granularity, ...]) -> dict[str, tuple[str, Granularity]]:
    """Every Cross-D model to time by its label: ``{label: (mode, granularity)}``."""
    return {label(m, g): (m, g) for m in modes for g in granularities}


def step_ratios(
    modes: list[str],
    batch_size: int,
    image_size: int,
    repeats: int,
    granularities: tuple[Granularity, ...] = ("sample",),
    plane_sampling: str = "head",
) -> dict:
    """Seconds per SGD step of plain ResNet-18 and each Cross-D variant's ratio to it, with images per second."""
    variants = _variants(modes, granularities)
    candidates = {"plain": _train_step(build_model("plain"), batch_size, image_size)}
    for name, (mode, granularity) in variants.items():
        candidates[name] = _train_step(build_model(mode, granularity, plane_sampling), batch_size, image_size)
    medians = interleaved_medians(candidates, repeats)
    base = medians["plain"]
    return {
        "plain_ms": base * 1e3,
        "images_per_s": {k: batch_size / t for k, t in medians.items()},
        "ratio": {k: medians[k] / base for k in variants},
    }


def _memory_status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB (Linux): ``VmRSS`` now, ``VmHWM`` the peak of this process.

    ``VmHWM`` belongs to the process image, unlike ``getrusage``'s ``ru_maxrss``, which a child started by
    ``fork``/``exec`` inherits from its parent's size at the fork.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not found in /proc/self/status (peak memory needs Linux)")


def measure_step_rss(
    kind: str,
    batch_size: int,
    image_size: int,
    threads: int,
    steps: int = 3,
    granularity: Granularity = "sample",
    plane_sampling: str = "head",
) -> dict:
    """Memory (MiB) of ``steps`` training steps of ``build_model(kind, granularity, plane_sampling)`` in this
    process (Linux).

    Returns ``max_rss`` (the process's peak resident set) and ``training``: the peak minus the resident set just
    before the first step (libraries, model and data already loaded), i.e. what training itself adds.
    """
    torch.set_num_threads(threads)
    step = _train_step(build_model(kind, granularity, plane_sampling), batch_size, image_size)
    before = _memory_status_mib("VmRSS")
    for _ in range(steps):
        step()
    peak = _memory_status_mib("VmHWM")
    return {"max_rss": peak, "training": peak - before}


def peak_memory(
    modes: list[str],
    batch_size: int,
    image_size: int,
    granularities: tuple[Granularity, ...] = ("sample",),
    plane_sampling: str = "head",
) -> dict:
    """Memory of a training step (:func:`measure_step_rss`), each model in a fresh process, and ratios to plain."""
    variants = _variants(modes, granularities)
    rss = {}
    for name, (kind, granularity) in {"plain": ("plain", "sample"), **variants}.items():
        call = (
            f"measure_step_rss({kind!r}, {batch_size}, {image_size}, {torch.get_num_threads()}, "
            f"granularity={granularity!r}, plane_sampling={plane_sampling!r})"
        )
        code = f"import json; from crossd.bench import measure_step_rss; print(json.dumps({call}))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"memory probe for {name!r} failed: {done.stderr.strip().splitlines()[-1:]}")
        rss[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "mib": rss,
        "max_rss_ratio": {k: rss[k]["max_rss"] / rss["plain"]["max_rss"] for k in variants},
        "training_ratio": {k: rss[k]["training"] / rss["plain"]["training"] for k in variants},
    }


def run_benchmarks(
    modes: list[str],
    batch_size: int,
    image_size: int,
    repeats: int,
    memory: bool = False,
    reference: str | None = None,
    granularities: tuple[Granularity, ...] = ("sample",),
    plane_sampling: str = "head",
) -> dict:
    """All measurements as one JSON-serialisable dict (see the module docstring)."""
    variant = {"granularities": list(granularities), "plane_sampling": plane_sampling}
    result = {
        "config": {
            "modes": modes,
            "batch_size": batch_size,
            "image_size": image_size,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            **variant,
        },
        "layers": layer_ratios(modes, batch_size, image_size, repeats, reference, granularities, plane_sampling),
        "step": step_ratios(modes, batch_size, image_size, repeats, granularities, plane_sampling),
    }
    if memory:
        result["memory"] = peak_memory(modes, batch_size, image_size, granularities, plane_sampling)
    return result


def format_report(result: dict) -> str:
    """A plain-text table of :func:`run_benchmarks`' result."""
    cfg = result["config"]
    lines = [
        f"batch {cfg['batch_size']}, {cfg['image_size']}x{cfg['image_size']}, medians of {cfg['repeats']} "
        f"interleaved repeats, {cfg['threads']} threads, torch {cfg['torch']}"
        + (f", planes {cfg['plane_sampling']}" if cfg.get("plane_sampling", "head") != "head" else ""),
        "",
        "layer forward+backward, ratio to nn.Conv2d (rotation head included):",
    ]
    autos = [k for k in result["layers"][0] if k.startswith("auto_path")]
    keys = [k for k in result["layers"][0] if k.endswith(" x")]
    width = max(len(k) for k in keys) + 1
    header = "".join(f"{k.replace('auto_path', 'auto'):>12}" for k in autos)
    lines.append(f"{'layer':<28}{'conv2d ms':>10}{header}" + "".join(f"{k[:-2]:>{width}}" for k in keys))
    for row in result["layers"]:
        cells = "".join(f"{row[k]:>12}" for k in autos) + "".join(f"{row[k]:>{width}.2f}" for k in keys)
        lines.append(f"{row['name']:<28}{row['conv2d_ms']:>10.1f}{cells}")
    step = result["step"]
    lines += ["", f"ResNet-18 SGD step: plain {step['plain_ms']:.0f} ms"]
    for kind, ratio in step["ratio"].items():
        lines.append(f"  crossd {kind}: {ratio:.2f}x plain ({step['images_per_s'][kind]:.1f} img/s)")
    if "memory" in result:
        mem = result["memory"]
        plain = mem["mib"]["plain"]
        lines += [
            "",
            f"peak memory of a training step: plain max RSS {plain['max_rss']:.0f} MiB, "
            f"of which training adds {plain['training']:.0f} MiB",
        ]
        for kind in mem["max_rss_ratio"]:
            lines.append(
                f"  crossd {kind}: max RSS {mem['mib'][kind]['max_rss']:.0f} MiB = {mem['max_rss_ratio'][kind]:.2f}x, "
                f"training adds {mem['mib'][kind]['training']:.0f} MiB = {mem['training_ratio'][kind]:.2f}x plain"
            )
    return "\n".join(lines)
