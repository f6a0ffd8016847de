"""``crossd`` command line: thin sub-commands over the library (see ``crossd.commands``)."""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys

import crossd
from crossd.commands import HelpFormatter
from crossd.errors import one_line

DESCRIPTION = """\
Pretrain 3D convolution kernels on 2D images (Cross-D Conv) and move them into 3D networks for CT, MRI and
ultrasound volumes.

Start with `crossd demo`: it runs the whole idea on real MRI on a laptop CPU in minutes and writes a report.
Then, on your own data: `crossd pretrain` (2D), `crossd transfer` (to 3D), `crossd evaluate` (k-fold comparison
of the 3D initialisations). `crossd COMMAND --help` lists each command's options with their defaults."""

COMMANDS = {
    "demo": "the whole idea end to end on real MRI (nilearn's MNI152 template), report included",
    "pretrain": "2D pretraining of a Cross-D or regular network (one process, or one per GPU with torchrun)",
    "transfer": "turn a 2D or Cross-D checkpoint into a 3D network",
    "evaluate": "k-fold comparison of 3D initialisations on your 2D or 3D dataset",
    "viz": "pictures of Cross-D kernels: the dynamic-filter animation and the 3D kernel",
    "bench": "speed and memory of Cross-D against plain convolutions",
}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="crossd", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"crossd {crossd.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {}
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"crossd.commands.{name}")
        commands[name] = sub.add_parser(name, help=help_text, description=module.__doc__, formatter_class=HelpFormatter)
        module.add_arguments(commands[name])
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    """The ``crossd`` parser with every sub-command."""
    return _parsers()[0]


def flag_names(parser: argparse.ArgumentParser, aliases: dict[str, str] | None = None) -> dict[str, str]:
    """``{dest: "--flag"}`` for every option of ``parser`` and its sub-commands (the first long spelling), plus
    ``aliases`` (library field names whose flag differs, e.g. ``{"num_workers": "--workers"}``)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and action.dest not in ("help", "version"):
            names.setdefault(action.dest, longs[0])
        for child in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            names.update({k: v for k, v in flag_names(child).items() if k not in names})
    return {**names, **(aliases or {})}


_QUOTED_TUPLE = re.compile(r"\(('[^']*'(?:, '[^']*')*),?\)")
_GOT_TUPLE = re.compile(r"(?<=got )\((-?[\d.e+-]+(?:, -?[\d.e+-]+)+)\)")


def user_message(text: str, flags: dict[str, str]) -> str:
    """An error message as a command-line user reads it: library field names become the flags they typed
    (``batch_size`` -> ``--batch-size``) and Python tuples become plain lists (``('sgd', 'adamw')`` -> ``sgd,
    adamw``; ``got (0.5, 2.0)`` -> ``got 0.5 2.0``, as the flag takes them; shapes stay ``(N, H, W)``)."""
    text = _QUOTED_TUPLE.sub(lambda m: m.group(1).replace("'", ""), text)
    text = _GOT_TUPLE.sub(lambda m: m.group(1).replace(",", ""), text)

    def swap(match: re.Match) -> str:
        name, after = match.group(0), match.string[match.end() :]
        # snake_case names anywhere; a one-word field name only where it names a setting ("epochs must", "(90)")
        named = "_" in name or match.start() == 0 or re.match(r" (must|and|\(-?\d)", after)
        return flags.get(name, name) if named else name

    return re.sub(r"(?<![\w\-./`'])[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?![\w'`/])", swap, text)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and torchrun send), raised like Ctrl-C so the same clean-up runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run ``crossd COMMAND ...``; user errors print ``crossd COMMAND: error: ...`` and return 2, a NaN/Inf
    training loss returns 1, Ctrl-C returns 130 and SIGTERM 143 (128 + the signal), each with one line."""
    from crossd.train.engine import NonFiniteLossError

    argv = sys.argv[1:] if argv is None else argv
    parser, commands = _parsers()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"crossd.commands.{args.command}")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(module.run(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        flags = flag_names(commands[args.command], getattr(module, "FIELD_FLAGS", None))
        print(f"crossd {args.command}: error: {user_message(one_line(exc), flags)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the library did not check up front: one line, not a traceback
        if exc.filename is None:
            raise
        print(f"crossd {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"crossd {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        detail = f" {exc}" if str(exc) else ""
        print(f"crossd {args.command}: interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}){detail}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
