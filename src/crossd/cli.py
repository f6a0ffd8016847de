"""``crossd`` command line: thin sub-commands over the library (see ``crossd.commands``)."""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import traceback
import warnings

import crossd
from crossd.commands import HelpFormatter
from crossd.errors import CrossdError
from crossd.io import first_missing, remove_empty_folders

DESCRIPTION = """\
Pretrain 3D convolution kernels on 2D images (Cross-D Conv) and move them into 3D networks for CT, MRI and
ultrasound volumes.

Start with `crossd demo`: it runs the whole idea on real MRI on a CPU and writes a report (run time: README).
Then, on your own data: `crossd pretrain` (2D), `crossd transfer` (to 3D), `crossd evaluate` (k-fold comparison
of the 3D initialisations). `crossd COMMAND --help` lists each command's options with their defaults."""

COMMANDS = {
    "demo": "the whole idea end to end on real MRI (nilearn's MNI152 template), report included",
    "pretrain": "2D pretraining of a Cross-D or regular network (one process, or one per GPU with torchrun)",
    "transfer": "turn a 2D or Cross-D checkpoint into a 3D network",
    "evaluate": "k-fold comparison of 3D initialisations on your 2D or 3D dataset",
    "study": "pretraining arms x seeds, each evaluated under several protocols, with paired tests (a TOML file)",
    "viz": "pictures of Cross-D kernels: the dynamic-filter animation and the 3D kernel",
    "bench": "speed and memory of Cross-D against plain convolutions",
}


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
    ``aliases`` for names that are not a dest there (library field names whose flag differs, e.g.
    ``{"num_workers": "--workers"}``)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and action.dest not in ("help", "version"):
            names.setdefault(action.dest, longs[0])
        for child in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            names.update({k: v for k, v in flag_names(child).items() if k not in names})
    return {**(aliases or {}), **names}


FIELD_FLAGS = {
    "num_workers": "--workers",
    "progress": "--quiet",
    "methods": "--init",
    "data_path": "--data",
    "axis": "--axes",
}
"""Library parameter names whose flag is not named after them (``crossd evaluate``'s ``--workers`` sets
``EvaluateConfig.num_workers``); every other name is found in the command's parser (:func:`flag_names`)."""


def _error_line(exc: CrossdError, flags: dict[str, str]) -> str:
    """``"<flag> <message>"`` of a :class:`CrossdError`, each of its ``mentions`` in the message shown as its flag
    too; one re-raised from a DataLoader worker (which keeps only the type, with the worker's traceback as its
    message) gives the last line of that traceback, its field (the first word) turned into the flag."""
    text = exc.message
    if exc.mentions:  # whole words only: a name inside a path or another word stays as it is
        names = "|".join(map(re.escape, exc.mentions))
        text = re.sub(rf"(?<![\w./-])(?:{names})(?![\w./-])", lambda m: flags.get(m[0], m[0]), text)
    if exc.field is not None:
        return f"{flags.get(exc.field, exc.field)} {text}"
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    last = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith(type(exc).__name__) else last
    field, _, message = last.partition(" ")
    return f"{flags[field]} {message}" if field in flags else last


def _warning_line(text: str, flags: dict[str, str]) -> str:
    """A warning as one line, its library field name turned into the flag (as :func:`_error_line` does for errors):
    the library writes ``"<field> <message>"`` or ``"<field>: <message>"`` (``"normalize none is deprecated ..."``
    -> ``"--normalize none is deprecated ..."``); a first word that is no field stays as it is."""
    text = " ".join(text.split())
    first, space, rest = text.partition(" ")
    field = first.removesuffix(":")
    if field not in flags:
        return text
    return f"{flags[field]}{first[len(field) :]}{space}{rest}"


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and torchrun send), raised like Ctrl-C so the same clean-up runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run ``crossd COMMAND ...``. A :class:`crossd.errors.CrossdError` (bad data, paths, settings, checkpoints)
    prints ``crossd COMMAND: error: <flag> <message>`` and returns 2; a NaN/Inf training loss returns 1; Ctrl-C
    returns 130 and SIGTERM 143 (128 + the signal), each with one line. Any other exception is a bug in crossd: its
    traceback is printed with where to report it, and 1 is returned. Warnings print as one line
    ``crossd COMMAND: warning: ...``, a leading library field name shown as its flag (:func:`_warning_line`). A
    failed command whose ``--output-dir`` it created removes the folders it left empty (never a file)."""
    argv = sys.argv[1:] if argv is None else argv
    parser, commands = _parsers()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"crossd.commands.{args.command}")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    flags = flag_names(commands[args.command], FIELD_FLAGS)

    def one_line_warning(message, category, filename, lineno, line=None) -> str:
        return f"crossd {args.command}: warning: {_warning_line(str(message), flags)}\n"

    previous_format, warnings.formatwarning = warnings.formatwarning, one_line_warning
    output_dir = getattr(args, "output_dir", None)
    created = None if output_dir is None else first_missing(output_dir)
    try:
        code = _run(module, args, flags)
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.formatwarning = previous_format
    if code != 0 and created is not None:
        remove_empty_folders(created)  # a run refused up front leaves no empty --output-dir behind
    return code


def _run(module: object, args: argparse.Namespace, flags: dict[str, str]) -> int:
    """``module.run(args)``'s exit status, every failure turned into its one-line message and status (:func:`main`)."""
    from crossd.train.engine import NonFiniteLossError

    try:
        return int(module.run(args) or 0)
    except CrossdError as exc:
        print(f"crossd {args.command}: error: {_error_line(exc, flags)}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"crossd {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        detail = f" {exc}" if str(exc) else ""
        print(f"crossd {args.command}: interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}){detail}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception:
        traceback.print_exc()
        print(
            f"crossd {args.command}: internal error: this is a bug in crossd {crossd.__version__}, not a problem with "
            "your input; please report it to the crossd developers (issue tracker) with the traceback above and the "
            "command you ran",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
