"""JSON lines files: one JSON document per line, split on "\\n" only.

`str.splitlines` also splits on U+2028, U+2029, U+0085 and the \\x1c-\\x1e separators,
which `json.dumps(..., ensure_ascii=False)` leaves unescaped inside strings; a generation
that contains one (SmolLM2 wrote one on an H100, 2026-12-07) would be cut in two and its
line would not parse. Every JSON lines file claimkit writes is read through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def dump_lines(rows: Iterable[Any]) -> str:
    """The rows as JSON lines text (each row on its own line, a newline after the last)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def load_lines(text: str) -> list[str]:
    """The lines of JSON lines text that hold a document (blank lines dropped), split on "\\n" alone."""
    return [line for line in text.split("\n") if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    Path(path).write_text(dump_lines(rows), encoding="utf-8")


def read_jsonl(path: str | Path) -> list[Any]:
    return [json.loads(line) for line in load_lines(Path(path).read_text(encoding="utf-8"))]
