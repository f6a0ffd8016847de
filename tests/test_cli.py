"""The ``crossd`` command line as a user meets it: help for users with every default, ``--version``, one
spelling per concept, and errors that name the flags as typed."""

import argparse
import subprocess
import sys

import pytest
from image_data import write_medmnist_npz

import crossd
from crossd.cli import FIELD_FLAGS, _parsers, flag_names, main
from crossd.commands import DEVICE_HELP, HelpFormatter


def _all_parsers():
    """Every (name, parser) of the command line, ``viz filters``/``viz kernel3d`` included."""
    _, commands = _parsers()
    for name, parser in commands.items():
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from ((f"{name} {sub}", p) for sub, p in action.choices.items())


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"crossd {crossd.__version__}"


def test_python_dash_m_crossd_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "crossd", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"crossd {crossd.__version__}"


def test_top_level_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "crossd demo" in text and "crossd COMMAND --help" in text
    assert "--version" in text
    assert "thin sub-commands" not in text and "``" not in text  # no developer docstring


def test_every_option_with_a_value_shows_its_default():
    missing = []
    for name, parser in _all_parsers():
        formatter = HelpFormatter(prog="crossd")
        for action in _options(parser):
            if action.nargs == 0 or action.required or action.default is None or action.help == argparse.SUPPRESS:
                continue  # switches, required options and optional inputs (unset by default) have none to show
            if "default" not in formatter._get_help_string(action):
                missing.append(f"{name} {action.option_strings[-1]}")
    assert not missing, missing


def test_pretrain_help_shows_the_crop_and_batch_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 224, or the image side for images smaller than that)" in text
    assert "per process (default: 32)" in text
    assert "(default: min(4, CPU cores))" in text


def test_one_spelling_per_concept():
    devices, quiet = set(), []
    for name, parser in _all_parsers():
        flags = {s: a for a in _options(parser) for s in a.option_strings}
        if "--device" in flags:
            devices.add(flags["--device"].help)
        if "--no-progress" in flags:  # the old spelling: accepted, not listed, same setting as --quiet
            assert flags["--no-progress"].help == argparse.SUPPRESS and flags["--no-progress"].dest == "quiet"
            quiet.append(name)
    assert devices == {DEVICE_HELP}
    assert sorted(quiet) == ["demo", "evaluate", "pretrain"]
    _, commands = _parsers()
    for name, required in (("pretrain", ["--data-path", "d"]), ("evaluate", ["--data", "d", "--output-dir", "o"])):
        assert commands[name].parse_args([*required, "--no-progress"]).quiet
        assert commands[name].parse_args([*required, "--resume"]).resume in ("", True)  # bare --resume everywhere


def test_flag_names_cover_nested_commands_and_aliases():
    _, commands = _parsers()
    assert flag_names(commands["pretrain"])["weight_decay"] == "--wd"
    assert flag_names(commands["viz"])["max_filters"] == "--max-filters"
    assert flag_names(commands["evaluate"], {"num_workers": "--workers"})["num_workers"] == "--workers"
    assert flag_names(commands["pretrain"], FIELD_FLAGS)["data_path"] == "--data-path"  # a dest wins over an alias
    assert flag_names(commands["evaluate"], FIELD_FLAGS)["data_path"] == "--data"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--train-crop-scale", "0.5", "2"], "--train-crop-scale must satisfy 0 < min <= max <= 1, got 0.5 2"),
        (["--lr-warmup-epochs", "200"], "--lr-warmup-epochs 200 must be fewer than epochs (90)"),
        (["--model", "resnet_nope"], "--model 'resnet_nope' is not a torchvision classification model"),
    ],
)
def test_pretrain_errors_name_the_flags_as_typed(tmp_path, capsys, argv, expected):
    data = write_medmnist_npz(tmp_path / "d.npz")
    assert main(["pretrain", "--data-path", str(data), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"crossd pretrain: error: {expected}"


def test_evaluate_errors_name_the_flags_as_typed(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "d.npz"), "--output-dir", str(tmp_path), "--folds", "1"]) == 2
    assert capsys.readouterr().err.strip() == "crossd evaluate: error: --folds must be at least 2, got 1"


@pytest.mark.parametrize("command", [["evaluate", "--data", "d.npz", "--output-dir", "o"], ["bench", "--quick"]])
def test_threads_below_one_are_refused_with_the_flag(command, capsys):
    assert main([*command, "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"crossd {command[0]}: error: --threads must be at least 1, got 0"


def test_evaluate_threads_sets_torchs_cpu_threads(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    argv = ["evaluate", "--data", str(tmp_path / "d.npz"), "--output-dir", str(tmp_path), "--threads", "1"]
    try:  # the data is missing: refused after the threads are set, before any compute
        assert main(argv) == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_init_tags_name_several_methods_of_one_init():
    from crossd.commands.evaluate import parse_methods

    assert parse_methods(["crossd=a.pt", "crossd+volumes=b.pt", "acs=c.pt", "random"], None) == [
        ("crossd", "a.pt", "crossd"),
        ("crossd", "b.pt", "crossd+volumes"),
        ("acs", "c.pt"),
        ("random", None),
    ]


def _failing_run(monkeypatch, exc: BaseException) -> None:
    """``crossd transfer`` whose library call raises ``exc``."""
    from crossd.commands import transfer

    def run(args):
        raise exc

    monkeypatch.setattr(transfer, "run", run)


def test_a_crossd_error_is_one_line_with_the_flag_of_its_field(monkeypatch, capsys):
    from crossd.errors import CheckpointError

    _failing_run(monkeypatch, CheckpointError("x.pt: holds a regular resnet18", field="drop_bn_stats"))
    assert main(["transfer", "x.pt", "--output", "y.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err == "crossd transfer: error: --drop-bn-stats x.pt: holds a regular resnet18\n"


def test_the_names_a_message_mentions_are_shown_as_flags_too(monkeypatch, capsys):
    from crossd.commands import pretrain
    from crossd.errors import SettingsError

    exc = SettingsError("lr 0.1 -> 0.2 in runs/lr/x; pass allow_changed to go on", "resume", ("lr", "allow_changed"))
    assert str(exc) == "resume lr 0.1 -> 0.2 in runs/lr/x; pass allow_changed to go on"  # the library's names
    monkeypatch.setattr(pretrain, "run", lambda args: (_ for _ in ()).throw(exc))
    assert main(["pretrain", "--data-path", "d.npz"]) == 2
    err = capsys.readouterr().err  # a name inside a path stays as it is
    assert err == "crossd pretrain: error: --resume --lr 0.1 -> 0.2 in runs/lr/x; pass --allow-changed to go on\n"


@pytest.mark.parametrize("exc", [RuntimeError("shapes do not broadcast"), KeyError("conv1.weight")])
def test_an_internal_error_shows_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys, exc):
    _failing_run(monkeypatch, exc)
    assert main(["transfer", "x.pt", "--output", "y.safetensors"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(exc).__name__}: " in err
    assert err.splitlines()[-1].startswith("crossd transfer: internal error: this is a bug in crossd")


def test_a_value_error_is_a_bug_not_a_user_error(monkeypatch, capsys):
    _failing_run(monkeypatch, ValueError("too many values to unpack"))
    assert main(["transfer", "x.pt", "--output", "y.safetensors"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_nothing_below_the_command_line_imports_it():
    """``crossd.cli`` and ``crossd.commands`` sit on top: no library module imports them."""
    import ast
    from pathlib import Path

    root = Path(crossd.__file__).parent
    top = {root / "cli.py", root / "__main__.py", *root.joinpath("commands").glob("*.py")}
    top_names = ["crossd", "commands"]
    upward = []
    for path in sorted(set(root.rglob("*.py")) - top):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            upward += [
                f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[:2] in (["crossd", "cli"], top_names)
            ]
    assert not upward, upward


@pytest.mark.parametrize("module", ["crossd.pretrain", "crossd.evaluate"])
def test_the_dotted_module_spellings_run_their_command(module, monkeypatch, capsys):
    """``python -m crossd.pretrain --help`` (run here in-process, as ``-m`` runs it)."""
    import runpy

    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_.value.code == 0
    assert f"usage: crossd {module.split('.')[1]}" in capsys.readouterr().out
