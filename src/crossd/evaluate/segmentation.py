"""3D segmentation with transferred encoders: k-fold Dice of a :class:`~crossd.models.UNet3D` per init.

Each method (``--init NAME[=CKPT]``: ``crossd``, ``acs``, ``i3d``, ``center``, ``random``) builds its 3D encoder
exactly as the classification evaluation does (:func:`crossd.evaluate.methods.build_network`), wraps it in a
``UNet3D`` with a fresh decoder, and trains on the same folds (KFold with shuffle, ``random_state = seed + r``
for repeat ``r``, the first ``val_fraction`` of each training fold for validation). Protocols:

- ``linear`` (alias ``frozen``): frozen encoder, BatchNorm statistics included; the decoder and head train.
- ``bn``: encoder convolutions frozen, its BatchNorms (affine and statistics) train with the decoder.
- ``finetune``: everything trains.

Loss: MONAI ``DiceCELoss``; best epoch: highest validation mean Dice; test: Dice per foreground class (MONAI
``DiceMetric``, background excluded) of the best epoch. Writes ``results.json`` and ``results.md`` after every
fold.
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from crossd.data.segmentation import SegmentationSet, load_segmentation
from crossd.evaluate.config import NORMALIZATION, MethodEntry, method_records
from crossd.evaluate.folds import Split, paper_splits
from crossd.evaluate.methods import Method, build_network, method_names
from crossd.evaluate.protocols import batchnorm_parameters
from crossd.evaluate.stats import paired_wilcoxon
from crossd.evaluate.transforms import scale_intensities
from crossd.io import save_json, save_text
from crossd.models.unet3d import DECODER_CHANNELS, UNet3D
from crossd.report.tables import loading_note, mean_std

SEGMENTATION_PROTOCOLS = ("linear", "bn", "finetune")
_ALIASES = {"frozen": "linear"}
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"


@dataclass
class SegmentationConfig:
    """One segmentation evaluation run.

    Attributes:
        data: an ``image,label`` CSV of NIfTI pairs, or ``"mni152"`` (grey/white matter blocks of the template).
        methods: ``(init, 2D checkpoint or None[, label])`` entries; all share the folds.
        protocol: ``linear``/``frozen`` (frozen encoder), ``bn`` or ``finetune``.
        size: resize every volume to ``size`` per axis (needed when shapes differ).
        arch: torchvision name for checkpoints without crossd metadata, or for ``random`` without a checkpoint.
        align, drop_bn_stats: as for classification (:class:`crossd.evaluate.EvaluateConfig`).
    """

    data: str | Path
    methods: list[MethodEntry]
    output_dir: str | Path
    protocol: str = "finetune"
    folds: int = 5
    repeats: int = 1
    epochs: int = 20
    batch_size: int = 2
    lr: float = 1e-3
    val_fraction: float = 0.2
    normalize: str = "radimagenet"
    seed: int = 0
    size: int | None = None
    arch: str | None = None
    align: bool = False
    drop_bn_stats: bool = False
    decoder_channels: tuple[int, ...] = DECODER_CHANNELS
    device: str | None = None
    progress: bool = True

    def validate(self) -> None:
        """One-line ``ValueError`` for settings outside the known sets."""
        self.protocol = _ALIASES.get(self.protocol, self.protocol)
        if self.protocol not in SEGMENTATION_PROTOCOLS:
            raise ValueError(
                f"unknown segmentation protocol {self.protocol!r}; expected one of {SEGMENTATION_PROTOCOLS} or 'frozen'"
            )
        if self.normalize not in NORMALIZATION:
            raise ValueError(f"unknown normalisation {self.normalize!r}; expected one of {tuple(NORMALIZATION)}")
        if not self.methods:
            raise ValueError("no method to evaluate; give at least one --init")
        if self.folds < 2 or self.repeats < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("folds must be at least 2 and repeats, epochs and batch_size at least 1")


def prepare_volumes(images: np.ndarray, normalize: str, channels: int = 3) -> Tensor:
    """Per-volume min-max scaling, grey repeated to ``channels``, then the normalisation constants:
    ``(N, 1, D, H, W)`` -> ``(N, channels, D, H, W)`` float32."""
    scaled = torch.from_numpy(scale_intensities(images, "per_sample")).repeat(1, channels, 1, 1, 1)
    mean, std = (torch.tensor(v[:channels]).view(1, channels, 1, 1, 1) for v in NORMALIZATION[normalize])
    return (scaled - mean) / std


def build_segmenter(method: Method, num_classes: int, cfg: SegmentationConfig) -> tuple[UNet3D, dict]:
    """The ``UNet3D`` of ``method`` (encoder transferred as for classification, fresh decoder) and how it was
    loaded."""
    encoder, loading = build_network(method, 3, cfg.arch, cfg.align, cfg.drop_bn_stats)
    loading["spatial_dims"] = 3
    return UNet3D(encoder, num_classes, cfg.decoder_channels), loading


def trainable_parameters(net: UNet3D, protocol: str) -> list[nn.Parameter]:
    """Parameters the protocol trains; ``requires_grad`` is switched off for all others."""
    chosen = list(net.decoder_parameters())
    if protocol == "finetune":
        chosen += list(net.encoder_parameters())
    elif protocol == "bn":
        chosen += batchnorm_parameters(net.encoder)
    keep = {id(p) for p in chosen}
    for p in net.parameters():
        p.requires_grad_(id(p) in keep)
    return chosen


def _train_mode(net: UNet3D, protocol: str) -> None:
    net.train()
    if protocol == "linear":  # a frozen encoder keeps its BatchNorm statistics too
        net.encoder.eval()


@torch.no_grad()
def dice_per_class(net: UNet3D, loader: DataLoader, num_classes: int, device: torch.device) -> list[float | None]:
    """MONAI ``DiceMetric`` per foreground class ``1..num_classes-1`` over ``loader`` (``None``: class absent)."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    metric = DiceMetric(include_background=False, reduction="mean_batch")
    net.eval()
    for x, y in loader:
        pred = net(x.to(device)).argmax(1, keepdim=True)
        metric(one_hot(pred, num_classes), one_hot(y.to(device)[:, None], num_classes))
    values = metric.aggregate().cpu().tolist()
    return [None if math.isnan(v) else float(v) for v in values]


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else 0.0


def train_segmentation_fold(
    net: UNet3D, cfg: SegmentationConfig, loaders: dict[str, DataLoader], num_classes: int, device: torch.device
) -> dict:
    """Train ``net`` on one fold under ``cfg.protocol``; keep the best validation epoch; score the test part."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(trainable_parameters(net, cfg.protocol), lr=cfg.lr)
    history: dict[str, list[float]] = {"train_loss": [], "val_dice": []}
    best, best_epoch, best_state = -1.0, 0, None
    for epoch in range(cfg.epochs):
        _train_mode(net, cfg.protocol)
        total, count = 0.0, 0
        for x, y in loaders["train"]:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(net(x), y[:, None])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(y), count + len(y)
        val_dice = _mean(dice_per_class(net, loaders["val"], num_classes, device))
        history["train_loss"].append(total / max(count, 1))
        history["val_dice"].append(val_dice)
        if val_dice > best:
            best, best_epoch = val_dice, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
    net.load_state_dict(best_state)
    dice = dice_per_class(net, loaders["test"], num_classes, device)
    return {"dice_mean": _mean(dice), "dice": dice, "best_epoch": best_epoch, "history": history}


def _summary(folds: list[dict], classes: list[str]) -> dict:
    means = [f["dice_mean"] for f in folds]
    out = {"dice_mean_mean": float(np.mean(means)), "dice_mean_std": float(np.std(means))}
    for i, name in enumerate(classes[1:]):
        values = [f["dice"][i] for f in folds if f["dice"][i] is not None]
        out[f"dice_{name}_mean"] = float(np.mean(values)) if values else None
        out[f"dice_{name}_std"] = float(np.std(values)) if values else None
    return out


def segmentation_markdown(results: dict) -> str:
    """The ``results.md`` text: mean Dice and Dice per class (mean ± population std over folds)."""
    args, data = results["args"], results["data"]
    classes = data["classes"][1:]
    lines = [
        f"# Segmentation of `{Path(str(args['data'])).name}`",
        "",
        f"Protocol **{args['protocol']}**: {args['folds']}-fold cross-validation x {args['repeats']} repeat(s), "
        f"{args['epochs']} epoch(s), batch {args['batch_size']}, lr {args['lr']:g}, UNet3D decoder "
        f"{tuple(args['decoder_channels'])}, best epoch by validation mean Dice, seed {args['seed']}.",
        f"Data: {data['samples']} volumes of shape {tuple(data['shape'])}, classes {', '.join(data['classes'])}.",
        "",
        "| Method | Mean Dice | " + " | ".join(f"Dice {c}" for c in classes) + " | Folds | Wilcoxon vs crossd |",
        "|---|---|" + "---|" * (len(classes) + 2),
    ]
    for method in results["results"]:
        if not method["folds"]:
            continue
        cells = [mean_std(method["dice_mean_mean"], method["dice_mean_std"])]
        cells += [mean_std(method[f"dice_{c}_mean"], method[f"dice_{c}_std"]) for c in classes]
        comparison = results["comparisons"].get(method["method"])
        p = "(reference)" if method["method"] == "crossd" else "–"
        if comparison is not None:
            p = f"{comparison['p_value']:.3g}" if comparison["p_value"] is not None else f"– ({comparison['note']})"
        lines.append(f"| {method['method']} | " + " | ".join(cells) + f" | {len(method['folds'])} | {p} |")
    lines += ["", "Dice in percent (background excluded), mean ± population std over folds.", ""]
    lines += ["## How each encoder was loaded", ""]
    lines += [f"- **{m['method']}**: {loading_note(m)}; fresh UNet3D decoder." for m in results["results"]]
    return "\n".join(lines) + "\n"


def _save(results: dict, out_dir: Path) -> None:
    classes = results["data"]["classes"]
    for method in results["results"]:
        if method["folds"]:
            method.update(_summary(method["folds"], classes))
    reference = next((m for m in results["results"] if m["method"] == "crossd"), None)
    results["comparisons"] = {
        m["method"]: paired_wilcoxon(reference["folds"], m["folds"], metric="dice_mean")
        for m in results["results"]
        if reference is not None and m is not reference
    }
    save_json(results, out_dir / RESULTS_JSON)
    save_text(segmentation_markdown(results), out_dir / RESULTS_MD)


def _loaders(images: Tensor, labels: Tensor, split: Split, batch_size: int, seed: int) -> dict[str, DataLoader]:
    def loader(indices: np.ndarray, train: bool) -> DataLoader:
        index = torch.from_numpy(indices)
        dataset = TensorDataset(images[index], labels[index])
        generator = torch.Generator().manual_seed(seed) if train else None
        drop = train and len(indices) % batch_size == 1 and len(indices) > 1  # BatchNorm needs 2 samples
        return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=drop, generator=generator)

    return {"train": loader(split.train, True), "val": loader(split.val, False), "test": loader(split.test, False)}


def evaluate_segmentation(cfg: SegmentationConfig, data: SegmentationSet | None = None) -> dict:
    """Run every method of ``cfg`` on every fold and write ``results.json``/``results.md`` to ``cfg.output_dir``.

    Args:
        cfg: the run's settings.
        data: volumes already in memory (default: ``load_segmentation(cfg.data, cfg.size)``).

    Returns:
        ``{"task": "segmentation", "args", "data", "results": [{"method", "init", "checkpoint", "loading",
        "dice_mean_mean", "dice_mean_std", "dice_<class>_mean", "dice_<class>_std", "folds": [{"repeat",
        "fold", "dice_mean", "dice" (per foreground class), "best_epoch", "n_train", "n_val", "n_test",
        "history"}]}], "comparisons", "complete"}``.
    """
    cfg.validate()
    data = load_segmentation(cfg.data, cfg.size) if data is None else data
    if data.num_classes < 2:
        raise ValueError(f"{cfg.data}: labels hold a single class; nothing to segment")
    out_dir = Path(cfg.output_dir)
    methods = method_names(cfg.methods)
    templates, loadings = {}, {}
    torch.manual_seed(cfg.seed)  # a random init draws from here: the same seed gives the same network
    for method in methods:  # build everything first: bad checkpoints fail before any training
        templates[method.name], loadings[method.name] = build_segmenter(method, data.num_classes, cfg)
    splits = paper_splits(len(data.labels), cfg.folds, cfg.repeats, cfg.seed - 1, cfg.val_fraction)
    if any(len(s.train) < 2 or len(s.val) == 0 for s in splits):
        raise ValueError(f"{len(data.labels)} volumes are too few for {cfg.folds} folds with a validation split")
    record = asdict(cfg)
    record.update(data=str(cfg.data), output_dir=str(cfg.output_dir), methods=method_records(cfg.methods))
    results = {
        "task": "segmentation",
        "args": record,
        "data": {"samples": len(data.labels), "shape": list(data.labels.shape[1:]), "classes": data.classes},
        "results": [
            {"method": m.name, "init": m.init, "checkpoint": m.checkpoint, "loading": loadings[m.name], "folds": []}
            for m in methods
        ],
        "complete": False,
    }
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images, labels = prepare_volumes(data.images, cfg.normalize), torch.from_numpy(data.labels)
    bar = tqdm(total=len(splits) * len(methods), disable=not cfg.progress, desc="segmentation", unit="fold")
    try:
        for split in splits:
            seed = cfg.seed * 100_003 + split.repeat * 1_000 + split.fold
            for method, entry in zip(methods, results["results"], strict=True):
                torch.manual_seed(seed)
                net = copy.deepcopy(templates[method.name]).to(device)
                outcome = train_segmentation_fold(
                    net, cfg, _loaders(images, labels, split, cfg.batch_size, seed), data.num_classes, device
                )
                entry["folds"].append(
                    {
                        "repeat": split.repeat,
                        "fold": split.fold,
                        **outcome,
                        "n_train": len(split.train),
                        "n_val": len(split.val),
                        "n_test": len(split.test),
                    }
                )
                _save(results, out_dir)
                bar.set_postfix(method=method.name, dice=f"{outcome['dice_mean']:.3f}")
                bar.update(1)
    finally:
        bar.close()
    results["complete"] = True
    _save(results, out_dir)
    return results


def segmentation_config_from_args(
    args: argparse.Namespace, methods: list[tuple[str, str | None]]
) -> SegmentationConfig:
    """The :class:`SegmentationConfig` of ``crossd evaluate --task segmentation`` flags (``None`` flags take the
    segmentation defaults; ``--protocol paper``, ``--resume`` and ``--recalibrate-bn`` are refused)."""
    if getattr(args, "resume", False):
        raise ValueError("--resume is not supported with --task segmentation")
    if getattr(args, "recalibrate_bn", False):
        raise ValueError("--recalibrate-bn is for classification; segmentation protocols train the BatchNorms")
    overrides = {
        name: getattr(args, name)
        for name in ("folds", "repeats", "epochs", "batch_size", "lr", "size", "arch", "device")
        if getattr(args, name, None) is not None
    }
    return SegmentationConfig(
        data=args.data,
        methods=methods,
        output_dir=args.output_dir,
        protocol=args.protocol,
        normalize=args.normalize,
        seed=args.seed,
        align=args.align,
        drop_bn_stats=args.drop_bn_stats,
        progress=not args.quiet,
        **overrides,
    )


def summary_lines(results: dict) -> list[str]:
    """One line per method: mean Dice ± std over folds, and Dice per class."""
    classes = results["data"]["classes"][1:]
    lines = []
    for method in results["results"]:
        per_class = ", ".join(f"{c} {mean_std(method[f'dice_{c}_mean'], method[f'dice_{c}_std'])}" for c in classes)
        lines.append(
            f"{method['method']:>12}: Dice {mean_std(method['dice_mean_mean'], method['dice_mean_std'])} "
            f"({per_class}) over {len(method['folds'])} folds"
        )
    return lines
