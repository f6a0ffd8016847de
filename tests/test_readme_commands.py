"""Every ``crossd`` command shown in README.md and in ``crossd [COMMAND] --help`` runs as written.

Commands are the fenced ``bash`` lines and the inline code spans that call ``crossd`` (``crossd ...``, ``python -m
crossd ...``, ``torchrun ... -m crossd X ...`` or ``-m crossd.X``) with at least one argument (a bare ``crossd
pretrain`` names the command), in README.md and in the parser's descriptions (each command's ``Examples:``).
Every one is parsed by the real parser, with each ``a|b`` alternative and ``[--optional]`` flag in turn;
``evaluate`` commands also build and check their settings. Placeholders (``D``, ``A.pt``, ``CKPT``) stay strings
for parsing: argparse does not open files. The cheap ones also run on tiny data: README's scale-out flow (4 shards,
then the merge; with ``--folds 2 --repeats 1 --epochs 1`` appended), every ``crossd transfer`` example, every
``--help``/``--version``.
The others (pretraining, the demo, the benchmark, full evaluations) take minutes to hours and are parsed only.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from crossd.cli import COMMANDS, _parsers, build_parser, main
from crossd.commands.evaluate import config_from_args, segmentation_config_from_args
from crossd.data.preprocessing import Preprocessing
from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"```bash\n(.*?)```", re.S)
_ANY_FENCE = re.compile(r"```.*?```", re.S)
_SPAN = re.compile(r"`([^`]+)`")
_START = re.compile(rf"^((crossd|python -m crossd)(\s+(COMMAND|{'|'.join(COMMANDS)})(?=\s|$)|\s+--\w|$)|torchrun\s)")
"""A command: ``crossd`` alone or followed by a command name or a flag (not prose such as "crossd  the Cross-D
checkpoint's kernels" in a list of inits, nor output such as "crossd pretrain: error: ..."), ``python -m crossd
...``, or ``torchrun ...``."""
PARSE_VALUES = {"N": "2", "${SLURM_ARRAY_TASK_ID}": "1"}
"""Placeholders that must be numbers to parse (``--frames N``, ``--shard ${SLURM_ARRAY_TASK_ID}/4``)."""


def _commands_in_text(text: str, fenced_only: bool = False) -> list[str]:
    """The crossd command lines of a Markdown or help text: fenced ``bash`` lines, lines that start with a command
    (joined over trailing backslashes) and inline code spans."""
    found = []
    blocks = [b for b in _FENCE.findall(text)] if fenced_only else [text]
    for block in blocks:
        lines = block.replace("\\\n", " ").splitlines()
        for line in lines:
            for part in re.split(r"\s&&\s", re.sub(r"\s#\s.*$", "", line).strip()):
                if _START.match(part.strip()):
                    found.append(" ".join(part.split()))
    if not fenced_only:
        found += [" ".join(s.split()) for s in _SPAN.findall(text) if _START.match(" ".join(s.split()))]
    return found


def readme_commands() -> list[str]:
    text = README.read_text()
    prose = _ANY_FENCE.sub("", text)
    return _commands_in_text(text, fenced_only=True) + [
        " ".join(s.split()) for s in _SPAN.findall(prose) if _START.match(" ".join(s.split()))
    ]


def help_commands() -> list[str]:
    parser, commands = _parsers()
    texts = [parser.description or ""] + [p.description or "" for p in commands.values()]
    return [c for text in texts for c in _commands_in_text(text)]


def crossd_argv(command: str) -> list[str] | None:
    """The arguments after ``crossd`` of a shown command; ``None`` for a bare command name (a reference)."""
    tokens = shlex.split(command.replace("\\|", "|"))
    if tokens[0] == "torchrun":
        if "--no-python" in tokens:
            tokens = tokens[tokens.index("crossd") + 1 :]
        else:
            at = tokens.index("-m")  # -m crossd COMMAND ..., or -m crossd.COMMAND ...
            module = tokens[at + 1]
            tokens = tokens[at + 2 :] if module == "crossd" else [module.removeprefix("crossd."), *tokens[at + 2 :]]
    elif tokens[0] == "python":
        tokens = tokens[3:]
    else:
        tokens = tokens[1:]
    tokens = [t.strip("[]") for t in tokens if t.strip("[]")]
    if len(tokens) < 2 and not (tokens and tokens[0].startswith("-")):
        return None
    return tokens


def variants(argv: list[str]) -> list[list[str]]:
    """One argv per ``a|b`` alternative (every alternative of every token, in turn) and per command for
    ``COMMAND``."""
    choices = []
    for token in argv:
        if token == "COMMAND":
            choices.append(list(COMMANDS))
        elif "|" in token and "=" not in token:
            choices.append(token.split("|"))
        else:
            choices.append([token])
    return [list(v) for v in itertools.product(*choices)]


def parse(argv: list[str]) -> str | None:
    """``None`` when ``argv`` parses (and, for ``evaluate``, its task's settings check out); else the message."""
    argv = [PARSE_VALUES.get(t, t).replace("${SLURM_ARRAY_TASK_ID}", "1") for t in argv]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return None if exc.code == 0 else f"argparse exit {exc.code}"
    if args.command == "evaluate":
        try:
            (segmentation_config_from_args if args.task == "segmentation" else config_from_args)(args).validate()
        except ValueError as exc:
            return str(exc)
    return None


SHOWN = sorted(c for c in {*readme_commands(), *help_commands()} if crossd_argv(c) is not None)


def test_commands_are_found_in_the_readme_and_the_help():
    readme, shown_in_help = readme_commands(), help_commands()
    assert any("--shard" in c for c in readme) and any(c.startswith("crossd transfer") for c in readme)
    assert any(c.startswith("torchrun") for c in shown_in_help) and any("viz kernel3d" in c for c in shown_in_help)
    assert crossd_argv("crossd pretrain") is None  # a command's name, not a command


def test_a_command_with_a_missing_required_flag_is_caught(capsys):
    assert parse(crossd_argv("crossd evaluate --data D --init crossd=A.pt")) is not None  # no --output-dir
    assert parse(crossd_argv("crossd transfer CKPT --init crossd --ouptut m.safetensors")) is not None
    capsys.readouterr()


@pytest.mark.parametrize("command", SHOWN)
def test_every_shown_command_parses(command, capsys):
    for variant in variants(crossd_argv(command)):
        problem = parse(variant)
        assert problem is None, f"{command!r} as {variant}: {problem}: {capsys.readouterr().err.strip()[-300:]}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Placeholder -> tiny file: 8^3 two-class volumes and small_cnn checkpoints (Cross-D and regular)."""
    root = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 2
    images = (rng.random((16, 8, 8, 8)) * 100 + labels[:, None, None, None] * 60).astype(np.uint8)
    np.savez(root / "D.npz", images=images, labels=labels)
    paths = {"D": root / "D.npz"}
    for conv in ("crossd", "regular"):
        spec = ModelSpec("small_cnn", conv, "rotate", 10)
        paths[conv] = save_safetensors(
            create_model(spec.arch, spec.num_classes, conv).state_dict(),
            root / f"{conv}.safetensors",
            {**spec.metadata(), **Preprocessing("imagenet", None, 16).metadata()},
        )
    return root, paths


def _run_argv(argv: list[str], root: Path, paths: dict[str, Path]) -> list[str]:
    """``argv`` with its placeholders replaced by tiny files: data ``D``, Cross-D checkpoints (``A.pt``, ``CKPT``,
    names with ``crossd``), regular ones (any other ``.pt``/``.pth``), outputs under ``root``."""
    out = []
    for token in argv:
        name, sep, value = token.rpartition("=") if "=" in token and not token.startswith("-") else ("", "", token)
        if value == "D":
            value = str(paths["D"])
        elif value in ("CKPT", "A.pt") or (value.endswith((".pt", ".pth")) and "crossd" in value):
            value = str(paths["crossd"])
        elif value.endswith((".pt", ".pth")):
            value = str(paths["regular"])
        elif value.endswith((".safetensors", ".gif", ".png")) or value.startswith("runs/"):
            value = str(root / value)
        out.append(f"{name}{sep}{value}")
    return out


def test_the_readme_scale_out_flow_runs_shards_then_merges(tiny, capsys):
    root, paths = tiny
    fast = ["--folds", "2", "--repeats", "1", "--epochs", "1", "--quiet"]  # 2 methods x 2 folds: one job a shard
    fenced = _commands_in_text(README.read_text(), fenced_only=True)
    flow = [c for c in fenced if c.startswith("crossd evaluate")]
    assert len(flow) == 2 and "--shard" in flow[0] and "--shard" not in flow[1]
    for shard in range(1, 5):
        argv = _run_argv(crossd_argv(flow[0].replace("${SLURM_ARRAY_TASK_ID}", str(shard))), root, paths)
        assert main([*argv, *fast]) == 0, capsys.readouterr().err
    assert main([*_run_argv(crossd_argv(flow[1]), root, paths), *fast]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert all(f"shard {k}/4: ran 1 job(s)" in out for k in range(1, 5)) and "table:" in out
    assert (root / "runs" / "x" / "results.md").is_file()


def test_every_transfer_example_runs(tiny, capsys):
    root, paths = tiny
    shown = [c for c in SHOWN if c.startswith("crossd transfer")]
    assert len(shown) >= 3
    for command in shown:
        for variant in variants(crossd_argv(command)):
            argv = _run_argv(variant, root, paths)
            assert main(argv) == 0, f"{command}: {capsys.readouterr().err}"
            assert Path(argv[argv.index("--output") + 1]).is_file()


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *[[name, "--help"] for name in COMMANDS]])
def test_help_and_version_run(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and capsys.readouterr().out
