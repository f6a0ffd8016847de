"""Module surgery: swap layers of any ``nn.Module`` in place, by a rule."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Rule = Callable[[str, nn.Module], "nn.Module | None"]


def replace_modules(model: nn.Module, rule: Rule, prefix: str = "") -> nn.Module:
    """Replace every sub-module for which ``rule(qualified_name, module)`` returns a module; recurse elsewhere.

    A replaced module's children are not visited. Returns ``model`` (changed in place), or the replacement
    when the rule matches ``model`` itself.
    """
    top = rule(prefix, model) if prefix == "" else None
    if top is not None:
        return top
    for name, child in model.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        new = rule(qualified, child)
        if new is not None:
            setattr(model, name, new)
        else:
            replace_modules(child, rule, qualified)
    return model
