"""Fingerprints: the same content under any spelling is the same input; other content under the same name is
not; large files by sampled blocks plus size and mtime; folders by their file list with sizes; safetensors files
by their tensors and metadata, whatever order the keys were written in."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from crossd import fingerprint as fp_module
from crossd.errors import CheckpointError
from crossd.fingerprint import changed_line, fingerprint, same_content


def test_spelling_does_not_matter_content_does(tmp_path, monkeypatch):
    (tmp_path / "d.bin").write_bytes(b"a" * 1000)
    monkeypatch.chdir(tmp_path)
    first = fingerprint("d.bin")
    assert first["sha256"] and first["path"] == str(tmp_path / "d.bin")
    assert same_content(first, fingerprint(f"../{tmp_path.name}/./d.bin"))
    (tmp_path / "d.bin").write_bytes(b"b" * 1000)  # same size, other bytes
    second = fingerprint(tmp_path / "d.bin")
    assert not same_content(first, second)
    assert changed_line("d.bin", first, second).startswith("d.bin is not the content recorded (then: 1000 bytes")


def test_large_files_are_hashed_by_sampled_blocks_with_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setattr(fp_module, "FULL_HASH_BYTES", 10)
    monkeypatch.setattr(fp_module, "BLOCK_BYTES", 4)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(200)))
    first = fingerprint(path)
    assert "sha256" not in first and first["sample_sha256"]
    os.utime(path, (1, 1))
    assert not same_content(first, fingerprint(path))  # beyond the limit the mtime counts
    assert "sha256" in fingerprint(path, full=True)  # checkpoints: always the whole file


def test_folders_are_known_by_their_file_list_with_sizes(tmp_path):
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "1.png").write_bytes(b"12")
    first = fingerprint(tmp_path / "a")
    assert first["files"] == 1 and same_content(first, fingerprint(tmp_path / "a"))
    (tmp_path / "a" / "x" / "2.png").write_bytes(b"1")
    assert not same_content(first, fingerprint(tmp_path / "a"))


def test_a_missing_file_names_the_field(tmp_path):
    with pytest.raises(CheckpointError, match=r"^methods .*nope.pt: no such file or folder$"):
        fingerprint(tmp_path / "nope.pt", "methods", CheckpointError)


def _reordered_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its header's keys written in reverse order: the same length, offsets
    and tensors, other bytes (as two processes' saves of the same tensors and metadata)."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = dict(reversed(header["__metadata__"].items()))
    text = json.dumps(dict(reversed(header.items())), separators=(",", ":")).encode().ljust(length)
    assert len(text) == length
    return data[:8] + text + data[8 + length :]


def test_safetensors_files_are_known_by_their_tensors_and_metadata_not_by_key_order(tmp_path):
    first = tmp_path / "a.safetensors"
    save_file({"w": torch.arange(6.0), "b": torch.ones(2)}, first, metadata={"x": "1", "y": "2", "z": "3"})
    second = tmp_path / "b.safetensors"
    second.write_bytes(_reordered_header(first.read_bytes()))
    a, b = fingerprint(first, full=True), fingerprint(second, full=True)
    assert a["sha256"] != b["sha256"] and a["tensors_sha256"] == b["tensors_sha256"] and same_content(a, b)
    old_style = {k: v for k, v in a.items() if k != "tensors_sha256"}  # recorded before tensors_sha256 existed
    assert same_content(old_style, a) and not same_content(old_style, b)
    save_file({"w": torch.arange(6.0) + 1, "b": torch.ones(2)}, second, metadata={"x": "1", "y": "2", "z": "3"})
    assert not same_content(a, fingerprint(second, full=True))
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)  # not a safetensors file: the plain hash only
    assert "tensors_sha256" not in fingerprint(tmp_path / "bad.safetensors")
