"""bench/cache_inventory.py reads a cache's manifests: counts and seconds per kind, and builds in flight over time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from claimkit.cache import ArtifactCache

ROOT = Path(__file__).resolve().parents[1]


def test_the_inventory_counts_each_kind_and_lays_builds_on_a_timeline(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    for i in range(3):
        cache.get_or_build("samples", {"i": i}, lambda out: (out / "x").write_text("x"), description=f"samples {i}")
    cache.get_or_build("adapter", {"i": 0}, lambda out: (out / "x").write_text("x"), description="the fine-tune")
    figures = tmp_path / "inventory.json"
    done = subprocess.run([sys.executable, "bench/cache_inventory.py", str(tmp_path / "cache"), "--json", str(figures),
                           "--timeline", "5"], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4 artifacts in" in done.stdout and "the fine-tune" in done.stdout
    data = json.loads(figures.read_text())
    assert {row["kind"]: row["count"] for row in data["kinds"]} == {"samples": 3, "adapter": 1}
    assert data["timeline"] and all(row["in_flight"] >= 0 for row in data["timeline"])


def test_a_directory_without_artifacts_is_refused_with_a_reason(tmp_path):
    done = subprocess.run([sys.executable, "bench/cache_inventory.py", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "no complete artifacts" in done.stderr


def test_builds_lists_each_artifact_with_its_key_parts_and_a_samplings_answers(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    records = [{"task": "t", "text": "a\u2028b\x1c", "finished": True, "new_tokens": 7},  # splitlines() would cut these
               {"task": "t", "text": "b", "finished": False, "new_tokens": 256}]  # fmt: skip
    lines = [json.dumps(r, ensure_ascii=False) for r in records]  # as claimkit.jsonl writes answers
    write = lambda out: (out / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")  # noqa: E731
    cache.get_or_build("samples", {"role": "behaviour", "n": 2}, write, description="L1 seed 0 samples")
    cache.get_or_build("adapter", {"n": 600}, lambda out: (out / "x").write_text("x"), description="the fine-tune")
    figures = tmp_path / "inventory.json"
    done = subprocess.run([sys.executable, "bench/cache_inventory.py", str(tmp_path / "cache"), "--json", str(figures),
                           "--builds"], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    builds = {b["description"]: b for b in json.loads(figures.read_text())["builds"]}
    assert builds["L1 seed 0 samples"]["parts"] == {"role": "behaviour", "n": 2}
    assert builds["L1 seed 0 samples"]["answers"] == {"answers": 2, "new_tokens": 263, "ended": 1}
    assert builds["the fine-tune"]["answers"] is None and builds["the fine-tune"]["parts"] == {"n": 600}
