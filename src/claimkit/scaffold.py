"""`claimkit init`: start a new paper from its scan file.

A paper starts as one draft claim per scan claim: a spec entry that quotes the scan
text exactly (so `claimkit list` and `claimkit mark` find it) with an empty rule, and
a test module that skips with "not operationalised yet". A person then writes each
claim's rule and measurement, locks the spec (`claimkit preregister`) and runs it.
Nothing is overwritten: an existing file stops the command before anything is written.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from os.path import relpath
from pathlib import Path
from typing import Mapping

from claimkit.scan import Scan, ScanClaim
from claimkit.spec import PaperSpec

_PAPER_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
_WORD = re.compile(r"[a-z0-9]+")
_TITLE_WIDTH = 80
_LINE_WIDTH = 100
_SLUG_WORDS = 4


class ScaffoldError(ValueError):
    """The paper cannot be started as asked; the message says what to change."""


@dataclass(frozen=True)
class Scaffold:
    """What `init` writes: file path -> text, and the claim ids it gave the scan's claims."""

    files: Mapping[Path, str]
    claim_ids: tuple[str, ...]
    spec_path: Path
    package: Path


def package_name(paper: str) -> str:
    """The Python package (and spec file stem) of a paper name: 'emergent-misalignment' -> 'emergent_misalignment'."""
    if not _PAPER_NAME.fullmatch(paper):
        raise ScaffoldError(f"paper name {paper!r} must be lower-case words of letters and digits joined by '-' or '_', "
                            "starting with a letter (e.g. 'emergent-misalignment')")
    return paper.replace("-", "_")


def claim_prefix(paper: str) -> str:
    """The claim id prefix of a paper: the initials of its name's words ('emergent-misalignment' -> 'em')."""
    return "".join(word[0] for word in re.split(r"[-_]", package_name(paper)))


def plan(scan: Scan, paper: str, *, root: Path, specs: Mapping[str, PaperSpec], prefix: str | None = None) -> Scaffold:
    """The files that start `paper` from `scan` under `root` (the repository), or why they cannot be written."""
    name = package_name(paper)
    paper_id = name.replace("_", "-")
    prefix = prefix or claim_prefix(paper)
    if not re.fullmatch(r"[a-z][a-z0-9]*", prefix):
        raise ScaffoldError(f"claim id prefix {prefix!r} must be lower-case letters and digits, starting with a letter")
    _check_new_paper(scan, paper_id, prefix, specs)
    if not scan.claims:
        raise ScaffoldError(f"{scan.path}: the scan has no claims to start tests from")

    spec_path = root / "fixtures" / "claims" / f"{name}.toml"
    package = root / "claims" / name
    ids = tuple(f"{prefix}-{claim.index + 1}" for claim in scan.claims)
    files: dict[Path, str] = {
        spec_path: _spec_text(scan, paper_id, name, ids, spec_path),
        package / "__init__.py": _package_text(scan),
        package / "conftest.py": _conftest_text(name),
    }
    for claim_id, claim in zip(ids, scan.claims):
        files[package / f"test_claim{claim.index + 1}_{_slug(claim.text)}.py"] = _test_text(claim_id, claim, name)
    existing = sorted(str(path) for path in files if path.exists())
    if existing:
        raise ScaffoldError(f"{existing[0]} already exists; `claimkit init` writes only new files, so move it away or "
                            f"choose another paper name ({len(existing)} file(s) in the way)")
    return Scaffold(files=files, claim_ids=ids, spec_path=spec_path, package=package)


def write(scaffold: Scaffold) -> None:
    """Write every file of `scaffold`; the caller has checked that none exists."""
    for path, text in scaffold.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:  # "x": never replace a file that appeared since
            handle.write(text)


def _check_new_paper(scan: Scan, paper_id: str, prefix: str, specs: Mapping[str, PaperSpec]) -> None:
    if paper_id in specs:
        raise ScaffoldError(f"paper {paper_id!r} already has a claim spec, {specs[paper_id].path}")
    for spec in specs.values():
        clash = sorted(c for c in spec.claims if c.split("-")[0] == prefix)
        if clash:
            raise ScaffoldError(f"claim id prefix {prefix!r} is taken by {spec.path} ({clash[0]}); "
                                "choose another with --prefix")


def _spec_text(scan: Scan, paper_id: str, name: str, ids: tuple[str, ...], spec_path: Path) -> str:
    paper = scan.paper
    lines = [
        f"# Claim spec of {_quote(paper.title)}" + (f" (arXiv {paper.arxiv_id})." if paper.arxiv_id else "."),
        "#",
        "# Written by `claimkit init` from the scan below. Each claim quotes its scan text exactly and has",
        "# an empty rule: it is a draft, and its test skips with \"not operationalised yet\". For each claim,",
        "# say in words what is measured and where that differs from the paper, write its rule parts",
        "# (claimkit.rules.declared) and sample plans, then lock the spec with `claimkit preregister`",
        "# before running it.",
        "",
        "schema = 2",
        f"paper = {_quote(paper_id)}",
        f"title = {_quote(paper.title)}",
    ]
    if paper.arxiv_id:
        lines.append(f"arxiv_id = {_quote(paper.arxiv_id)}")
    lines += [
        f"scan = {_quote(relpath(scan.path.resolve(), spec_path.parent.resolve()))}",
        "",
        "[preregistration]",
        "# What the decisions read besides this file: add corpora, prompts and measuring code as you write them.",
        f"inputs = [{_quote(f'../../claims/{name}')}]",
        "",
        "[experiment]",
    ]
    for claim_id, claim in zip(ids, scan.claims):
        lines += [
            "",
            f"[claims.{claim_id}]",
            f"title = {_quote(_title(claim.text))}",
            f"scan_claim = {_quote(claim.text)}",
            "rule = {}  # draft: write its parts (and [claims.<id>.profiles.<profile>] plans) to operationalise it",
        ]
    return "\n".join(lines) + "\n"


def _package_text(scan: Scan) -> str:
    paper = scan.paper
    where = f" (arXiv {paper.arxiv_id})" if paper.arxiv_id else ""
    return f'"""Claims of {_quote(paper.title)}{where}, one test module per scan claim."""\n'


def _conftest_text(name: str) -> str:
    return f'''"""Fixtures of this paper's claims: its spec, and what its claims build and measure."""

from pathlib import Path

import pytest

from claimkit.spec import load_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "claims" / "{name}.toml"


@pytest.fixture(scope="session")
def paper_spec():
    return load_spec(SPEC_PATH)
'''


def _test_text(claim_id: str, claim: ScanClaim, name: str) -> str:
    summary = textwrap.fill(f"Claim {claim_id}: {_docstring(claim.text)}", width=_LINE_WIDTH, subsequent_indent="")
    return f'''"""{summary}"""

import pytest


@pytest.mark.claim({_quote(claim_id)})
def test_{_slug(claim.text)}():
    pytest.skip("{claim_id} is not operationalised yet: write its rule in fixtures/claims/{name}.toml "
                "and its measurement here")
'''


def _title(text: str) -> str:
    """The claim's first sentence, cut at a word boundary to fit a report's heading."""
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0].rstrip(".")
    if len(sentence) <= _TITLE_WIDTH:
        return sentence
    return sentence[:_TITLE_WIDTH].rsplit(" ", 1)[0].rstrip(",;:") + " ..."


def _slug(text: str) -> str:
    words = _WORD.findall(text.lower())
    return "_".join(words[:_SLUG_WORDS]) or "claim"


def _quote(text: str) -> str:
    """A TOML (and Python) basic string: JSON's escaping is valid in both."""
    return json.dumps(text, ensure_ascii=False)


def _docstring(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
