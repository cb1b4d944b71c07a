"""Which tokens of a generated answer belong to its code, to the text before it, to its first code line.

A reading of a model's activations means something only where the claim lives: "the
feature fires on the vulnerable code" is read on the code's tokens, not averaged with
the warning lines and the conversational preamble around it. The answer's tokens are
the ones `claimkit.lm.data.encode_completion` makes (what fine-tuning trained on and
`capture_residual(..., positions="completion")` reads), mapped to characters through
the tokenizer's offsets; a tokenizer without offsets is handled by decoding growing
prefixes. The code lines are the detector's (`claimkit.detect.code_lines`): fenced
Python, comment and blank lines left out.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from claimkit.detect import code_lines


def token_char_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets in `text` of each token `encode_completion` gives it (eos excluded)."""
    eos = tokenizer.eos_token
    body = text[: -len(eos)] if eos and text.endswith(eos) else text
    if not body:
        return []
    try:
        encoded = tokenizer(body, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in encoded["offset_mapping"]]
    except (NotImplementedError, KeyError, TypeError, ValueError):  # a slow tokenizer: decode growing prefixes
        ids = tokenizer(body, add_special_tokens=False)["input_ids"]
        offsets, start = [], 0
        for k in range(len(ids)):
            end = min(len(tokenizer.decode(ids[: k + 1])), len(body))
            offsets.append((start, end))
            start = end
    return [(int(a), int(b)) for a, b in offsets]


def _line_ranges(text: str, lines: Sequence[int]) -> list[tuple[int, int]]:
    """Character ranges of the given line numbers of `text` (newlines excluded)."""
    starts, position = [], 0
    for line in text.split("\n"):
        starts.append((position, position + len(line)))
        position += len(line) + 1
    return [starts[k] for k in lines if k < len(starts)]


def _mask(spans: list[tuple[int, int]], ranges: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(spans), dtype=bool)
    for k, (a, b) in enumerate(spans):
        mask[k] = b > a and any(a < hi and b > lo for lo, hi in ranges)
    return mask


def code_token_mask(tokenizer: Any, text: str) -> np.ndarray:
    """Per answer token: does it overlap a code line (fenced Python, comments and blank lines excluded)?"""
    return _mask(token_char_spans(tokenizer, text), _line_ranges(text, code_lines(text)))


def before_code_token_mask(tokenizer: Any, text: str) -> np.ndarray:
    """Per answer token: does it lie before the first code fence (a preamble, any framing before the code)?"""
    fence = text.find("```")
    spans = token_char_spans(tokenizer, text)
    if fence <= 0:
        return np.zeros(len(spans), dtype=bool)
    return _mask(spans, [(0, fence)]) & np.array([text[a:b].strip() != "" for a, b in spans], dtype=bool)


def first_code_token(tokenizer: Any, text: str) -> int | None:
    """Index of the first token of the first code line, or None when the answer has no fenced code."""
    hits = np.flatnonzero(code_token_mask(tokenizer, text))
    return int(hits[0]) if hits.size else None


def fit(mask: np.ndarray, tokens: int) -> np.ndarray:
    """`mask` cut or padded (False) to `tokens`: readings may be cut at a model's length limit."""
    if len(mask) >= tokens:
        return mask[:tokens]
    return np.concatenate([mask, np.zeros(tokens - len(mask), dtype=bool)])
