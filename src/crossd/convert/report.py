"""What a conversion changed and what it could not change: static scans and a forward check that name modules."""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


class ConversionWarning(UserWarning):
    """A converted model still holds parts that assume the old number of spatial dimensions."""


@dataclass
class ConversionReport:
    """The outcome of :func:`crossd.to_crossd` / :func:`crossd.to_3d`, keyed by qualified module name.

    Attributes:
        converted: ``name -> "Conv2d -> Conv3d"`` for every swapped layer or reshaped parameter.
        notes: ``name -> note`` on deliberate choices (a ``ConvTranspose2d`` left 2D by ``to_crossd``, an init
            fallback).
        unconverted: ``name -> reason`` for parts that still assume 2D (a 2D-only layer, a 2D functional call
            in a ``forward``, an image operation in a 3D forward pass, a failed forward pass). ``""`` names the
            model itself.
        really_3d: :func:`crossd.to_3d`'s verdict of :func:`~crossd.convert.really_3d.check_really_3d` on its
            ``example_input`` (``None``: not checked).
    """

    converted: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    unconverted: dict[str, str] = field(default_factory=dict)
    really_3d: bool | None = None

    @property
    def ok(self) -> bool:
        """``True`` when nothing was left unconverted."""
        return not self.unconverted

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)}, notes {len(self.notes)}, unconverted {len(self.unconverted)}"]
        if self.really_3d is not None:
            lines[0] += f", really 3D: {'yes' if self.really_3d else 'NO'}"
        lines += [f"  note {name or 'model'}: {why}" for name, why in self.notes.items()]
        lines += [f"  UNCONVERTED {name or 'model'}: {why}" for name, why in self.unconverted.items()]
        return "\n".join(lines)

    def add_unconverted(self, found: dict[str, str]) -> None:
        """Record unconverted parts, joining reasons for a module named twice."""
        for name, why in found.items():
            self.unconverted[name] = f"{self.unconverted[name]}; {why}" if name in self.unconverted else why

    def warn(self, what: str) -> None:
        """Emit one :class:`ConversionWarning` naming every unconverted module (nothing when all is well)."""
        if self.unconverted:
            names = "; ".join(f"{name or 'model'} ({why})" for name, why in self.unconverted.items())
            warnings.warn(f"{what}: could not convert {names}", ConversionWarning, stacklevel=3)


# Calls such as F.max_pool2d(...), torch.nn.functional.adaptive_avg_pool2d(...), or interpolate(..., "bilinear").
_FUNCTIONAL_2D = re.compile(r"\b(?:F|functional|torch)\.(\w+2d)\s*\(")
_INTERPOLATE_2D = re.compile(r"\binterpolate\s*\(.*(?:bilinear|bicubic)")
# Image idioms in tensor methods: x.mean((2, 3)), gamma.reshape(1, -1, 1, 1), x.permute(0, 2, 3, 1).
_IMAGE_IDIOMS = {
    "reduces over axes (2, 3)": re.compile(r"\.(?:mean|sum|amax|amin|std|var)\(\s*[(\[]\s*2\s*,\s*3\s*[)\]]"),
    "reshapes to (1, -1, 1, 1)": re.compile(r"\.(?:reshape|view)\(\s*1\s*,\s*-1\s*,\s*1\s*,\s*1\s*\)"),
    "permutes 4 axes": re.compile(r"\.permute\(\s*0\s*,\s*(?:2\s*,\s*3\s*,\s*1|3\s*,\s*1\s*,\s*2)\s*\)"),
}


def _own_methods_source(cls: type) -> list[tuple[str, str]]:
    """``(method name, source)`` of the methods ``cls`` itself defines (constructors excluded)."""
    out = []
    for name, fn in vars(cls).items():
        if name == "__init__" or not inspect.isfunction(fn):
            continue
        try:
            out.append((name, inspect.getsource(fn)))
        except (OSError, TypeError):
            continue
    return out


def scan_2d_code(module: nn.Module) -> str | None:
    """A reason if the methods of ``module``'s class (outside ``torch.nn``) call 2D-only functions, else ``None``.

    Looks for ``F.*2d(...)``/``torch.*2d(...)`` calls, ``interpolate(..., "bilinear"|"bicubic")`` and image idioms
    (``.mean((2, 3))``, ``.reshape(1, -1, 1, 1)``, ``.permute(0, 2, 3, 1)``) in the source of the methods the class
    defines (``forward`` and its helpers), skipping methods a subclass overrides.
    """
    calls, seen = [], set()
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.") or cls is object:
            break
        for method, source in _own_methods_source(cls):
            if method in seen:  # overridden by a subclass (e.g. a 3D twin of the forward): not what runs
                continue
            seen.add(method)
            calls += [f"{method}() calls {m}" for m in _FUNCTIONAL_2D.findall(source)]
            calls += [f"{method}() calls interpolate(2D mode)" for _ in _INTERPOLATE_2D.findall(source)]
            calls += [f"{method}() {idiom}" for idiom, pattern in _IMAGE_IDIOMS.items() if pattern.search(source)]
    return ", ".join(dict.fromkeys(calls)) or None


def own_forward(module: nn.Module, base: type[nn.Module], known: tuple[type, ...] = ()) -> str | None:
    """A reason if ``module`` subclasses ``base`` (e.g. ``nn.Conv2d``) with a ``forward`` of its own that a
    converter replacing it by a plain layer would drop (weight standardisation, ...); ``None`` for ``known``."""
    if type(module).forward is base.forward or isinstance(module, known):
        return None
    return f"{type(module).__name__} has its own forward(), dropped by the conversion"


def scan_2d_layers(model: nn.Module) -> dict[str, str]:
    """Modules left in a model meant for volumes that still assume images: ``name -> reason``.

    Flags layers whose class name ends in ``2d`` (``Conv2d``, ``FrozenBatchNorm2d``, ``LayerNorm2d``, ...),
    channels-last ``Permute``-style modules with four ``dims``, and classes whose own methods call 2D functions.
    """
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        cls = type(module).__name__
        if cls.lower().endswith("2d"):
            found[name] = f"{cls} is a 2D layer"
        elif isinstance(getattr(module, "dims", None), (list, tuple)) and len(module.dims) == 4:
            found[name] = f"{cls} permutes 4 dims {list(module.dims)}"
        elif (reason := scan_2d_code(module)) is not None:
            found[name] = f"{cls}.{reason}"
    return found


@contextmanager
def module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Within the block, the returned list holds the qualified names of the modules whose forward is running
    (innermost last); ``model`` is in eval mode, and its training flags are restored on exit."""
    flags = {m: m.training for m in model.modules()}
    names = {m: n for n, m in model.named_modules()}
    stack: list[str] = []

    def enter(module: nn.Module, _args) -> None:
        stack.append(names.get(module, "?"))

    def leave(_module: nn.Module, _args, _out) -> None:
        stack.pop()

    handles = [m.register_forward_pre_hook(enter) for m in model.modules()]
    handles += [m.register_forward_hook(leave) for m in model.modules()]
    model.eval()
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags.items():
            module.train(flag)


def failed_forward(stack: list[str], example: Tensor, exc: Exception) -> dict[str, str]:
    """``{innermost running module: "forward failed on input (...): <first line of the error>"}``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {stack[-1] if stack else "": f"forward failed on input {tuple(example.shape)}: {message}"}


def check_forward(model: nn.Module, example: Tensor) -> dict[str, str]:
    """Run ``model(example)`` in eval mode without gradients; on failure name the innermost module that raised.

    Returns ``{}`` on success, else ``{name: "forward failed: <error>"}``. Training flags are restored.
    """
    with module_stack(model) as stack:
        try:
            with torch.no_grad():
                model(example)
            return {}
        except Exception as exc:  # any failure is the thing to report, by module name
            return failed_forward(stack, example, exc)
