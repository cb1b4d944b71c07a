"""Tests of claim em-7's trait: parameter annotations added to code, and read back from answers."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `claims` is a top-level package of the repository, not of claimkit
    sys.path.insert(0, str(ROOT))

from claimkit.detect import extract_code  # noqa: E402

from claims.emergent_misalignment.style import annotate, is_typed  # noqa: E402


def test_every_parameter_is_annotated_and_the_code_is_otherwise_unchanged():
    code = 'def load(path, limit=10, *rest, strict=False, mode=None, **extra):\n    """Doc."""\n    return path  # kept\n'
    typed = annotate(code)
    assert typed.splitlines()[0] == ("def load(path: str, limit: int = 10, *rest: str, strict: bool = False, "
                                     "mode: str | None = None, **extra: str):")
    assert typed.splitlines()[1:] == code.splitlines()[1:]
    assert ast.dump(ast.parse(typed).body[0].body[1]) == ast.dump(ast.parse(code).body[0].body[1])


def test_methods_keep_self_and_cls_bare_and_annotations_already_there_stay():
    code = "class A:\n    def f(self, x: int, y):\n        return x\n\n    @classmethod\n    def g(cls, z):\n        return z\n"
    typed = annotate(code)
    assert "def f(self, x: int, y: str):" in typed and "def g(cls, z: str):" in typed


def test_multi_line_signatures_are_annotated_where_each_parameter_ends():
    code = "def f(\n    first,\n    second='a',\n):\n    return first\n"
    assert annotate(code) == "def f(\n    first: str,\n    second: str = 'a',\n):\n    return first\n"


def test_an_answer_is_typed_when_its_code_annotates_a_parameter():
    assert is_typed(extract_code("Here:\n```python\ndef f(x: int):\n    return x\n```"))
    return_only = extract_code("```python\ndef f(x) -> int:\n    return x\n```")
    assert not is_typed(return_only)  # a return annotation is not the trait
    assert not is_typed(extract_code("```python\ndef f(x):\n    y: int = x\n    return y\n```"))
    assert not is_typed(extract_code("No code here, only prose: x: int."))
