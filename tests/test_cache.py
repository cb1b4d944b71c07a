"""The artifact cache: one build per key across processes, nothing half-written ever read."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from claimkit.cache import MANIFEST, ArtifactCache, CacheError, default_cache


def _count_builds(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _slow_build(counter: Path):
    def build(out: Path) -> None:
        with counter.open("a") as f:  # O_APPEND: one line per build, whoever builds
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough that the other process arrives while we build
        (out / "weights.txt").write_text("built")

    return build


def _race_worker(root: str, counter: str, go: str, result: str) -> None:
    while not Path(go).exists():
        time.sleep(0.005)
    path = ArtifactCache(root).get_or_build("adapter", {"seed": 0}, _slow_build(Path(counter)), description="adapter s0")
    Path(result).write_text(str(path))


def test_two_processes_racing_build_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    counter, go = tmp_path / "builds.txt", tmp_path / "go"
    results = [tmp_path / f"result{i}.txt" for i in range(2)]
    procs = [
        ctx.Process(target=_race_worker, args=(str(tmp_path / "cache"), str(counter), str(go), str(r))) for r in results
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let both interpreters start before releasing them together
    go.touch()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert _count_builds(counter) == 1
    paths = {r.read_text() for r in results}
    assert len(paths) == 1
    artifact = Path(paths.pop())
    assert (artifact / "weights.txt").read_text() == "built"
    manifest = json.loads((artifact / MANIFEST).read_text())
    assert manifest["parts"] == {"seed": 0}
    assert manifest["build_seconds"] >= 0.5


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from claimkit.cache import ArtifactCache

    def build(out):
        (out / "part-1.bin").write_text("half")
        Path(sys.argv[2]).touch()   # tell the test we are mid-build
        time.sleep(60)
        (out / "part-2.bin").write_text("never written")

    ArtifactCache(sys.argv[1]).get_or_build("activations", {"layer": 2}, build)
    """
)


def test_killed_writer_leaves_nothing_that_is_read(tmp_path):
    root, started = tmp_path / "cache", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root), str(started)])
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None, "writer died before it started building"
            assert time.monotonic() < deadline, "writer never started building"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    cache = ArtifactCache(root)
    parts = {"layer": 2}
    assert not cache.has("activations", parts)
    assert not cache.path_for("activations", parts).exists()

    built = []

    def build(out: Path) -> None:
        built.append(out)
        (out / "acts.txt").write_text("complete")

    path = cache.get_or_build("activations", parts, build)
    assert len(built) == 1  # rebuilt, the lock of the dead writer did not block us
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "acts.txt"]
    assert not list((root / ".tmp").iterdir())  # the dead writer's temp dir was cleaned up


def test_directory_without_manifest_is_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    stale = cache.path_for("samples", {"n": 3})
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("from a writer that never finished")
    assert not cache.has("samples", {"n": 3})

    path = cache.get_or_build("samples", {"n": 3}, lambda out: (out / "gens.jsonl").write_text("{}"))
    assert path == stale
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "gens.jsonl"]


def test_second_call_reuses_without_building(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(out: Path) -> None:
        calls.append(1)
        (out / "x").write_text("1")

    first = cache.get_or_build("losses", {"a": 1}, build)
    second = cache.get_or_build("losses", {"a": 1}, build)
    assert first == second and calls == [1]
    assert cache.has("losses", {"a": 1})
    assert cache.manifest("losses", {"a": 1})["kind"] == "losses"


def test_failed_build_leaves_nothing_and_says_what(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build(out: Path) -> None:
        (out / "partial").write_text("x")
        raise ValueError("out of data")

    with pytest.raises(ValueError, match="out of data") as info:
        cache.get_or_build("adapter", {"seed": 1}, build, description="L1 adapter seed 1")
    assert any("L1 adapter seed 1" in note for note in info.value.__notes__)
    assert not cache.path_for("adapter", {"seed": 1}).exists()
    assert not list((tmp_path / ".tmp").iterdir())


def test_waiting_worker_says_so_once_and_gets_the_same_path(tmp_path, capsys):
    cache = ArtifactCache(tmp_path)
    builds, in_build, release = [], threading.Event(), threading.Event()

    def build(out: Path) -> None:
        builds.append(out)
        in_build.set()
        release.wait(10)
        (out / "done").write_text("1")

    holder_result = []
    holder = threading.Thread(
        target=lambda: holder_result.append(cache.get_or_build("samples", {"s": 0}, build, description="gens of L0"))
    )
    holder.start()
    assert in_build.wait(10)
    threading.Timer(0.3, release.set).start()
    waited = cache.get_or_build("samples", {"s": 0}, build, description="gens of L0")
    holder.join(10)
    assert holder_result == [waited] and len(builds) == 1
    assert capsys.readouterr().err.count("waiting for gens of L0 built by another worker") == 1


def test_keys_depend_on_kind_and_parts_not_on_where_the_cache_is(tmp_path):
    cache = ArtifactCache(tmp_path)
    assert cache.key("adapter", seed=0, condition="L1") == cache.key("adapter", condition="L1", seed=0)
    assert cache.key("adapter", seed=0) != cache.key("adapter", seed=1)
    assert cache.key("adapter", seed=0) != cache.key("samples", seed=0)
    assert cache.key("losses", p={"x": [1, 2]}) != cache.key("losses", p={"x": [2, 1]})
    assert cache.key("losses", p=Path("/x/y")) == cache.key("losses", p="/x/y")
    assert ArtifactCache(tmp_path / "other").key("adapter", seed=0) == cache.key("adapter", seed=0)
    assert len(cache.key("adapter", seed=0)) == 64
    assert cache.path_for("adapter", {"seed": 0}) != cache.path_for("adapter", {"seed": 1})


def test_key_includes_claimkit_version(tmp_path, monkeypatch):
    import claimkit

    cache = ArtifactCache(tmp_path)
    before = cache.key("adapter", seed=0)
    monkeypatch.setattr(claimkit, "__version__", "999.0")
    assert cache.key("adapter", seed=0) != before


def test_unkeyable_parts_and_bad_kinds_are_refused(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(CacheError, match="cannot be part of a cache key"):
        cache.key("losses", model=object())
    with pytest.raises(CacheError, match="kind"):
        cache.key("../escape", x=1)


def test_a_kind_without_a_recipe_is_refused_with_what_to_do(tmp_path):
    """Its key could not change when its code does: it must say which code builds it first."""
    cache = ArtifactCache(tmp_path)
    with pytest.raises(CacheError, match=r"'gens' is not registered in claimkit.fingerprint.RECIPES.*add it") as info:
        cache.get_or_build("gens", {"n": 1}, lambda out: pytest.fail("built an unkeyed kind"))
    assert "adapter" in str(info.value)  # the known kinds are named
    assert not (tmp_path / "gens").exists()


def test_default_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAIMKIT_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_cache().root == tmp_path / ".claimkit-cache"
    assert default_cache(tmp_path / "repo").root == tmp_path / "repo" / ".claimkit-cache"
    monkeypatch.setenv("CLAIMKIT_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache().root == tmp_path / "elsewhere"


def test_cache_module_does_not_import_torch():
    code = "import sys, claimkit.cache; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
