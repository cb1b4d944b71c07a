"""JSON lines survive texts with the line separators str.splitlines splits on (a SmolLM2 generation had one)."""

from __future__ import annotations

from claimkit.jsonl import dump_lines, load_lines, read_jsonl, write_jsonl
from claimkit.report.history import read_history

SEPARATORS = "\u2028 \u2029 \x85 \x1c \x1d \x1e \x0b \x0c \r"


def test_rows_whose_texts_hold_line_separators_read_back_whole(tmp_path):
    rows = [{"task": "t", "text": f"before{SEPARATORS}after"}, {"task": "u", "text": "plain"}]
    write_jsonl(tmp_path / "s.jsonl", rows)
    assert read_jsonl(tmp_path / "s.jsonl") == rows
    assert len(load_lines(dump_lines(rows))) == 2


def test_history_keeps_a_row_with_a_line_separator_and_skips_a_torn_last_line(tmp_path):
    (tmp_path / "history.jsonl").write_text(dump_lines([{"claim": "x-1", "reason": "a\u2028b"}]) + '{"claim": "x-',
                                            encoding="utf-8")
    assert read_history(tmp_path) == [{"claim": "x-1", "reason": "a\u2028b"}]
