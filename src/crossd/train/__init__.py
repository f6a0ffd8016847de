"""2D pretraining of regular or Cross-D torchvision classifiers (torchvision classification-reference style).

``pretrain(PretrainConfig(data_path=..., conv="crossd"))`` trains in this process, or in each process started
by ``torchrun`` (``DistributedDataParallel``); ``crossd pretrain`` and ``python -m crossd pretrain`` are its CLI.
"""

from crossd.train.checkpoint import load_training_checkpoint
from crossd.train.config import PretrainConfig
from crossd.train.loop import pretrain

__all__ = ["PretrainConfig", "load_training_checkpoint", "pretrain"]
