"""The machine record (crossd.machine): what it holds, and which differences stop a CPU run from reproducing."""

from __future__ import annotations

import json

import torch

import crossd
from crossd.machine import REPRODUCING_FIELDS, cpu_model, machine, machine_differences


def test_the_record_names_versions_cpu_and_threads_and_is_json():
    record = machine()
    assert json.loads(json.dumps(record)) == record
    assert record["crossd"] == crossd.__version__ and record["torch"] == torch.__version__
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu"] == cpu_model() and record["torch_threads"] == torch.get_num_threads()
    assert set(REPRODUCING_FIELDS) <= record.keys()


def test_only_the_torch_build_and_cpu_capability_count_as_differences():
    here = machine()
    assert machine_differences(here, here) == []
    other_cpu = {**here, "cpu": "another model", "cpus": 64, "torch_threads": 1, "platform": "elsewhere"}
    assert machine_differences(other_cpu, here) == []  # same build, same kernels: the numbers agree
    capability = "AVX2" if here["cpu_capability"] != "AVX2" else "AVX512"  # any other than this machine's
    elsewhere = {**here, "cpu_capability": capability, "torch": "2.0.0"}
    assert machine_differences(elsewhere, here) == [
        f"torch: 2.0.0 -> {here['torch']}",
        f"cpu_capability: {capability} -> {here['cpu_capability']}",
    ]
    assert machine_differences({}, here) == [f"{f}: None -> {here[f]}" for f in REPRODUCING_FIELDS]
