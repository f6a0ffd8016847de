"""Fingerprints: the same content under any spelling is the same input; other content under the same name is
not; large files by sampled blocks plus size and mtime; folders by their file list with sizes."""

import os

import pytest

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
