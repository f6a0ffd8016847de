"""The machine a run ran on, recorded beside its results: what a reader needs to compare its timings, and what
decides whether a rerun can reproduce its numbers bit for bit.

Training on the CPU is deterministic for one torch build on one kind of CPU, not across them: torch picks its
kernels by the instruction set it finds (:func:`torch.backends.cpu.get_cpu_capability`: ``"AVX2"``,
``"AVX512"``, ...), and they round differently. :func:`machine_differences` compares two records on those fields.
"""

from __future__ import annotations

import contextlib
import os
import platform

import torch

import crossd

REPRODUCING_FIELDS = ("torch", "cpu_capability")
"""The fields of :func:`machine` that two machines must share for a CPU run to give the same numbers on both."""


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (``/proc/cpuinfo`` on Linux), else the platform's
    processor string (empty when unknown)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine() -> dict:
    """This process's software and hardware: versions of crossd, torch and Python, the platform, the CPU model,
    torch's CPU capability, and the CPU and thread counts, as a JSON-ready dict."""
    return {
        "crossd": crossd.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def machine_differences(recorded: dict, here: dict) -> list[str]:
    """The :data:`REPRODUCING_FIELDS` on which ``recorded`` (a :func:`machine` record) and ``here`` differ, each as
    ``"field: recorded -> here"``; empty when a CPU rerun here can give the recorded numbers again."""
    return [
        f"{field}: {recorded.get(field)} -> {here.get(field)}"
        for field in REPRODUCING_FIELDS
        if recorded.get(field) != here.get(field)
    ]
