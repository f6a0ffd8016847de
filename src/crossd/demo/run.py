"""``run_demo``: the whole Cross-D idea end to end on real MRI, on a CPU (measured run time: README).

1. Build the tissue-classification sets from nilearn's MNI152 template (:mod:`crossd.demo.data`).
2. Pretrain a Cross-D ResNet-18 and a regular ResNet-18 on the 2D set (:func:`crossd.train.pretrain`), and, with
   ``volumes=True``, both again with hybrid 2D+3D pretraining on the few left-hemisphere volumes beside the 2D
   set (the Cross-D setting that transferred best in ``docs/experiments.md``, and its fair regular baseline, whose
   3D twin is its ACS form).
3. Transfer them to 3D (``crossd`` and ``crossd+volumes`` from the Cross-D networks; ``acs``, ``i3d`` and
   ``acs+volumes`` from the regular ones; ``random``; unless ``baselines="core"`` also slice aggregation ``slices``
   and ``2.5d`` from the regular one) and compare them under the ``bn`` protocol on the 3D set
   (:func:`crossd.evaluate.evaluate`), with paired tests of each Cross-D network against each baseline.
4. Write ``report.md`` with the results table and what it can show, an accuracy plot, training curves, the
   first layer's kernels and the planes its rotation heads pick (:mod:`crossd.demo.report`,
   :mod:`crossd.report.animation`, :mod:`crossd.report.planes`).

Every stage writes into ``output_dir`` and is reused when run again with the same settings (an interrupted demo
continues where it stopped); other settings in the same folder are refused rather than overwritten.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from crossd.convert.inits import get_init
from crossd.data.segmentation import MNI152, mni152_blocks
from crossd.demo.data import DemoData, DemoDataConfig, build_demo_data
from crossd.demo.report import accuracy_plot, evaluate_command, read_log, report_markdown, training_curves
from crossd.errors import OutputError, SettingsError
from crossd.evaluate import EvaluateConfig, evaluate
from crossd.evaluate.segmentation import evaluate_segmentation
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.stats import paired_wilcoxon
from crossd.io import plain_json, save_json, save_text
from crossd.machine import machine
from crossd.models import load_2d_model
from crossd.report.animation import filters_gif, find_crossd_layer, kernel3d_png, neighbour_correlation
from crossd.report.planes import npz_images, planes_png, predicted_planes
from crossd.report.study import read_study
from crossd.results import Comparison, Results
from crossd.settings import run_only
from crossd.train import PretrainConfig, load_training_checkpoint, pretrain

DEMO_EVAL_LR = 1e-2
DEMO_PROTOCOLS = ("bn", "paper")
PLANE_IMAGES = 256
"""2D test patches the figure of predicted planes is drawn from."""


@dataclass(frozen=True)
class DemoRun:
    """One pretraining of the demo: its label, network type and whether 3D batches of the pretraining volumes
    join the 2D ones (hybrid 2D+3D pretraining)."""

    name: str
    conv: str
    volumes: bool = False

    @property
    def folder(self) -> str:
        return f"pretrain-{self.name.replace('+', '-')}"


RUNS = (
    DemoRun("crossd", "crossd"),
    DemoRun("regular", "regular"),
    DemoRun("crossd+volumes", "crossd", volumes=True),
    DemoRun("regular+volumes", "regular", volumes=True),
)
TRANSFERS = (
    ("crossd", "crossd", "crossd"),
    ("crossd", "crossd+volumes", "crossd+volumes"),
    ("acs", "regular", "acs"),
    ("i3d", "regular", "i3d"),
    ("acs", "regular+volumes", "acs+volumes"),
)
"""The evaluated 3D networks besides ``random``: ``(init, pretraining run, label)``, for the runs that exist."""
EXTRA_TRANSFERS = (
    ("slices", "regular", "slices"),
    ("2.5d", "regular", "2.5d"),  # the (1, k, k) kernel init of the kernel-init registry (crossd.convert.inits)
)
"""What ``baselines="all"`` (the default) adds to :data:`TRANSFERS`: the routes the field takes with a 2D network
on volumes, slice aggregation (axial slices, mean-pooled features) and 2.5D kernels, both of the regular network
(they keep the demo well within 10 minutes on 2 cores: README)."""
BASELINES = ("all", "core")
CROSSD_METHODS = ("crossd", "crossd+volumes")
"""The demo's Cross-D transfers, each compared with :data:`BASELINE_METHODS` in ``demo.json``'s ``margins``."""
BASELINE_METHODS = ("i3d", "acs", "acs+volumes", *(label for _, _, label in EXTRA_TRANSFERS))


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo`; ``None`` fields take the default or ``--quick`` value (:meth:`resolved`).

    Attributes:
        output_dir: everything is written here (data in ``data/``, pretraining runs in ``pretrain-<conv>/``,
            the evaluation in ``evaluate/``, the report and figures at the top).
        quick: a smoke-test sized run (tiny sets, one epoch, two folds).
        folds, repeats, epochs: the evaluation's cross-validation and epochs per fold
            (``--folds 5 --repeats 3 --epochs 100`` is the full ``bn`` protocol).
        pretrain_epochs, pretrain_batch_size, lr: the 2D pretraining of both networks.
        eval_lr: learning rate of the evaluation; default 1e-2 so that BatchNorm and head settle within the
            demo's 20 epochs (the ``bn`` protocol's own 1e-3 is meant for 100 epochs).
        data: how the sets are built.
        frames: frames of the filter animation.
        segmentation, segmentation_epochs: also run the second task, grey/white-matter segmentation of MNI152
            blocks by a 3D U-Net whose encoder is each transferred network (frozen convolutions; off by default,
            it adds minutes).
        protocol: ``"bn"`` (default) or ``"paper"`` (the authors' later protocol behind the paper's Tables 2 and
            3; only ``folds``/``repeats``/``epochs`` given explicitly reduce it, its learning rate and other
            constants stay the protocol's).
        volumes: also pretrain both networks with hybrid 2D+3D training on the left-hemisphere volumes
            (``crossd+volumes``, the best Cross-D setting of ``docs/experiments.md``, and its fair baseline
            ``acs+volumes``); off by default: it more than doubles the pretraining time (measured run times:
            README).
        study: a ``study.json`` written by ``crossd study``; the report shows its multi-seed table
            beside this run's (without one it points to the study in ``docs/experiments.md``).
        baselines: ``"all"`` (I3D, ACS, random and :data:`EXTRA_TRANSFERS`: ``slices`` and ``2.5d``) or
            ``"core"`` (I3D, ACS and random only: two evaluated methods fewer, about 80 s less on 2 cores).
    """

    output_dir: str | Path = "crossd-demo"
    quick: bool = False
    folds: int | None = None
    repeats: int | None = None
    epochs: int | None = None
    pretrain_epochs: int | None = None
    pretrain_batch_size: int = 32
    lr: float = 1e-3
    eval_lr: float | None = None
    data: DemoDataConfig | None = None
    frames: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    protocol: str = "bn"
    segmentation: bool = False
    segmentation_epochs: int | None = None
    volumes: bool = False
    study: str | None = None
    baselines: str = "all"

    def runs(self) -> tuple[DemoRun, ...]:
        """The pretrainings this configuration runs."""
        return tuple(r for r in RUNS if self.volumes or not r.volumes)

    def transfers(self) -> tuple[tuple[str, str, str], ...]:
        """The evaluated 3D networks besides ``random`` (``(init, pretraining run, label)``) for :attr:`baselines`."""
        return TRANSFERS + (EXTRA_TRANSFERS if self.baselines == "all" else ())

    def resolved(self) -> DemoConfig:
        """A copy with every ``None`` replaced by the default (or ``quick``) value."""
        quick = self.quick
        defaults = {
            "folds": 2 if quick else 3,
            "repeats": 1,
            "epochs": 2 if quick else 20,
            "pretrain_epochs": 1 if quick else 6,
            "frames": 6 if quick else 24,
            "segmentation_epochs": 1 if quick else 4,
            "eval_lr": DEMO_EVAL_LR,
            "data": QUICK_DATA if quick else DemoDataConfig(),
        }
        if self.protocol not in DEMO_PROTOCOLS:
            raise SettingsError(f"must be one of {DEMO_PROTOCOLS}, got {self.protocol!r}", field="protocol")
        if self.baselines not in BASELINES:
            raise SettingsError(f"must be one of {BASELINES}, got {self.baselines!r}", field="baselines")
        if self.protocol == "paper":  # the paper's own epochs (15) and learning rate, unless given explicitly
            defaults.pop("eval_lr")
            if not quick:
                defaults.pop("epochs")
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


QUICK_DATA = DemoDataConfig(size_2d=16, size_3d=16, samples_2d=96, samples_3d=48, samples_3d_pretrain=24)
"""The ``--quick`` sets: enough samples for every class in every fold, small enough for seconds per stage."""


def _pretrain_config(cfg: DemoConfig, data: DemoData, run: DemoRun) -> PretrainConfig:
    size = cfg.data.size_2d
    return PretrainConfig(
        data_path=str(data.pretrain_path),
        dataset="medmnist",
        model="resnet18",
        conv=run.conv,
        mode="rotate",
        epochs=cfg.pretrain_epochs,
        batch_size=cfg.pretrain_batch_size,
        workers=0,
        lr=cfg.lr,
        output_dir=str(Path(cfg.output_dir) / run.folder),
        device=cfg.device,
        print_freq=20,
        quiet=not cfg.progress,
        seed=cfg.seed,
        train_crop_size=size,
        train_crop_scale=(0.5, 1.0),  # keep the labelled centre voxel in the crop
        val_resize_size=size,
        val_crop_size=size,
        volumes=str(data.volumes_path) if run.volumes else None,
    )


def _same_run(saved: dict, pcfg: PretrainConfig) -> bool:
    """Same training settings (paths may differ: a moved demo folder stays reusable; its data is checked by
    :func:`check_output_dir`)."""
    ignore = (*run_only(pcfg), "data_path", "volumes")
    mine = {k: v for k, v in asdict(pcfg).items() if k not in ignore}
    return all(saved.get(k) == v for k, v in mine.items())


def pretrain_stage(pcfg: PretrainConfig) -> tuple[dict, bool]:
    """Run (or continue, or reuse) one pretraining; returns its ``metrics.json`` and whether it was reused.

    Raises :class:`~crossd.errors.OutputError` when the folder holds a run with other settings.
    """
    out = Path(pcfg.output_dir)
    checkpoint_path, metrics_path = out / "checkpoint.pt", out / "metrics.json"
    if checkpoint_path.is_file():
        checkpoint = load_training_checkpoint(checkpoint_path)
        if not _same_run(checkpoint.get("args", {}), pcfg):
            raise OutputError(
                f"{out} holds a pretraining run with other settings; choose another folder", field="output_dir"
            )
        if int(checkpoint["epoch"]) >= pcfg.epochs and metrics_path.is_file():
            return json.loads(metrics_path.read_text()), True
        pcfg = replace(pcfg, resume=str(checkpoint_path), allow_changed=True)  # settings checked above; paths may move
    return pretrain(pcfg), False


def evaluation_dir(protocol: str) -> str:
    """The evaluation's folder inside the demo folder: ``evaluate`` (bn) or ``evaluate-<protocol>``."""
    return "evaluate" if protocol == "bn" else f"evaluate-{protocol}"


def check_output_dir(out: Path, data: DemoDataConfig) -> None:
    """Refuse a folder whose later stages were computed from data built with other settings."""
    description = out / "data" / "mni152_tissue.json"
    later = [out / run.folder / "checkpoint.pt" for run in RUNS]
    later += [out / evaluation_dir(p) / "results.json" for p in DEMO_PROTOCOLS]
    if not description.is_file() or not any(p.is_file() for p in later):
        return
    try:
        built = json.loads(description.read_text()).get("config")
    except json.JSONDecodeError:
        built = None
    if built != asdict(data):
        raise OutputError(
            f"{out} holds a demo run on data built with other settings; choose another folder", field="output_dir"
        )


class Stopwatch:
    """``with clock("stage"): ...`` records the stage's wall-clock and process CPU seconds in ``clock.stages``.

    CPU seconds (all threads of this process) tell the work done even on a machine shared with other jobs.
    """

    def __init__(self):
        self.start = (time.perf_counter(), time.process_time())
        self.stages: dict[str, dict[str, float]] = {}

    @staticmethod
    def _since(start: tuple[float, float]) -> dict[str, float]:
        return {"wall": round(time.perf_counter() - start[0], 1), "cpu": round(time.process_time() - start[1], 1)}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = (time.perf_counter(), time.process_time())
        yield
        self.stages[stage] = self._since(start)

    def total(self) -> dict[str, float]:
        return self._since(self.start)


def margins(results: Results) -> dict[str, dict[str, Comparison]]:
    """Each Cross-D method against each baseline present: ``{crossd: {baseline: paired_wilcoxon(baseline,
    crossd)}}`` over the shared folds (``mean_difference`` > 0: Cross-D is better)."""
    folds = {m.method: m.folds for m in results.methods}
    return {
        method: {base: paired_wilcoxon(folds[base], folds[method]) for base in BASELINE_METHODS if base in folds}
        for method in CROSSD_METHODS
        if method in folds
    }


def encoder_methods(methods: list) -> list:
    """The methods with a 3D encoder to segment with: slice aggregation (``slices``) has none."""
    return [m for m in methods if get_init(m[0]).segmentation]


def kernel_figures(
    out: Path, checkpoints: dict[str, Path], data: DemoData, frames: int
) -> tuple[dict[str, str], dict[str, float]]:
    """The first layer's kernels as a reader can see them (grey inputs: input channels summed; each kernel scaled
    to its peak; strongest or most angle-dependent first) and the planes the Cross-D heads pick on the 2D test
    patches: ``filters.gif``, ``kernel3d.png`` (beside the regular network's conv1), ``planes.png``; and how much
    structure the kernels have (:func:`~crossd.report.animation.neighbour_correlation` of the grey kernels: the
    Cross-D centre slice, its other slices, the regular network's)."""
    model, _ = load_2d_model(checkpoints["crossd"])
    regular, _ = load_2d_model(checkpoints["regular"])
    layer = find_crossd_layer(model, "conv1")
    cube = layer.weight.detach().sum(1).numpy()  # (Co, K, K, K): what a grey image meets
    centre = cube.shape[1] // 2
    structure = {
        "crossd_centre": neighbour_correlation(cube[:, centre]),
        "crossd_other": neighbour_correlation(np.delete(cube, centre, axis=1)),
        "regular": neighbour_correlation(regular.conv1.weight.detach().sum(1).numpy()),
    }
    images = npz_images(data.pretrain_path, PLANE_IMAGES, split="test")
    title = "conv1, the 12 strongest kernels: Cross-D depth slices d = 0..6, and the regular network's 2D kernels"
    figures = {
        "filters": filters_gif(layer, out / "filters.gif", frames, max_filters=16, grey_input=True).name,
        "kernel3d": kernel3d_png(
            layer.weight,
            out / "kernel3d.png",
            max_filters=12,
            title=title,
            grey_input=True,
            regular=regular.conv1.weight,
        ).name,
        "planes": planes_png(
            predicted_planes(model, images),
            out / "planes.png",
            f"planes the Cross-D heads pick on {len(images)} 2D test patches",
        ).name,
    }
    return figures, structure


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo (see module doc) and return the summary written to ``output_dir/demo.json``.

    Writes ``report.md``, ``demo.json``, ``accuracy.png``, ``training_curves.png``, ``filters.gif``,
    ``kernel3d.png`` and ``planes.png`` at the top of ``output_dir``; ``evaluate/results.json`` holds every fold.
    """
    cfg = cfg.resolved()
    out = Path(cfg.output_dir)
    check_output_dir(out, cfg.data)
    study = read_study(cfg.study) if cfg.study else None
    clock = Stopwatch()

    def say(text: str) -> None:
        if cfg.progress:
            print(f"[crossd demo] {text}", flush=True)

    say(f"building the MNI152 tissue sets in {out / 'data'}")
    with clock("data"):
        data = build_demo_data(out / "data", cfg.data)
    pretrained, reused, logs = {}, {}, {}
    for run in cfg.runs():
        pcfg = _pretrain_config(cfg, data, run)
        extra = f" + 3D batches of {data.volumes_path.name}" if run.volumes else ""
        say(f"pretraining {run.name} ResNet-18 on {data.pretrain_path.name}{extra} ({cfg.pretrain_epochs} epoch(s))")
        with clock(f"pretrain {run.name}"):
            pretrained[run.name], reused[run.name] = pretrain_stage(pcfg)
        logs[run.name] = read_log(Path(pcfg.output_dir) / "log.csv")
    checkpoints = {run.name: out / run.folder / "model.safetensors" for run in cfg.runs()}
    methods = [(init, str(checkpoints[run]), label) for init, run, label in cfg.transfers() if run in checkpoints]
    device = None if cfg.device == "auto" else cfg.device
    # both tasks: the folds, the seed and the networks' own (pretraining) normalisation
    shared = dict(folds=cfg.folds, repeats=cfg.repeats, normalize="imagenet", seed=cfg.seed, device=device)
    ecfg = EvaluateConfig(
        data=str(data.downstream_path),
        methods=[*methods, ("random", None, "random")],
        output_dir=str(out / evaluation_dir(cfg.protocol)),
        protocol=cfg.protocol,
        epochs=cfg.epochs,
        lr=cfg.eval_lr,
        resume=True,
        progress=cfg.progress,
        **shared,
    )
    say(f"transferring to 3D and evaluating {len(ecfg.methods)} inits on {data.downstream_path.name} ({cfg.protocol})")
    with clock("evaluate"):
        results = evaluate(ecfg)

    segmentation = None
    if cfg.segmentation:
        say("second task: grey/white-matter segmentation with each transferred encoder")
        with clock("segmentation"):
            scfg = SegmentationConfig(
                MNI152,
                encoder_methods(ecfg.methods),
                out / "segmentation",
                protocol="bn",
                epochs=cfg.segmentation_epochs,
                arch="resnet18",
                progress=cfg.progress,
                **shared,
            )
            segmentation = evaluate_segmentation(scfg, data=mni152_blocks(block=16 if cfg.quick else 24))

    say("writing the report")
    with clock("figures"):
        kernels, structure = kernel_figures(out, checkpoints, data, cfg.frames)
        figures = {
            "accuracy": accuracy_plot(results, out / "accuracy.png").name,
            "training_curves": training_curves(logs, results, out / "training_curves.png").name,
            **kernels,
        }
    timings = {**clock.stages, "total": clock.total()}
    summary = {
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": plain_json(asdict(cfg)),
        "machine": machine(),
        "data": {
            "description": data.description,
            "pretrain": str(data.pretrain_path.relative_to(out)),
            "downstream": str(data.downstream_path.relative_to(out)),
            "volumes": str(data.volumes_path.relative_to(out)),
        },
        "pretrain": {
            run.name: {
                "conv": run.conv,
                "volumes": run.volumes,
                "metrics": pretrained[run.name],
                "reused": reused[run.name],
                "log": logs[run.name],
                "checkpoint": str(checkpoints[run.name].relative_to(out)),
            }
            for run in cfg.runs()
        },
        "evaluate": {
            "results": str(Path(evaluation_dir(cfg.protocol)) / "results.json"),
            "args": results.args,
            "command": evaluate_command(results.args, out / "evaluate-again"),
        },
        "results": [m.to_json() for m in results.methods],
        "comparisons": {k: c.to_json() for k, c in results.comparisons.items()},
        "margins": {k: {b: c.to_json() for b, c in tests.items()} for k, tests in margins(results).items()},
        "figures": figures,
        "kernel_structure": structure,
        "timings": timings,
        "segmentation": None if segmentation is None else segmentation.to_json(),
        "study": study,
    }
    save_json(summary, out / "demo.json")
    save_text(report_markdown(summary), out / "report.md")
    say(f"done in {timings['total']['wall']:.0f} s")
    return summary
