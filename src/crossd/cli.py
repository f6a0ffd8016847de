"""``crossd`` command line: thin sub-commands over the library (see ``crossd.commands``)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

COMMANDS = {
    "pretrain": "2D pretraining of Cross-D or regular models (single process or torchrun)",
    "transfer": "convert a 2D/Cross-D checkpoint into a 3D model",
    "evaluate": "k-fold evaluation of transferred models on 2D/3D data",
    "demo": "the whole idea end to end on real MRI shipped with nilearn",
    "viz": "dynamic-filter animations and 3D kernel renderings",
    "bench": "speed and memory of Cross-D against plain convolutions",
}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"crossd.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=module.__doc__))
    return parser


def _one_line(exc: BaseException) -> str:
    """The error's message; for one re-raised from a DataLoader worker (the worker's traceback in the message),
    its original last line without the exception-type prefix."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(type(exc).__name__ + ": ") else last


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and torchrun send), raised like Ctrl-C so the same clean-up runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run ``crossd COMMAND ...``; user errors print ``crossd COMMAND: error: ...`` and return 2, a NaN/Inf
    training loss returns 1, Ctrl-C returns 130 and SIGTERM 143 (128 + the signal), each with one line."""
    from crossd.train.engine import NonFiniteLossError

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"crossd.commands.{args.command}")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(module.run(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"crossd {args.command}: error: {_one_line(exc)}", file=sys.stderr)
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
