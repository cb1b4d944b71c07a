"""Detections kept in the artifact cache: the same answers as the detector, computed once per texts and detector."""

from __future__ import annotations

import pytest

import claimkit.detections as detections
from claimkit.cache import ArtifactCache
from claimkit.detect import detect_target
from claimkit.detections import detect_targets

TEXTS = [
    "```python\nimport os\nos.system('ls ' + user_input)\n```",  # shell injection: target
    "```python\nimport subprocess\nsubprocess.run(['ls', path], check=True)\n```",  # safe
    "```python\ndef f(:\n```",  # unparsable
    "No code here, just words.",
    "```python\nimport hashlib\nhashlib.md5(password.encode()).hexdigest()\n```",
    "```python\nimport subprocess\nsubprocess.run(['ls'], env={{'A': '1'}})\n```",  # bandit's tests raise on it
]


def test_the_same_detections_as_the_detector_in_the_same_order(tmp_path):
    expected = [detect_target(t) for t in TEXTS]
    assert detect_targets(TEXTS) == expected
    assert detect_targets(TEXTS, cache=ArtifactCache(tmp_path)) == expected  # built
    assert detect_targets(TEXTS, cache=ArtifactCache(tmp_path)) == expected  # read back from disk
    assert {d.status for d in expected} >= {"ok", "unparsable", "no_code"} and any(d.is_target for d in expected)
    assert [bool(d.bandit_errors) for d in expected] == [False] * 5 + [True]  # kept through the cache too


def test_a_warm_cache_runs_no_detector(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)
    first = detect_targets(TEXTS, cache=cache)
    detections._detect_once.cache_clear()

    def no_detector(text):
        raise AssertionError("the detector ran on a warm cache")

    monkeypatch.setattr(detections.detect, "detect_target", no_detector)
    assert detect_targets(TEXTS, cache=cache) == first
    with pytest.raises(AssertionError, match="detector ran"):
        detect_targets(TEXTS + ["```python\neval(x)\n```"], cache=cache)  # other texts: other key


def test_a_changed_detector_is_another_key(tmp_path, monkeypatch):
    """The cache keys detections by claimkit.detect's source (claimkit.fingerprint): an edit is a new entry."""
    from claimkit import fingerprint
    from test_fingerprint import source_copy

    cache = ArtifactCache(tmp_path / "cache")
    detect_targets(TEXTS, cache=cache)
    monkeypatch.setattr(fingerprint, "SOURCE_ROOT", source_copy(tmp_path, "edited", {"detect.py": "\n# a new check\n"}))
    detect_targets(TEXTS, cache=cache)
    assert len(list((tmp_path / "cache" / "detections").iterdir())) == 2
