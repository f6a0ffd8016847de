"""The machine record (crossd.machine): what it holds, which differences stop a CPU run from reproducing, and the
numerics probe that tells CPU kernels apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import crossd
from crossd.machine import REPRODUCING_FIELDS, cpu_model, machine, machine_differences, numerics_probe


def test_the_record_names_versions_cpu_and_threads_and_is_json():
    record = machine()
    assert json.loads(json.dumps(record)) == record
    assert record["crossd"] == crossd.__version__ and record["torch"] == torch.__version__
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu"] == cpu_model() and record["torch_threads"] == torch.get_num_threads()
    assert set(REPRODUCING_FIELDS) <= record.keys()


def test_the_torch_build_cpu_capability_and_numerics_count_as_differences():
    here = machine()
    assert machine_differences(here, here) == []
    other_cpu = {**here, "cpu": "another model", "cpus": 64, "torch_threads": 1, "platform": "elsewhere"}
    assert machine_differences(other_cpu, here) == []  # same build, kernels that round alike: the numbers agree
    capability = "AVX2" if here["cpu_capability"] != "AVX2" else "AVX512"  # any other than this machine's
    elsewhere = {**here, "cpu_capability": capability, "torch": "2.0.0", "numerics": "0" * 16}
    assert machine_differences(elsewhere, here) == [
        f"torch: 2.0.0 -> {here['torch']}",
        f"cpu_capability: {capability} -> {here['cpu_capability']}",
        f"numerics: {'0' * 16} -> {here['numerics']}",
    ]
    older = {k: v for k, v in here.items() if k != "numerics"}  # records made before the probe existed
    assert machine_differences(older, here) == []
    assert machine_differences({}, here) == [f"{f}: None -> {here[f]}" for f in ("torch", "cpu_capability")]


def test_the_numerics_probe_is_stable_and_leaves_the_random_state_and_threads_alone():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    numerics_probe.cache_clear()
    first = numerics_probe()
    numerics_probe.cache_clear()
    assert numerics_probe() == first and re.fullmatch(r"[0-9a-f]{16}", first)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def probe_in_subprocess(**env: str) -> str:
    code = "from crossd.machine import numerics_probe; print(numerics_probe())"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="no vectorised kernels to switch off")
def test_the_numerics_probe_tells_kernels_that_round_differently_apart():
    # the same machine, once with torch's and oneDNN's vectorised kernels, once with their plainest ones
    assert probe_in_subprocess() == machine()["numerics"]
    plain = probe_in_subprocess(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41")
    assert plain != machine()["numerics"]
