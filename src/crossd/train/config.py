"""``PretrainConfig``: every setting of a pretraining run; its fields are the ``crossd pretrain`` flags."""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULERS = ("steplr", "cosineannealinglr")


@dataclass
class PretrainConfig:
    """Settings of :func:`crossd.train.pretrain`, named like torchvision's classification reference flags.

    Defaults are the paper's recipe (Table 1): AdamW lr 1e-3 with torch's default weight decay 0.01, StepLR
    (30 epochs, x0.1), 90 epochs, batch 32 per process, crops 224 / resize 256.

    Attributes:
        data_path: image folder with ``train/``, ``val/`` (and optional ``test/``) class folders, or a MedMNIST
            2D ``.npz``.
        dataset: ``"imagefolder"`` or ``"medmnist"``; ``None`` detects it from the ``.npz`` suffix.
        model: torchvision classification model name.
        conv: ``"regular"`` (plain baseline) or ``"crossd"`` (every ``Conv2d`` becomes a ``CrossDConv``).
        mode: Cross-D slicing mode, ``"rotate"`` or ``"shift"``.
        weights: local 2D checkpoint to warm-start from (regular weights enter Cross-D via ``init="center"``).
        batch_size: per process. workers: data-loading processes per training process.
        lr_warmup_epochs: linear warm-up from ``lr_warmup_decay * lr`` before the main scheduler.
        sync_bn: SyncBatchNorm across processes (CUDA only; CPU runs warn and keep per-process BatchNorm).
        output_dir: where ``checkpoint.pt``, ``model.safetensors``, ``log.csv`` and ``metrics.json`` go.
        resume: a ``checkpoint.pt`` to continue from (same model and data).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with gradient scaling).
    """

    data_path: str = ""
    dataset: str | None = None
    model: str = "resnet18"
    conv: str = "regular"
    mode: str = "rotate"
    weights: str | None = None
    epochs: int = 90
    batch_size: int = 32
    workers: int = 4
    lr: float = 1e-3
    opt: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.01
    lr_scheduler: str = "steplr"
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    lr_min: float = 0.0
    lr_warmup_epochs: int = 0
    lr_warmup_decay: float = 0.01
    sync_bn: bool = False
    output_dir: str = "runs/pretrain"
    resume: str | None = None
    device: str = "auto"
    print_freq: int = 10
    seed: int = 0
    amp: bool = False
    train_crop_size: int = 224
    val_resize_size: int = 256
    val_crop_size: int = 224

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` for settings that cannot work."""
        if self.conv not in ("regular", "crossd"):
            raise ValueError(f"conv must be 'regular' or 'crossd', got {self.conv!r}")
        if self.opt not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.opt!r}; expected one of {OPTIMIZERS}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"unknown lr scheduler {self.lr_scheduler!r}; expected one of {LR_SCHEDULERS}")
        for name in ("epochs", "batch_size", "lr_step_size", "print_freq", "train_crop_size", "val_crop_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0 or self.lr_warmup_epochs < 0:
            raise ValueError("workers and lr_warmup_epochs must not be negative")
        if self.lr_warmup_epochs >= self.epochs:
            raise ValueError(f"lr_warmup_epochs ({self.lr_warmup_epochs}) must be fewer than epochs ({self.epochs})")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
