"""The ``crossd`` command line as a user meets it: help for users with every default, ``--version``, one
spelling per concept, and errors that name the flags as typed."""

import argparse
import subprocess
import sys

import pytest
from image_data import write_medmnist_npz

import crossd
from crossd.cli import _parsers, flag_names, main, user_message
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


def test_user_message_names_flags_and_prints_no_tuples():
    flags = {"batch_size": "--batch-size", "epochs": "--epochs", "train_crop_scale": "--train-crop-scale"}
    assert user_message("batch_size must be at least 1, got 0", flags) == "--batch-size must be at least 1, got 0"
    assert user_message("lr_x (3) must be fewer than epochs (2)", flags) == "lr_x (3) must be fewer than --epochs (2)"
    assert user_message("train_crop_scale must be in (0, 1], got (0.5, 2.0)", flags).endswith("got 0.5 2.0")
    assert user_message("unknown 'x'; expected one of ('sgd', 'adamw')", flags).endswith("one of sgd, adamw")
    shape = "x.npz: shape (12, 16, 16) is not 2D"
    assert user_message(shape, flags) == shape  # shapes stay tuples
    path = "data/mni152_tissue_2d_16.npz: the number of epochs is unknown"  # paths and prose stay as they are
    assert user_message(path, {**flags, "mni152_tissue_2d_16": "--nope"}) == path


def test_flag_names_cover_nested_commands_and_aliases():
    _, commands = _parsers()
    assert flag_names(commands["pretrain"])["weight_decay"] == "--wd"
    assert flag_names(commands["viz"])["max_filters"] == "--max-filters"
    assert flag_names(commands["evaluate"], {"num_workers": "--workers"})["num_workers"] == "--workers"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--train-crop-scale", "0.5", "2"], "--train-crop-scale must satisfy 0 < min <= max <= 1, got 0.5 2.0"),
        (["--lr-warmup-epochs", "200"], "--lr-warmup-epochs (200) must be fewer than --epochs (90)"),
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


def test_init_tags_name_several_methods_of_one_init():
    from crossd.commands.evaluate import parse_methods

    assert parse_methods(["crossd=a.pt", "crossd+volumes=b.pt", "acs=c.pt", "random"], None) == [
        ("crossd", "a.pt", "crossd"),
        ("crossd", "b.pt", "crossd+volumes"),
        ("acs", "c.pt"),
        ("random", None),
    ]
