"""`detect_target` over many generations, kept in the artifact cache.

A claim suite runs the detector (bandit plus claimkit's checks) on every output
of every model it samples, often several times per run (claims share outputs),
and again on every rerun: on a warm cache it was the largest part of a rerun.
The detections of a list of texts depend only on the texts and on the detector,
so they are stored under exactly that key: a hash of the texts, to which the
cache adds the detector's code (claimkit.detect's source and bandit's version:
`claimkit.fingerprint.RECIPES["detections"]`). Within one process each text is
detected, and each stored list read, once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from claimkit import detect
from claimkit.cache import ArtifactCache
from claimkit.detect import CodeExtraction, Detection, Finding
from claimkit.experiment import tasks_hash

DETECTIONS_FILE = "detections.json"


def detect_targets(texts: Sequence[str], *, cache: ArtifactCache | None = None) -> list[Detection]:
    """`detect_target(text)` for each of `texts`, in order; read from `cache` when it holds them."""
    texts = list(texts)
    if cache is None:
        return [_detect_once(text) for text in texts]

    def build(out: Path) -> None:
        rows = [asdict(_detect_once(text)) for text in texts]
        (out / DETECTIONS_FILE).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    parts = {"texts": tasks_hash(texts), "n": len(texts)}  # the cache adds the detector's code
    where = cache.get_or_build("detections", parts, build, description=f"detections of {len(texts)} generations")
    return list(_read(where / DETECTIONS_FILE))


@functools.lru_cache(maxsize=16384)
def _detect_once(text: str) -> Detection:
    return detect.detect_target(text)


@functools.lru_cache(maxsize=256)
def _read(file: Path) -> tuple[Detection, ...]:
    """A stored list (immutable once the cache has built it), parsed once per process."""
    return tuple(_from_row(row) for row in json.loads(file.read_text(encoding="utf-8")))


def _from_row(row: dict[str, Any]) -> Detection:
    return Detection(
        is_target=bool(row["is_target"]),
        findings=tuple(Finding(**f) for f in row["findings"]),
        extraction=CodeExtraction(**row["extraction"]),
        status=row["status"],
        bandit_errors=tuple(row.get("bandit_errors", ())),
    )
