"""claimkit.mark: verdicts written into scans without disturbing anything else, atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import claimkit.mark as mark_module
from claimkit.mark import SUPPORTED_FROM_OUTCOME, MarkError, mark_scan
from claimkit.scan import ScanError, load_scan, parse_scan
from claimkit.spec import load_specs
from claimkit.verdict import Estimate, Evidence, Outcome, StatTest, Verdict

ROOT = Path(__file__).resolve().parent.parent
V2 = ROOT / "fixtures" / "scans" / "scan-v2.warning-framed.json"
V4 = ROOT / "fixtures" / "scans" / "scan-v4.emergent-misalignment.json"
WF_SPECS = ROOT / "fixtures" / "claims"
V4_CLAIMS = [c["claim"] for c in json.loads(V4.read_bytes())["claims"]]
T1 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def make_verdict(spec, claim_id, outcome=Outcome.SUPPORTED, *, profile="organism", model="organism-v1",
                 spec_hash=None, rate=0.77) -> Verdict:
    claim = spec.claims[claim_id]
    top = spec.claims[claim.parent] if claim.parent else claim
    return Verdict(
        claim_id=claim_id, paper=spec.paper, scan_claim=top.scan_claim, profile=profile, model=model,
        outcome=outcome, reason=f"{claim_id} decided",
        evidence=Evidence(
            estimates=(Estimate("L1_rate", rate, 0.70, 0.83, "clopper-pearson", 200, round(200 * rate)),),
            tests=(StatTest("tost", 0.012, 2.3, 0.024, "statsmodels", "two-sided"),),
            paper_values={"L1": 0.767},
        ),
        rule={"alpha": 0.05}, spec_hash=spec_hash or spec.hash, seeds=(0, 1), n=400, parent=claim.parent,
        nodeid=f"claims/test.py::{claim_id}", created="2026-02-28T10:00:00+00:00", claimkit_version="0.1.0",
    )


def write_report(path: Path, verdicts, created="2026-02-28T10:00:00+00:00") -> Path:
    path.write_text(json.dumps({
        "schema": 1, "run_id": "run-1", "created": created, "claimkit_version": "0.1.0",
        "command": "pytest claims/", "profiles": sorted({v.profile for v in verdicts}),
        "verdicts": [v.to_dict() for v in verdicts],
    }, indent=2))
    return path


@pytest.fixture
def v2(tmp_path):
    """A copy of the v2 seed, the paper's spec, and a report with every claim decided."""
    scan = tmp_path / "scan-v2.json"
    shutil.copy(V2, scan)
    spec = load_specs(WF_SPECS)["warning-framed"]
    outcomes = {"wf-1": Outcome.SUPPORTED, "wf-2": Outcome.REFUTED, "wf-3": Outcome.INCONCLUSIVE,
                "wf-4": Outcome.SUPPORTED, "wf-5": Outcome.REFUTED}
    verdicts = [make_verdict(spec, cid, out) for cid, out in outcomes.items()]
    verdicts += [make_verdict(spec, "wf-1.ordering", Outcome.REFUTED), make_verdict(spec, "wf-1.control")]
    report = write_report(tmp_path / "verdicts.json", verdicts)
    return scan, spec, report


@pytest.fixture
def v4(tmp_path):
    """A copy of the v4 seed and a tiny spec of that paper quoting two of its claims."""
    scan = tmp_path / "scan-v4.json"
    shutil.copy(V4, scan)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "em.toml").write_text(
        'schema = 1\npaper = "emergent-misalignment"\n'
        'title = "Emergent Misalignment is Easy, Narrow Misalignment is Hard"\narxiv_id = "2602.07852"\n'
        f"[claims.em-2]\ntitle = \"KL needed\"\nscan_claim = {json.dumps(V4_CLAIMS[1])}\n"
        "[claims.em-2.rule]\nalpha = 0.05\n"
        # quoted with a plain dash and different case: must still match claim 6
        f"[claims.em-6]\ntitle = \"convergence\"\nscan_claim = {json.dumps(V4_CLAIMS[5].upper())}\n"
        "[claims.em-6.rule]\nalpha = 0.05\n"
        '[claims."em-6.pca"]\nparent = "em-6"\ntitle = "visible in PCA"\n[claims."em-6.pca".rule]\nalpha = 0.05\n',
        encoding="utf-8",
    )
    spec = load_specs(specs)["emergent-misalignment"]
    verdicts = [make_verdict(spec, "em-2"), make_verdict(spec, "em-6", Outcome.REFUTED),
                make_verdict(spec, "em-6.pca", Outcome.INCONCLUSIVE)]
    report = write_report(tmp_path / "em-verdicts.json", verdicts)
    return scan, specs, spec, report


def drop_verification(raw):
    for claim in raw["claims"]:
        claim.pop("verification", None)
    return raw


# -- marking ------------------------------------------------------------------------


def test_marking_v2_writes_one_record_per_claim_with_sub_claims_inside(v2):
    scan_path, spec, report = v2
    result = mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    scan = load_scan(scan_path)
    assert result.changed and result.skipped == []
    assert result.marked == [c.id for c in scan.claims]
    records = [c.raw["verification"]["records"] for c in scan.claims]
    assert [len(r) for r in records] == [1] * 5
    assert [r[0]["verdict"] for r in records] == ["supported", "refuted", "inconclusive", "supported", "refuted"]
    first = records[0][0]
    assert list(first) == ["verdict", "profile", "model", "reason", "estimates", "tests", "n", "seeds", "date",
                           "claimkit_version", "spec_hash", "report", "claim_id", "sub_claims", "marked"]
    assert first["estimates"] == [{"name": "L1_rate", "value": 0.77, "low": 0.70, "high": 0.83, "n": 200,
                                   "successes": 154}]
    assert first["tests"] == [{"name": "tost", "p": 0.012, "p_adjusted": 0.024}]
    assert (first["n"], first["seeds"], first["claim_id"]) == (400, [0, 1], "wf-1")
    assert first["date"] == "2026-02-28T10:00:00+00:00" and first["marked"] == "2026-03-01T12:00:00+00:00"
    assert first["spec_hash"] == spec.hash and first["report"] == str(report)
    assert [s["claim_id"] for s in first["sub_claims"]] == ["wf-1.control", "wf-1.ordering"]
    assert [s["verdict"] for s in first["sub_claims"]] == ["supported", "refuted"]
    assert all(r[0]["sub_claims"] == [] for r in records[1:])
    assert [c.supported for c in scan.claims] == ["moderate"] * 4 + ["weak"]  # reviewer's field untouched



def test_a_record_carries_preregistration_and_provenance_essentials_and_stays_idempotent(v2, tmp_path):
    import dataclasses

    scan_path, spec, _ = v2
    provenance = {"commit": "c" * 40, "dirty": True, "diff_hash": "sha256:d1ff", "claimkit_source": "sha256:k",
                  "claim_code": "sha256:cc", "claim_dir": "claims/warning_framed", "command": "pytest claims/",
                  "versions": {"python": "3.11.7", "torch": "2.13.0", "sae-lens": None},
                  "device": {"cpu": "Xeon", "cpu_count": 2, "platform": "Linux", "gpu": {
                      "name": "NVIDIA H100", "count": 1, "cuda": "12.4", "driver": "550"}}}
    unlocked = {"status": "not preregistered", "lock": "fixtures/claims/warning_framed.lock.json",
                "locked_at": None, "differs": ["no lock file"]}

    def decided(claim_id, outcome=Outcome.SUPPORTED):
        return dataclasses.replace(make_verdict(spec, claim_id, outcome), claim_hash=spec.claims[claim_id].hash,
                                   preregistration=unlocked, provenance=provenance)

    report = write_report(tmp_path / "prov.json", [decided("wf-1"), decided("wf-1.control", Outcome.REFUTED)])
    assert mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1).changed
    record = load_scan(scan_path).claims[0].raw["verification"]["records"][0]
    keys = list(record)
    assert keys[keys.index("spec_hash"):keys.index("report")] == ["spec_hash", "claim_hash", "preregistration",
                                                                    "provenance"]
    assert record["claim_hash"] == spec.claims["wf-1"].hash and record["preregistration"] == unlocked
    assert record["provenance"] == {
        "commit": "c" * 40, "dirty": True, "diff_hash": "sha256:d1ff", "claimkit_source": "sha256:k",
        "claim_code": "sha256:cc", "device": "NVIDIA H100 (driver 550, CUDA 12.4)",
        "versions": {"python": "3.11.7", "torch": "2.13.0"},
    }
    assert record["sub_claims"][0]["preregistration"]["status"] == "not preregistered"
    once = scan_path.read_bytes()
    assert not mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T2).changed
    assert scan_path.read_bytes() == once

@pytest.mark.parametrize("which", ["v2", "v4"])
def test_dropping_verification_gives_back_the_original_object_and_bytes(which, request):
    setup = request.getfixturevalue(which)
    scan_path, report = setup[0], setup[-1]
    specs = WF_SPECS if which == "v2" else setup[1]
    original = scan_path.read_bytes()
    assert mark_scan(scan_path, report, specs_dir=specs, now=T1).changed
    marked = load_scan(scan_path)
    assert marked.style == load_scan(V2 if which == "v2" else V4).style
    raw = drop_verification(json.loads(scan_path.read_bytes()))
    assert raw == json.loads(original)
    assert marked.style.encode(raw) == original
    # only "verification" was added, at the end of each claim it touched
    for before, after in zip(json.loads(original)["claims"], marked.raw["claims"]):
        assert list(after)[: len(before)] == list(before)


def test_v4_claims_match_through_normalisation_and_sub_claims_nest(v4):
    scan_path, specs, spec, report = v4
    result = mark_scan(scan_path, report, specs_dir=specs, now=T1)
    scan = load_scan(scan_path)
    assert result.marked == [scan.claims[1].id, scan.claims[5].id]
    assert [i for i, c in enumerate(scan.claims) if c.verification] == [1, 5]
    record = scan.claims[5].raw["verification"]["records"][0]
    assert record["verdict"] == "refuted" and record["sub_claims"][0]["claim_id"] == "em-6.pca"


def test_second_mark_is_a_byte_identical_no_op(v2):
    scan_path, _, report = v2
    assert mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1).changed
    once = scan_path.read_bytes()
    mtime = os.stat(scan_path).st_mtime_ns
    again = mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T2)
    assert not again.changed and len(again.marked) == 5
    assert scan_path.read_bytes() == once and os.stat(scan_path).st_mtime_ns == mtime


def test_same_profile_and_model_replaces_other_models_are_kept(v2, tmp_path):
    scan_path, spec, report = v2
    mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    gpu = write_report(tmp_path / "gpu.json", [make_verdict(spec, "wf-1", Outcome.REFUTED, profile="paper",
                                                            model="meta-llama/Llama-3.2-3B")])
    assert mark_scan(scan_path, gpu, specs_dir=WF_SPECS, now=T2).changed
    records = load_scan(scan_path).claims[0].raw["verification"]["records"]
    assert [(r["profile"], r["verdict"]) for r in records] == [("organism", "supported"), ("paper", "refuted")]
    assert records[0]["marked"] == T1.isoformat()  # the untouched record keeps its stamp

    rerun = write_report(tmp_path / "rerun.json", [make_verdict(spec, "wf-1", Outcome.INCONCLUSIVE, rate=0.6)],
                         created="2026-03-05T00:00:00+00:00")
    mark_scan(scan_path, rerun, specs_dir=WF_SPECS, now=T2)
    records = load_scan(scan_path).claims[0].raw["verification"]["records"]
    assert [(r["profile"], r["verdict"]) for r in records] == [("organism", "inconclusive"), ("paper", "refuted")]
    assert records[0]["date"] == "2026-03-05T00:00:00+00:00" and records[0]["marked"] == T2.isoformat()
    assert records[0]["sub_claims"] == []  # the new report had none
    assert records[0]["estimates"][0]["value"] == 0.6


def test_update_supported_follows_the_documented_mapping(v2, tmp_path):
    scan_path, spec, report = v2
    assert SUPPORTED_FROM_OUTCOME == {"supported": "strong", "refuted": "refuted", "inconclusive": None, "not tested": None}
    mark_scan(scan_path, report, specs_dir=WF_SPECS, update_supported=True, now=T1)
    # wf-1 supported, wf-2 refuted, wf-3 inconclusive (reviewer's value stays), wf-4 supported, wf-5 refuted
    assert [c.supported for c in load_scan(scan_path).claims] == ["strong", "refuted", "moderate", "strong", "refuted"]
    # a second model that disagrees: the records conflict, so the field stays as it was
    other = write_report(tmp_path / "other.json", [make_verdict(spec, "wf-4", Outcome.REFUTED, model="other")])
    mark_scan(scan_path, other, specs_dir=WF_SPECS, update_supported=True, now=T2)
    assert load_scan(scan_path).claims[3].supported == "strong"


def test_update_supported_is_off_by_default_and_then_idempotent(v2):
    scan_path, _, report = v2
    mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    assert load_scan(scan_path).claims[0].supported == "moderate"
    assert mark_scan(scan_path, report, specs_dir=WF_SPECS, update_supported=True, now=T1).changed
    once = scan_path.read_bytes()
    assert not mark_scan(scan_path, report, specs_dir=WF_SPECS, update_supported=True, now=T2).changed
    assert scan_path.read_bytes() == once


def test_claims_that_cannot_be_placed_are_skipped_with_the_reason(v4, tmp_path):
    scan_path, specs, spec, _ = v4
    toml = (specs / "em.toml").read_text()
    (specs / "em.toml").write_text(
        toml + '[claims.em-9]\ntitle = "absent"\nscan_claim = "Misalignment is hard."\n[claims.em-9.rule]\nalpha = 0.05\n'
    )
    spec = load_specs(specs)["emergent-misalignment"]
    report = write_report(tmp_path / "r.json", [
        make_verdict(spec, "em-2"), make_verdict(spec, "em-9"), make_verdict(spec, "em-6.pca"),
    ])
    result = mark_scan(scan_path, report, specs_dir=specs, now=T1)
    reasons = dict(result.skipped)
    assert set(reasons) == {"em-9", "em-6.pca"}
    assert "no scan claim matches" in reasons["em-9"] and "claims[" in reasons["em-9"]
    assert "its parent 'em-6' has no verdict in this report" in reasons["em-6.pca"]
    assert result.changed and len(result.marked) == 1


# -- refusals (the file is untouched) -------------------------------------------------


def assert_refused(scan_path, report, specs, match):
    before = scan_path.read_bytes()
    files = sorted(os.listdir(scan_path.parent))
    with pytest.raises(MarkError, match=match):
        mark_scan(scan_path, report, specs_dir=specs, now=T1)
    assert scan_path.read_bytes() == before and sorted(os.listdir(scan_path.parent)) == files


def test_a_report_decided_under_another_spec_is_refused(v2, tmp_path):
    scan_path, spec, _ = v2
    stale = write_report(tmp_path / "stale.json",
                         [make_verdict(spec, "wf-1"), make_verdict(spec, "wf-2", spec_hash="sha256:old")])
    assert_refused(scan_path, stale, WF_SPECS, r"verdicts of wf-2 were decided under another claim spec \(sha256:old\)")


def test_a_report_about_another_paper_is_refused(v2, v4, tmp_path):
    v2_scan, wf_spec, v2_report = v2
    v4_scan, em_specs, _, v4_report = v4
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(WF_SPECS / "warning_framed.toml", both)
    shutil.copy(em_specs / "em.toml", both)
    assert_refused(v4_scan, v2_report, both, r"the report is about another paper: it has verdicts for 'warning-framed'")
    assert_refused(v2_scan, v4_report, both, r"scan of 'Learning from Negative Examples.*\(arXiv 2512\.22293\)")
    # the scan's paper has no spec at all
    first_only = tmp_path / "first-only"
    first_only.mkdir()
    shutil.copy(WF_SPECS / "warning_framed.toml", first_only)
    assert_refused(v4_scan, v2_report, first_only, r"no claim spec in .* is about this scan's paper")


def test_a_report_with_no_verdicts_is_refused(v2, tmp_path):
    scan_path, _, _ = v2
    assert_refused(scan_path, write_report(tmp_path / "empty.json", []), WF_SPECS, "the report has no verdicts")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 1, "created": "x", "verdicts": [')
    assert_refused(scan_path, bad, WF_SPECS, "not a readable JSON report")
    bad.write_text('{"schema": 2}')
    assert_refused(scan_path, bad, WF_SPECS, "field 'schema' must be 1")


def test_a_malformed_existing_verification_is_refused(v2):
    scan_path, _, report = v2
    raw = json.loads(scan_path.read_bytes())
    raw["claims"][0]["verification"] = {"records": "yes"}
    scan_path.write_text(json.dumps(raw, indent=2, ensure_ascii=False))
    assert_refused(scan_path, report, WF_SPECS, r"claims\[0\]\.verification: expected an object with a 'records' list")


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(V4.read_bytes()) - 1))
def test_a_truncated_scan_is_an_error_and_stays_as_it_was(cut):
    spec = load_specs(WF_SPECS)["warning-framed"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in (V2, V4):
            data = seed.read_bytes()[: cut % len(seed.read_bytes())]
            scan_path = tmp / "scan.json"
            scan_path.write_bytes(data)
            report = write_report(tmp / "r.json", [make_verdict(spec, "wf-1")])
            with pytest.raises(ScanError, match=r"scan\.json: not (valid JSON at line \d+, column \d+|UTF-8 text)"):
                mark_scan(scan_path, report, specs_dir=WF_SPECS)
            assert scan_path.read_bytes() == data
            assert sorted(os.listdir(tmp)) == ["r.json", "scan.json"]


# -- atomic writing ---------------------------------------------------------------------


def test_a_failure_while_replacing_leaves_the_original_and_no_temp_file(v2, monkeypatch):
    scan_path, _, report = v2
    before = scan_path.read_bytes()
    files = sorted(os.listdir(scan_path.parent))

    def broken_replace(src, dst):
        assert Path(src).parent == Path(dst).parent  # the temp file sits beside the scan
        assert parse_scan(Path(src).read_bytes()).claims[0].verification  # and holds the whole new scan
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mark_module.os, "replace", broken_replace)
    with pytest.raises(MarkError, match="could not write the marked scan .*No space left.*the file is unchanged"):
        mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    assert scan_path.read_bytes() == before
    assert sorted(os.listdir(scan_path.parent)) == files


def test_a_failure_while_writing_the_temp_file_leaves_nothing_behind(v2, monkeypatch):
    scan_path, _, report = v2
    before = scan_path.read_bytes()
    files = sorted(os.listdir(scan_path.parent))
    monkeypatch.setattr(mark_module.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(MarkError, match="I/O error"):
        mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    assert scan_path.read_bytes() == before and sorted(os.listdir(scan_path.parent)) == files


def test_a_scan_changed_by_someone_else_meanwhile_is_not_overwritten(v2, monkeypatch):
    scan_path, _, report = v2
    edited = scan_path.read_bytes().replace(b'"weak"', b'"moderate"')

    def parse_then_edit(data, path):
        scan = parse_scan(data, path)
        Path(path).write_bytes(edited)
        return scan

    monkeypatch.setattr(mark_module, "parse_scan", parse_then_edit)
    with pytest.raises(MarkError, match="the scan changed while it was being marked"):
        mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    assert scan_path.read_bytes() == edited
    assert not [n for n in os.listdir(scan_path.parent) if n.endswith(".tmp")]


def test_file_mode_and_escaped_unicode_style_are_kept(v2, tmp_path):
    scan_path, _, report = v2
    raw = json.loads(V2.read_bytes())
    scan_path.write_text(json.dumps(raw, indent="\t", ensure_ascii=True) + "\n")
    os.chmod(scan_path, 0o640)
    original = scan_path.read_bytes()
    mark_scan(scan_path, report, specs_dir=WF_SPECS, now=T1)
    data = scan_path.read_bytes()
    assert os.stat(scan_path).st_mode & 0o777 == 0o640
    assert data.isascii() and data.endswith(b"}\n") and b'\n\t"paper"' in data
    style = load_scan(scan_path).style
    assert style.encode(drop_verification(json.loads(data))) == original
