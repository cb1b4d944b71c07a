"""Content-addressed artifact cache shared by every process of a run.

Fine-tuned adapters, generations and activations are expensive and are a pure
function of their inputs and of the code that builds them, so each lives in a
directory named by the hash of both: the inputs its caller gives (with the
cache entry of any artifact it was built from), and the fingerprint of its
kind's code (`claimkit.fingerprint`: the source of the modules that build it
and the versions of the libraries that compute it), plus the claimkit version.
A rerun of unchanged code finds them again; after an edit, what that code builds
is rebuilt, and what was built from it. pytest-xdist workers that need the same
artifact wait on a file lock for the one that builds it. A directory only ever
appears complete: the builder writes into a temporary directory inside the
cache root, writes the `_complete.json` manifest (which records the code
fingerprint, so a person can see what built it) last, and renames the whole
directory into place. A directory without the manifest (left by a killed writer
or an older layout) is ignored and rebuilt.

This module is imported at pytest start-up: it must not import torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping

import filelock

from claimkit.fingerprint import CodeFingerprint, UnregisteredKind, code_fingerprint

MANIFEST = "_complete.json"
_TMP = ".tmp"
_LOCKS = ".locks"


class CacheError(RuntimeError):
    """The cache was asked for something it cannot key or store; the message says what."""


class ArtifactCache:
    """Directories of build outputs, keyed by what they were built from."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.root)!r})"

    # -- keys and paths -----------------------------------------------------

    def key(self, kind: str, **parts: Any) -> str:
        """sha256 (hex) of the canonical JSON of kind, parts, the kind's code fingerprint and the claimkit version.

        `kind` must be registered in `claimkit.fingerprint.RECIPES`: a kind whose code
        is unknown would keep its artifacts across any edit of that code.
        """
        _check_kind(kind)
        payload = {"kind": kind, "parts": parts, "code": _code(kind).digest, "claimkit": _claimkit_version()}
        try:
            text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
        except (TypeError, ValueError) as exc:
            raise CacheError(f"cache key for {kind!r}: parts must be JSON-like values: {exc}") from None
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path_for(self, kind: str, parts: Mapping[str, Any]) -> Path:
        """Where the artifact for (kind, parts) lives, whether or not it exists yet."""
        return self.root / kind / self.key(kind, **parts)

    def has(self, kind: str, parts: Mapping[str, Any]) -> bool:
        """True when a complete artifact for (kind, parts) is on disk."""
        return (self.path_for(kind, parts) / MANIFEST).is_file()

    def manifest(self, kind: str, parts: Mapping[str, Any]) -> dict[str, Any] | None:
        """The manifest of a complete artifact (parts, code fingerprint, created, build seconds), else None."""
        file = self.path_for(kind, parts) / MANIFEST
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    # -- building -------------------------------------------------------------

    def get_or_build(
        self,
        kind: str,
        parts: Mapping[str, Any],
        build: Callable[[Path], None],
        *,
        description: str = "",
    ) -> Path:
        """The artifact directory for (kind, parts), built by `build(tmpdir)` if absent.

        `build` writes files into the empty directory it is given; it is called at
        most once across all processes sharing this cache root, and never sees a
        half-written result of another process.
        """
        final = self.path_for(kind, parts)
        if (final / MANIFEST).is_file():
            return final
        what = description or f"{kind} {final.name[:12]}"
        lock = filelock.FileLock(str(self.root / _LOCKS / f"{kind}-{final.name}.lock"))
        (self.root / _LOCKS).mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            print(f"claimkit: waiting for {what} built by another worker", file=sys.stderr, flush=True)
            lock.acquire()
        try:
            if (final / MANIFEST).is_file():  # built by the worker we waited for
                return final
            return self._build(kind, parts, build, final, what)
        finally:
            lock.release()

    def _build(self, kind: str, parts: Mapping[str, Any], build: Callable[[Path], None], final: Path, what: str) -> Path:
        tmp_root = self.root / _TMP
        tmp_root.mkdir(parents=True, exist_ok=True)
        prefix = f"{kind}-{final.name}-"
        for stale in tmp_root.glob(prefix + "*"):  # a killed writer's leftovers; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = tmp_root / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        started = time.perf_counter()
        try:
            build(tmp)
            if (tmp / MANIFEST).exists():
                raise CacheError(f"building {what}: the builder wrote {MANIFEST}, a name the cache reserves")
            manifest = {
                "kind": kind,
                "key": final.name,
                "description": what,
                "parts": json.loads(json.dumps(dict(parts), default=_jsonable)),
                "code": _code(kind).as_dict(),  # what built it: module source hashes, library versions
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "build_seconds": round(time.perf_counter() - started, 3),
                "claimkit_version": _claimkit_version(),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # incomplete: no manifest, or we would have returned
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, Exception):
                exc.add_note(f"claimkit: while building {what} for the cache at {self.root}")
            raise
        return final


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks: a content key for weights and model files."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache(rootdir: str | Path | None = None) -> ArtifactCache:
    """The run's cache: $CLAIMKIT_CACHE, else `<rootdir or cwd>/.claimkit-cache`."""
    env = os.environ.get("CLAIMKIT_CACHE")
    if env:
        return ArtifactCache(Path(env).expanduser())
    return ArtifactCache(Path(rootdir if rootdir is not None else Path.cwd()) / ".claimkit-cache")


def _claimkit_version() -> str:
    from claimkit import __version__

    return __version__


def _code(kind: str) -> CodeFingerprint:
    try:
        return code_fingerprint(kind)
    except UnregisteredKind as exc:
        raise CacheError(str(exc)) from None


def _check_kind(kind: str) -> None:
    if not kind or not all(c.isalnum() or c in "-_." for c in kind) or kind.startswith("."):
        raise CacheError(f"cache kind {kind!r} must be a non-empty name of letters, digits, '-', '_' or '.'")


def _jsonable(value: Any) -> Any:
    """Turn the few non-JSON values that naturally appear in parts into JSON ones."""
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, list)):
        return list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be part of a cache key")
