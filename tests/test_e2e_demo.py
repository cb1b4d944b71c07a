"""The end-to-end demo: claim tests decide from counts with the real spec of paper A,
the run writes every report file, and `claimkit mark` writes the verdicts into a copy
of the v2 seed scan; marking again with the same report changes no byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from claimkit.cli import main

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SCAN = "scan-v2.warning-framed.json"

# Outcomes a claim run might have measured (organism plan: 3 seeds x 200 tasks), and a passed
# manipulation check. They are inputs of the demo, not results: the spec's declared rules decide
# from them as they would from generated samples.
CLAIM_TESTS = '''
import numpy as np
import pytest
from claimkit.rules.declared import ClaimData, decide_rule
from claimkit.verdict import CheckResult


def table(per_seed_hits, n=200):
    out = np.zeros((len(per_seed_hits), n))
    for s, hits in enumerate(per_seed_hits):
        out[s, :hits] = 1
    return out


DATA = ClaimData(tables={
    "target": {"L0": table([166, 168, 164]), "L1": table([156, 154, 158]), "filler": table([20, 22, 18])},
    "format_leak": {"L1": table([199, 200, 198])},
})
CHECKS = {"direct-learns": CheckResult("direct-learns", "Direct training teaches", True, "L0 - filler = +74 pp")}


@pytest.mark.claim("wf-1")
def test_warning_framed_matches_direct(claim, profile):
    claim.require_checks(CHECKS)
    claim.model = "organism-demo"
    claim.decide(decide_rule(claim.rule, DATA))


@pytest.mark.claim("wf-1.format-leak")
def test_warning_format_leaks(claim, profile):
    claim.require_checks(CHECKS)
    claim.model = "organism-demo"
    claim.decide(decide_rule(claim.rule, DATA))
'''


@pytest.fixture
def demo(pytester, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "mpl"))
    fixtures = pytester.path / "fixtures"
    shutil.copytree(ROOT / "fixtures" / "claims", fixtures / "claims")
    shutil.copytree(ROOT / "fixtures" / "scans", fixtures / "scans")  # the spec names its scan relative to itself
    (fixtures / "profiles").mkdir()
    (fixtures / "profiles" / "organism.toml").write_text("needs_gpu = false\n")
    pytester.makeini(
        """
        [pytest]
        claimkit_specs = fixtures/claims
        claimkit_profiles_dir = fixtures/profiles
        claimkit_report_dir = reports
        """
    )
    pytester.makepyfile(test_warning_framed=CLAIM_TESTS)
    return pytester


def test_claims_to_reports_to_marked_scan(demo, capsys):
    result = demo.runpytest("--claimkit-fail-on=never")
    result.assert_outcomes(passed=2)
    assert result.ret == 0

    reports = demo.path / "reports"
    run_dir = (reports / "latest").resolve()
    for name in ("verdicts.json", "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    assert (reports / "history.jsonl").read_text().count("\n") == 2
    document = json.loads((reports / "latest.json").read_text())
    scan_text = json.loads((ROOT / "fixtures" / "scans" / SCAN).read_text())["claims"][0]["claim"]
    assert {v["claim_id"]: (v["outcome"], v["scan_claim"]) for v in document["verdicts"]} == {
        "wf-1": ("supported", scan_text),
        "wf-1.format-leak": ("supported", scan_text),
    }

    scan = demo.path / "marked" / SCAN
    scan.parent.mkdir()
    shutil.copy(ROOT / "fixtures" / "scans" / SCAN, scan)
    before = json.loads(scan.read_text())
    args = ["mark", str(scan), "--report", str(reports / "latest.json"), "--specs", str(demo.path / "fixtures" / "claims")]
    assert main(args) == 0
    marked_bytes = scan.read_bytes()
    after = json.loads(marked_bytes)

    # only the matched claim changed, and it now records the verdict and its spec hash
    assert {k: v for k, v in after.items() if k != "claims"} == {k: v for k, v in before.items() if k != "claims"}
    assert after["claims"][1:] == before["claims"][1:]
    assert after["claims"][0] != before["claims"][0]
    wf1 = document["verdicts"][0]
    recorded = json.dumps(after["claims"][0])
    assert wf1["spec_hash"] in recorded and "supported" in recorded

    assert main(args) == 0  # the same report again: a no-op
    assert scan.read_bytes() == marked_bytes

    # `claimkit list` shows the verdict from the report, and from the marked scan's own records
    specs = str(demo.path / "fixtures" / "claims")
    capsys.readouterr()
    assert main(["list", str(scan), "--report", str(reports / "latest"), "--specs", specs]) == 0
    from_report = capsys.readouterr().out
    assert main(["list", str(scan), "--specs", specs]) == 0
    from_scan = capsys.readouterr().out
    for listing in (from_report, from_scan):
        assert "tests: wf-1, wf-1.format-leak, wf-1.ordering, wf-1.control" in listing
        assert "SUPPORTED    wf-1 [organism, organism-demo]" in listing
