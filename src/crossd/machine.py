"""The machine a run ran on, recorded beside its results: what a reader needs to compare its timings, and what
decides whether a rerun can reproduce its numbers bit for bit.

Training on the CPU is deterministic for one torch build on one kind of CPU, not across them: torch picks its own
kernels by the instruction set it finds (:func:`torch.backends.cpu.get_cpu_capability`: ``"AVX2"``,
``"AVX512"``, ...), oneDNN and MKL pick theirs by finer CPU features, and they round differently. Two machines with
the same capability can therefore still disagree (an Intel Xeon "Ice Lake" and an AMD EPYC, both ``"AVX512"``, did
on study 8's pretraining), so the record also holds :func:`numerics_probe`, a digest of one forward and backward pass
of a regular and a Cross-D ResNet-18 on fixed inputs. :func:`machine_differences` compares two records on
:data:`REPRODUCING_FIELDS`: a difference means a CPU rerun will not give the recorded numbers; no difference makes it
likely, and only the rerun's numbers decide.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform

import torch
from torch.nn import functional as F

import crossd
from crossd.models import create_model

REPRODUCING_FIELDS = ("torch", "cpu_capability", "numerics")
"""The fields of :func:`machine` that two machines must share for a CPU run to give the same numbers on both
(``numerics`` is compared only where both records hold it: older records lack it)."""


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (``/proc/cpuinfo`` on Linux), else the platform's
    processor string (empty when unknown)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


@functools.cache
def numerics_probe() -> str:
    """16 hex digits of the SHA-256 of the parameter gradients of one forward and backward pass of a regular and a
    Cross-D (``shift``) ResNet-18 on 4 fixed 32x32 images, on one thread: the same on two machines (and crossd
    versions) whose CPU kernels round alike, different where they do not. About a second, once per process; the
    global random state and thread count are left as they were."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            digest = hashlib.sha256()
            images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
            for conv in ("regular", "crossd"):
                model = create_model("resnet18", 4, conv, "shift").train()
                F.cross_entropy(model(images), labels).backward()
                for parameter in model.parameters():
                    digest.update(parameter.grad.numpy().tobytes())
            return digest.hexdigest()[:16]
    finally:
        torch.set_num_threads(threads)


def machine() -> dict:
    """This process's software and hardware: versions of crossd, torch and Python, the platform, the CPU model,
    torch's CPU capability, :func:`numerics_probe`, and the CPU and thread counts, as a JSON-ready dict."""
    return {
        "crossd": crossd.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numerics": numerics_probe(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def machine_differences(recorded: dict, here: dict) -> list[str]:
    """The :data:`REPRODUCING_FIELDS` on which ``recorded`` (a :func:`machine` record) and ``here`` differ, each as
    ``"field: recorded -> here"`` (``numerics`` only where both hold it); empty when a CPU rerun here is likely to
    give the recorded numbers again."""
    return [
        f"{field}: {recorded.get(field)} -> {here.get(field)}"
        for field in REPRODUCING_FIELDS
        if recorded.get(field) != here.get(field) and (field != "numerics" or field in recorded and field in here)
    ]
