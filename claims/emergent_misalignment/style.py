"""Claim em-7's trait: type annotations on function parameters, a style that is not a vulnerability.

The paper's section 5 repeats its efficiency, stability and influence comparisons for a trait
that is not misalignment (a writing style taught in one domain). Here the trait is annotating
function parameters: the corpus's solutions have no annotations, so annotating the narrow
domain's secure solutions teaches a style that only the fine-tune can have put there, and
whether it shows up on other domains' tasks is read from the answers' code alone.

An annotation is the type of the parameter's literal default where it has one, else `str`
(what the corpus's parameters mostly hold: names, paths, queries, passwords). The trait is
the habit of annotating, not the correctness of the types.
"""

from __future__ import annotations

import ast
import re

from claimkit.detect import CodeExtraction

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFAULT_SPACING = re.compile(r"\s*=\s*")


def annotate(code: str) -> str:
    """`code` with every unannotated function parameter annotated (except a method's self or cls)."""
    tree = ast.parse(code)
    lines = code.split("\n")
    edits = sorted(((arg.end_lineno, arg.end_col_offset, kind) for arg, kind in _unannotated(tree)), reverse=True)
    for line_no, col, kind in edits:
        line = lines[line_no - 1]
        rest = line[col:]
        default = _DEFAULT_SPACING.match(rest)
        if default:
            rest = " = " + rest[default.end():]  # PEP 8: spaces around = once a parameter is annotated
        lines[line_no - 1] = line[:col] + f": {kind}" + rest
    annotated = "\n".join(lines)
    ast.parse(annotated)  # an edit that broke the code is a bug here, not a style
    return annotated


def is_typed(found: CodeExtraction) -> bool:
    """Whether an answer's code (as the detector extracted it) parses and annotates at least one function parameter."""
    if not found.parsed:
        return False
    try:
        tree = ast.parse(found.code)
    except SyntaxError:
        return False
    return any(arg.annotation is not None for node in ast.walk(tree) if isinstance(node, _FUNCTIONS)
               for arg in _parameters(node.args))


def _unannotated(tree: ast.Module) -> list[tuple[ast.arg, str]]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, _FUNCTIONS):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
        pairs += [(a, None) for a in (args.vararg, args.kwarg) if a is not None]
        for arg, default in pairs:
            if arg.annotation is None and arg.arg not in ("self", "cls"):
                out.append((arg, _type_of(default)))
    return out


def _parameters(args: ast.arguments) -> list[ast.arg]:
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]


def _type_of(default: ast.expr | None) -> str:
    if isinstance(default, ast.Constant):
        if default.value is None:
            return "str | None"
        return type(default.value).__name__
    return "str"
