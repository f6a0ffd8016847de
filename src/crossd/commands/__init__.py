"""One module per ``crossd`` sub-command, each with ``add_arguments(parser)`` and ``run(args) -> int``.

Commands only parse arguments and call library functions; nothing in the library imports them. The flags every
command shares are added here, so that one concept has one spelling: :func:`add_quiet_flag`,
:func:`add_device_flag`, :func:`add_threads_flag`.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from crossd.errors import SettingsError

DEVICE_HELP = "cpu, cuda, cuda:N, or auto (cuda when available)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of command descriptions (usage examples) and appends ``(default: X)`` to every
    option that has a value by default (not to switches, not to options whose help already gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or any(default is v for v in (None, False, argparse.SUPPRESS))
            or "default" in text
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def add_quiet_flag(parser: argparse.ArgumentParser, what: str = "no progress lines") -> None:
    """``--quiet`` (``args.quiet``); ``--no-progress``, the old spelling, still works but is not listed."""
    parser.add_argument("--quiet", action="store_true", help=what)
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def add_device_flag(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device`` with the same wording in every command (``args.device``: ``"auto"``, ``"cpu"``, ...)."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP)


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (``args.threads``, ``None``: torch's own choice); applied by :func:`set_threads`."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice, all cores; 1 suits processes run side by side)",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Give torch ``args.threads`` CPU threads, when set.

    Raises:
        SettingsError: ``--threads`` below 1.
    """
    if args.threads is None:
        return
    if args.threads < 1:
        raise SettingsError(f"must be at least 1, got {args.threads}", field="threads")
    torch.set_num_threads(args.threads)


def flag_values(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: args.name}`` for flags named as the library setting they give (keywords of a config)."""
    return {name: getattr(args, name) for name in names}
