"""3D segmentation with transferred encoders: k-fold Dice of a :class:`~crossd.models.UNet3D` per init.

Each method (``--init NAME[=CKPT]``: ``crossd``, ``acs``, ``i3d``, ``center``, ``2.5d``, ``random``; not the slice
aggregation inits ``slices``/``slices3``, which have no 3D encoder) builds its 3D encoder exactly as the
classification evaluation does (:func:`crossd.evaluate.methods.build_network`), wraps it in a
``UNet3D`` with a fresh decoder, and trains on the same folds (KFold with shuffle, ``random_state = seed + r``
for repeat ``r``, the first ``val_fraction`` of each training fold for validation). Protocols:

- ``linear`` (alias ``frozen``): frozen encoder, BatchNorm statistics included; the decoder and head train.
- ``bn``: encoder convolutions frozen, its BatchNorms (affine and statistics) train with the decoder.
- ``finetune``: everything trains.

Loss: MONAI ``DiceCELoss``; best epoch: highest validation mean Dice; test: Dice per foreground class (MONAI
``DiceMetric``, background excluded) of the best epoch. Jobs, resume, devices, data-loading workers, scale-out
and the results files come from :mod:`crossd.evaluate.kfold`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from operator import itemgetter

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from crossd.data.preprocessing import normalize_volumes
from crossd.data.segmentation import SegmentationSet, load_segmentation
from crossd.errors import DataError
from crossd.evaluate.folds import paper_splits
from crossd.evaluate.kfold import Job, Task, fit_best, fold_loader, run_kfold
from crossd.evaluate.methods import Method, build_network
from crossd.evaluate.protocols import batchnorm_parameters
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.transforms import scale_intensities
from crossd.models.unet3d import UNet3D
from crossd.report.tables import segmentation_markdown
from crossd.results import Results, SegmentationFold, SegmentationSummary
from crossd.train.distributed import DistInfo
from crossd.train.engine import Precision, StepOutput, train_one_epoch
from crossd.train.optim import adam


def prepare_volumes(
    images: np.ndarray, normalize: str, channels: int = 3, window: tuple[float, float] | None = None
) -> Tensor:
    """Per-volume min-max scaling (or ``window``), the volume normalisation of every task
    (:func:`crossd.data.preprocessing.normalize_volumes`), grey repeated to ``channels``:
    ``(N, 1, D, H, W)`` -> ``(N, channels, D, H, W)`` float32."""
    scaled = torch.from_numpy(scale_intensities(images, "per_sample", window))
    return normalize_volumes(scaled, normalize).repeat(1, channels, 1, 1, 1)


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
    """Training mode, except the encoder under ``linear`` (a frozen encoder keeps its BatchNorm statistics too)."""
    net.train()
    if protocol == "linear":
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


class Segmentation(Task):
    """Every method's ``UNet3D`` on every fold of image/label volume pairs (see :class:`SegmentationConfig`)."""

    name, metric = "segmentation", "dice_mean"
    cfg: SegmentationConfig

    def __init__(self, cfg: SegmentationConfig, data: SegmentationSet | None = None):
        super().__init__(cfg)
        self.data = data

    def load(self) -> None:
        cfg = self.cfg
        data = load_segmentation(cfg.data, cfg.size, cfg.slice_axis) if self.data is None else self.data
        if data.num_classes < 2:
            raise DataError(f"{cfg.data}: labels hold a single class; nothing to segment")
        self.num_classes = data.num_classes
        self.splits = paper_splits(len(data.labels), cfg.folds, cfg.repeats, cfg.seed - 1, cfg.val_fraction)
        if any(len(s.train) < 2 or len(s.val) == 0 for s in self.splits):
            raise DataError(
                f"{cfg.folds} is too many: {len(data.labels)} volumes are too few for a validation split", field="folds"
            )
        self.images = prepare_volumes(data.images, cfg.normalize, window=cfg.window)
        self.labels = torch.from_numpy(data.labels)
        self.data_record = {"samples": len(data.labels), "shape": list(data.labels.shape[1:]), "classes": data.classes}

    def build(self, method: Method) -> tuple[nn.Module, dict]:
        return build_segmenter(method, self.num_classes, self.cfg)

    def run_job(self, job: Job, template: nn.Module, device: torch.device, on_epoch: Callable[[], None]) -> dict:
        from monai.losses import DiceCELoss

        cfg, split = self.cfg, job.split
        net = copy.deepcopy(template).to(device)
        loaders = {
            part: fold_loader(
                TensorDataset(self.images[torch.from_numpy(idx)], self.labels[torch.from_numpy(idx)]),
                cfg.batch_size,
                part == "train",
                job.seed,
                cfg.num_workers,
            )
            for part, idx in (("train", split.train), ("val", split.val), ("test", split.test))
        }
        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        optimizer = adam(trainable_parameters(net, cfg.protocol), cfg.lr)
        info, precision = DistInfo(device=device), Precision()

        def step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> StepOutput:
            volumes, labels = batch  # (N, C, D, H, W), (N, D, H, W)
            logits = model(volumes)
            return StepOutput(dice_ce(logits, labels[:, None]), logits)

        def train_epoch(epoch: int) -> dict[str, float]:
            _train_mode(net, cfg.protocol)
            stats = train_one_epoch(
                net, loaders["train"], step, None, optimizer, info, precision, header=f"{job.name} epoch {epoch}"
            )
            on_epoch()
            return {
                "train_loss": stats.loss,
                "val_dice": _mean(dice_per_class(net, loaders["val"], self.num_classes, device)),
            }

        best_epoch, history = fit_best(net, cfg.epochs, train_epoch, itemgetter("val_dice"))
        dice = dice_per_class(net, loaders["test"], self.num_classes, device)
        return {
            "dice_mean": _mean(dice),
            "dice": dice,
            "best_epoch": best_epoch,
            "history": history,
            "n_train": len(split.train),
            "n_val": len(split.val),
            "n_test": len(split.test),
        }

    def method_summary(self, method: Method, loading: dict, folds: list[dict]) -> SegmentationSummary:
        classes = self.data_record["classes"][1:]
        fold_results = [SegmentationFold.from_json(f) for f in folds]
        return SegmentationSummary(method.name, method.init, method.checkpoint, classes, loading, fold_results)

    def render(self, results: Results) -> str:
        return segmentation_markdown(results)


def evaluate_segmentation(
    cfg: SegmentationConfig, data: SegmentationSet | None = None, shard: tuple[int, int] | None = None
) -> Results:
    """Run every method of ``cfg`` on every fold and write ``results.json``/``results.md`` to ``cfg.output_dir``
    (jobs, resume, devices, workers and scale-out as for classification: :func:`crossd.evaluate.kfold.run_kfold`).

    Args:
        cfg: the run's settings.
        data: volumes already in memory (default: ``load_segmentation(cfg.data, cfg.size, cfg.slice_axis)``).
        shard: ``(K, N)``: run only shard K of N of the jobs.

    Returns:
        the :class:`~crossd.results.Results` that ``results.json`` holds: one
        :class:`~crossd.results.SegmentationSummary` per method, its folds as
        :class:`~crossd.results.SegmentationFold` (Dice per foreground class), and each method's
        :class:`~crossd.results.Comparison` of mean Dice with the reference.
    """
    return run_kfold(Segmentation(cfg, data), shard)
