"""Study TOML files: the shipped studies load; every bad key or value is one line naming the file and the key."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from crossd.cli import main
from crossd.errors import SettingsError
from crossd.study import load_study
from crossd.study.arms import evaluation_plan, task_plan

STUDIES = Path(__file__).parents[2] / "benchmarks" / "studies"


def test_study_7_and_9_load_with_the_settings_of_their_runs():
    study7 = load_study(STUDIES / "study7_r18.toml")
    assert study7.arch == "resnet18" and study7.evaluate.protocols == ("bn", "finetune", "paper")
    folders = {c.folder: [m.label for m in c.methods] for c in evaluation_plan(study7.arms, study7.evaluate.inits)}
    assert list(folders) == ["eval", "eval_regular_hybrid", "eval_regular_hybrid_acs"]
    assert folders["eval"][:5] == ["random", "i3d", "center", "acs", "volumes_only"]
    hybrid = study7.pretrain_config(study7.arm("project_hybrid"), 3, "x.npz", "v.npz", "out")
    assert (hybrid.volumes, hybrid.mode, hybrid.seed, hybrid.batch_size, hybrid.epochs) == (
        "v.npz",
        "project",
        3,
        32,
        6,
    )
    study9 = load_study(STUDIES / "study9_cnn.toml")
    granularity = {a.name: study9.pretrain_config(a, 0, "x.npz", None, "o").granularity for a in study9.arms}
    assert granularity["project_random_g4"] == 4 and granularity["project_grid_g1"] == 1
    assert granularity["rotate_g4"] == 4 and granularity["rotate"] == "sample"
    assert study9.seeds == (0, 1, 2, 3, 4) and study9.evaluate.epochs == 15 and study9.evaluate.lr == 1e-2
    study9_r18 = load_study(STUDIES / "study9_r18.toml")
    assert [a.name for a in study9_r18.arms] == [a.name for a in study9.arms] and study9_r18.arch == "resnet18"
    assert {a.name: a.compare_with for a in study9_r18.arms}["project_random_g1"] == "project_random"
    assert study9_r18.pretrain_config(study9_r18.arm("project_grid_g4"), 0, "x.npz", None, "o").batch_size == 32


CROSSD_2D = ("shift", "rotate", "project", "project_random", "project_grid")


@pytest.mark.parametrize(
    ("name", "arch", "epochs", "in_2d"),
    [("study8_cnn", "small_cnn", (12, 15), CROSSD_2D), ("study8_r18", "resnet18", (6, 20), ("shift", "rotate"))],
)
def test_study_8_plans_every_route_beside_the_3d_inits_on_study_7s_settings(name, arch, epochs, in_2d):
    """Every route and Cross-D arm on the volumes; on the 2D tasks the small CNN's five Cross-D networks, and
    ResNet-18's two of the seed paper (its 2D folds cost 4.5x the regular network's)."""
    study = load_study(STUDIES / f"{name}.toml")
    for task in study.evaluate.tasks_2d:
        call = task_plan(study.arms, task, study.evaluate.task_2d_arms)
        assert [m.label for m in call.methods] == ["regular2d", "random", *in_2d] and call.folder == f"eval2d_{task}"
    plan = evaluation_plan(study.arms, study.evaluate.inits)
    routes = ["random", "i3d", "acs", "2.5d", "slices", "slices3"]
    assert [m.label for c in plan for m in c.methods] == [
        *routes,
        "shift",
        "rotate",
        "project",
        "project_random",
        "project_grid",
    ]
    assert set(study.references) == {"i3d", "acs", "2.5d", "slices", "slices3"}
    assert study.evaluate.tasks_2d == ("digits", "mni_planes") and study.evaluate.task_protocols() == ("bn", "finetune")
    assert study.evaluate.protocols == ("bn", "finetune", "paper") and study.seeds == (0, 1, 2, 3, 4)
    assert (study.arch, study.pretrain["epochs"], study.evaluate.epochs) == (arch, *epochs)
    assert study.planned_folders() == [
        *("eval", "eval2d_digits", "eval2d_mni_planes"),
        *("eval_finetune", "eval2d_digits_finetune", "eval2d_mni_planes_finetune"),
        "eval_paper",
    ]
    assert [call.task for call, _ in study.plan("paper")] == [None]


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


ARMS = '[[arms]]\nname = "regular"\nconv = "regular"\ninit = "i3d"\n\n[[arms]]\nname = "shift"\nconv = "crossd"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ARMS + 'mdoe = "shift"\n', "arms[1] (shift).mdoe: unknown key: not a pretraining setting"),
        (ARMS + 'mode = "shfit"\n', "arms[1] (shift).mode: must be one of"),
        (ARMS + "seed = 3\n", "arms[1] (shift).seed: unknown key: is set by the study"),
        (ARMS + 'init = "i3d"\n', "arms[1] (shift).init: 'i3d' needs a regular network"),
        ("[pretrain]\nbatchsize = 4\n" + ARMS, "pretrain.batchsize: not a pretraining setting"),
        ('[evaluate]\nprotocols = ["bn", "fintune"]\n' + ARMS, "evaluate.protocols: 'fintune' is unknown"),
        ("seeds = [0, 0]\n" + ARMS, "seeds: lists a seed twice"),
        ('[evaluate]\ninits = ["regular2d"]\n' + ARMS, "evaluate.inits: 'regular2d' evaluates 2D data"),
        ('[evaluate]\ninits = ["slice"]\n' + ARMS, "evaluate.inits: "),
        ('[evaluate]\nslice_pool = "sum"\n' + ARMS, "evaluate.slice_pool: must be one of mean, max, attention"),
        ('[evaluate]\ntasks_2d = ["mnist"]\n' + ARMS, "evaluate.tasks_2d: 'mnist' is not a 2D task; expected some of"),
        ("[evaluate]\ntask_2d_samples = 0\n" + ARMS, "evaluate.task_2d_samples: must be a positive integer, got 0"),
        (
            '[evaluate]\ntasks_2d = ["digits"]\ntask_2d_arms = ["regular"]\n' + ARMS,
            "evaluate.task_2d_arms: 'regular' is not a Cross-D arm of the 2D tasks: shift",
        ),
        ('[evaluate]\ntask_2d_arms = ["shift"]\n' + ARMS, "evaluate.task_2d_arms: names the Cross-D arms of the 2D"),
        ('[evaluate]\ntask_2d_arms = "shift"\n' + ARMS, "evaluate.task_2d_arms: must be a list of names"),
        ("sedes = [0]\n" + ARMS, "sedes: unknown key; expected one of title, seeds"),
        ('[[arms]]\nname = "rotate"\nconv = "crossd"\n', "arms: evaluate.inits need a network"),
        (ARMS + '[[arms]]\nname = "b"\nsource = "nope"\n', "arms[2] (b).source: 'nope' is not an arm"),
        (ARMS + 'compare_with = "nope"\n', "arms[1] (shift).compare_with: 'nope' is not another arm of the study"),
        (ARMS + 'compare_with = "shift"\n', "arms[1] (shift).compare_with: 'shift' is not another arm of the study"),
        ("seeds = [0\n", "not a readable TOML file"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_the_key(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)


def test_the_command_line_prints_the_bad_key_as_one_line(tmp_path, capsys):
    path = _write(tmp_path, ARMS + 'mdoe = "shift"\n')
    assert main(["study", str(path), "--summarise-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd study: error: ") and "arms[1] (shift).mdoe" in err and "\n" not in err


def _old_command_line():
    spec = importlib.util.spec_from_file_location("transfer_study", STUDIES.parent / "transfer_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("toml", "flags"),
    [
        (
            "study7_r18.toml",
            "--arch resnet18 --variants regular regular_hybrid regular_hybrid_acs volumes_only shift rotate "
            "rotate_hybrid project project_random project_grid project_random_inflate project_hybrid "
            "project_grid_hybrid --samples-2d 3000 --size-2d 32 --pretrain-epochs 6 --batch-size 32 --epochs 20 "
            "--eval-lr 1e-2 --protocol bn finetune paper",
        ),
        (
            "study9_cnn.toml",
            "--variants regular project_random project_random_g4 project_random_g1 project_grid project_grid_g4 "
            "project_grid_g1 rotate rotate_g4 --samples-2d 3000 --size-2d 32 --pretrain-epochs 12 --epochs 15 "
            "--eval-lr 1e-2 --protocol bn finetune",
        ),
    ],
)
def test_the_old_command_line_of_a_shipped_study_is_the_same_study(toml, flags):
    """benchmarks/transfer_study.py (arms from benchmarks/studies/arms.toml) and the study's own file agree."""
    module = _old_command_line()
    old = module.study_of(module.build_parser().parse_args(flags.split()))
    new = load_study(STUDIES / toml)
    assert old.arms == new.arms and old.pretrain == new.pretrain
    assert old.evaluate == new.evaluate and old.data == new.data and old.seeds == new.seeds
    if toml == "study7_r18.toml":
        assert old.references == new.references
