"""Provenance: content hashes, the checkout's state, package versions, the device, and staying light."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import types

import pytest

from claimkit import provenance
from claimkit.provenance import content_hash, describe_device, git_state, package_versions


def test_a_file_hash_is_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "shares.toml"
    path.write_bytes(b"share = 0.25\n")
    assert content_hash(path) == "sha256:" + hashlib.sha256(b"share = 0.25\n").hexdigest()


def test_a_directory_hash_follows_names_and_bytes_but_not_bytecode_or_order(tmp_path):
    tree = tmp_path / "corpus"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.py").write_text("b = 1\n")
    first = content_hash(tree)
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0compiled")
    (tree / "sub" / "c.pyc").write_bytes(b"\0compiled")
    assert content_hash(tree) == first  # bytecode follows the source
    (tree / "sub" / "b.py").write_text("b = 2\n")
    assert content_hash(tree) != first
    (tree / "sub" / "b.py").write_text("b = 1\n")
    (tree / "sub" / "b.py").rename(tree / "sub" / "renamed.py")
    assert content_hash(tree) != first  # a name is content too
    with pytest.raises(FileNotFoundError):
        content_hash(tmp_path / "absent")


def test_claim_code_is_the_py_files_of_the_directory_itself(tmp_path):
    (tmp_path / "test_claim.py").write_text("def test(): pass\n")
    (tmp_path / "notes.md").write_text("not code")
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "other.py").write_text("x = 1\n")
    before = provenance.claim_code_hash(tmp_path)
    (tmp_path / "notes.md").write_text("still not code")
    (tmp_path / "deeper" / "other.py").write_text("x = 2\n")
    assert provenance.claim_code_hash(tmp_path) == before
    (tmp_path / "test_claim.py").write_text("def test(): assert True\n")
    assert provenance.claim_code_hash(tmp_path) != before


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "rule.toml").write_text("alpha = 0.05\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    return repo


def test_git_state_of_a_clean_and_a_dirty_checkout(checkout):
    clean = git_state(checkout)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff_hash"] is None
    (checkout / "ignored").mkdir()
    (checkout / "ignored" / "cache.bin").write_text("anything")
    assert git_state(checkout) == clean  # ignored files are not edits
    (checkout / "rule.toml").write_text("alpha = 0.01\n")
    edited = git_state(checkout / "ignored")  # any directory of the checkout
    assert edited["commit"] == clean["commit"] and edited["dirty"] is True
    assert edited["diff_hash"].startswith("sha256:")
    (checkout / "new.py").write_text("x = 1\n")
    with_new = git_state(checkout)
    assert with_new["diff_hash"] != edited["diff_hash"]  # untracked files count, by content
    (checkout / "new.py").write_text("x = 2\n")
    assert git_state(checkout)["diff_hash"] != with_new["diff_hash"]


def test_outside_a_checkout_or_without_git_everything_is_none(tmp_path, monkeypatch):
    empty = {"commit": None, "dirty": None, "diff_hash": None}
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # do not find a checkout above tmp
    assert git_state(outside) == empty
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git_state(outside) == empty


def test_package_versions_name_python_and_say_none_for_an_absent_package():
    versions = package_versions(("pytest", "claimkit-no-such-distribution"))
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["pytest"] == pytest.__version__
    assert versions["claimkit-no-such-distribution"] is None
    assert set(provenance.PACKAGES) <= set(package_versions())


def fake_torch(monkeypatch, *, initialised):
    cuda = types.SimpleNamespace(
        is_initialized=lambda: initialised, current_device=lambda: 0, device_count=lambda: 2,
        get_device_name=lambda index: "NVIDIA H100 80GB HBM3",
    )
    module = types.ModuleType("torch")
    module.cuda = cuda
    module.version = types.SimpleNamespace(cuda="12.4")
    monkeypatch.setitem(sys.modules, "torch", module)
    monkeypatch.setattr(provenance, "_driver_version", lambda: "550.54.15")


def test_the_gpu_is_recorded_only_where_cuda_is_already_initialised(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert provenance.device()["gpu"] is None
    fake_torch(monkeypatch, initialised=False)
    cpu = provenance.device()
    assert cpu["gpu"] is None and cpu["cpu_count"] >= 1 and cpu["cpu"]
    assert describe_device(cpu).startswith("CPU ")
    fake_torch(monkeypatch, initialised=True)
    gpu = provenance.device()
    assert gpu["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "count": 2, "cuda": "12.4", "driver": "550.54.15"}
    assert describe_device(gpu) == "NVIDIA H100 80GB HBM3 (driver 550.54.15, CUDA 12.4)"


def test_a_verdicts_provenance_names_its_claim_code_and_models(tmp_path):
    (tmp_path / "test_claim.py").write_text("x = 1\n")
    record = provenance.verdict_provenance(command="pytest claims/", claim_dir=tmp_path, models={"L1": "sha256:ab"})
    assert record["claim_code"] == provenance.claim_code_hash(tmp_path)
    assert record["claimkit_source"] == provenance.claimkit_source_hash()
    assert record["command"] == "pytest claims/" and record["models"] == {"L1": "sha256:ab"}
    assert set(record) >= {"commit", "dirty", "diff_hash", "versions", "device", "claim_dir"}


def test_provenance_imports_nothing_heavy():
    code = ("import sys, claimkit.provenance as p; p.verdict_provenance(command='c', claim_dir='.'); "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
