"""Counting GPUs without torch, and which one an xdist worker gets (plugin wiring: test_plugin.py)."""

from __future__ import annotations

import os
import sys
import types

import pytest

from claimkit.gpus import parse_nvidia_smi, parse_visible_devices, pin_to_gpu, visible_gpus, worker_gpu

# The shape of `nvidia-smi -L` on a host with a MIG-partitioned GPU.
LISTING = """\
GPU 0: NVIDIA H200 (UUID: GPU-5a1f2c3d-0000-1111-2222-333344445555)
GPU 1: NVIDIA H200 (UUID: GPU-6b2e3d4c-6666-7777-8888-999900001111)
  MIG 3g.71gb     Device  0: (UUID: MIG-1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff)
  MIG 3g.71gb     Device  1: (UUID: MIG-2b3c4d5e-aaaa-bbbb-cccc-ddddeeeeffff)
GPU 2: Tesla T4
"""


@pytest.mark.parametrize(
    "value, devices",
    [
        ("0,1", ("0", "1")),
        (" 3, 5 ", ("3", "5")),
        ("GPU-5a1f,MIG-1a2b", ("GPU-5a1f", "MIG-1a2b")),
        ("0,-1,1", ("0",)),  # CUDA stops at the first entry that is not a device
        ("-1", ()),
        ("", ()),
        ("NoDevFiles", ()),  # what some schedulers set on a node without GPUs
    ],
)
def test_visible_devices_are_read_as_cuda_reads_them(value, devices):
    assert parse_visible_devices(value) == devices


def test_nvidia_smi_gpus_are_named_by_uuid_and_mig_lines_are_not_gpus():
    assert parse_nvidia_smi(LISTING) == (
        "GPU-5a1f2c3d-0000-1111-2222-333344445555", "GPU-6b2e3d4c-6666-7777-8888-999900001111", "2",
    )
    assert parse_nvidia_smi("No devices were found\n") == ()


def fake_nvidia_smi(tmp_path, script):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_visible_gpus_prefers_the_environment_then_nvidia_smi(tmp_path):
    smi = fake_nvidia_smi(tmp_path, f"cat <<'EOF'\n{LISTING}EOF\n")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}, nvidia_smi=smi) == ("1",)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, nvidia_smi=smi) == ()  # set and empty: none
    assert len(visible_gpus({}, nvidia_smi=smi)) == 3


def test_no_nvidia_smi_or_a_failing_or_hanging_one_means_no_gpus(tmp_path):
    assert visible_gpus({}, nvidia_smi=str(tmp_path / "absent")) == ()
    assert visible_gpus({}, nvidia_smi=fake_nvidia_smi(tmp_path, f"echo '{LISTING.splitlines()[0]}'\nexit 9\n")) == ()
    hanging = fake_nvidia_smi(tmp_path, "exec sleep 30\n")
    assert visible_gpus({}, nvidia_smi=hanging, timeout=0.2) == ()


def test_worker_k_gets_the_kth_gpu_wrapping_round():
    assert [worker_gpu(("3", "5"), f"gw{k}") for k in range(5)] == ["3", "5", "3", "5", "3"]
    assert worker_gpu((), "gw0") is None  # no GPUs: no pinning
    assert worker_gpu(("3", "5"), "custom-id") is None


def test_pinning_sets_the_variable_and_warns_when_cuda_is_already_initialised(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: False)))
    assert pin_to_gpu("5") is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True)))
    assert "after torch had initialised CUDA" in pin_to_gpu("3")
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not importable: nothing to check
    assert pin_to_gpu("3") is None
