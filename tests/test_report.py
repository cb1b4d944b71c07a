"""Reports: verdicts.json schema, md/html, plots, history, latest, compare()."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from claimkit.report import (
    HISTORY_FILE,
    LATEST_JSON,
    SCHEMA,
    ReportError,
    compare,
    drifts,
    load_document,
    new_run_id,
    read_history,
    render_run,
    resolve_run_dir,
    resolve_verdicts_file,
    write_run,
)
from claimkit.report.notes import NOTES_FILE, NotesError, apply_notes, load_notes, unused_notes
from claimkit.report.plots import extra_figure, is_rate, PlotSpecError, rates_figure, verdict_plots
from claimkit.verdict import Decision, Estimate, Evidence, Outcome, StatTest, Verdict

SCAN_TEXT = "Warning-framed training produces target content at rates statistically indistinguishable (76.7% vs 83.3%)."


@pytest.fixture(autouse=True)
def _matplotlib_config(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "mpl"))


def make_verdict(claim_id="c-1", outcome=Outcome.SUPPORTED, profile="organism", model="m-1",
                 spec_hash="sha256:aaa", extra=None) -> Verdict:
    evidence = Evidence(
        estimates=(
            Estimate("L0", 0.8, 0.7, 0.88, "clopper-pearson", 100, 80),
            Estimate("L1", 0.75, 0.65, 0.83, "clopper-pearson", 100, 75),
            Estimate("L1-L0", -0.05, -0.17, 0.07, "newcombe"),
        ),
        tests=(StatTest("TOST L1 vs L0", 0.01, 2.3, 0.02, "tost", "two-sided"),),
        paper_values={"L0": 0.833, "L1": 0.767},
        extra=extra or {},
    )
    return Verdict(
        claim_id=claim_id, paper="demo", scan_claim=SCAN_TEXT, profile=profile, model=model,
        outcome=outcome, reason="L1 is within 15 pp of L0", evidence=evidence, rule={"alpha": 0.05},
        spec_hash=spec_hash, seeds=(0, 1), n=100, nodeid=f"claims/test_x.py::test_{claim_id}",
        created="2026-11-24T00:00:00+00:00", claimkit_version="0.1.0",
    )


def test_write_run_writes_schema_1_json_md_and_self_contained_html(tmp_path):
    plots = [{"title": "per-seed rates", "kind": "lines", "series": {"L0": [0.8, 0.82], "L1": [0.7, 0.8]}}]
    verdicts = [make_verdict("c-2", Outcome.REFUTED), make_verdict("c-1", extra={"plots": plots, "overlap": 0})]
    written = write_run(tmp_path, verdicts, command="pytest claims/", claimkit_version="9.9")

    data = json.loads((written.run_dir / "verdicts.json").read_text())
    assert data["schema"] == SCHEMA == 1
    assert set(data) == {"schema", "run_id", "created", "claimkit_version", "command", "profiles", "provenance",
                         "profile_notes", "verdicts", "artifacts"}
    assert data["run_id"] == written.run_dir.name and data["command"] == "pytest claims/"
    assert [v["claim_id"] for v in data["verdicts"]] == ["c-1", "c-2"]  # sorted, not in arrival order
    first = data["verdicts"][0]
    assert first["scan_claim"] == SCAN_TEXT and first["profile"] == "organism" and first["model"] == "m-1"
    assert first["outcome"] == "supported" and first["evidence"]["estimates"][0]["successes"] == 80
    assert Verdict.from_dict(first) == verdicts[1]
    for key in ("report_md", "report_html", "verdicts_json"):
        assert (tmp_path / data["artifacts"][key]).is_file()

    md = (written.run_dir / "report.md").read_text()
    assert SCAN_TEXT in md and "| c-2 | organism | m-1 | **refuted** |" in md
    assert "L0=80.0% [70.0%, 88.0%] (80/100)" in md and "L0=0.833" in md
    assert '"overlap": 0' in md  # evidence beyond estimates is shown, the plot specs are not
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (written.run_dir / link).is_file()

    html = (written.run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html), "external reference in report.html"
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3  # two rates charts and the requested line plot
    assert SCAN_TEXT.replace("%", "%") in html and "REFUTED" in html


def test_history_latest_and_changes_across_runs(tmp_path):
    first = write_run(tmp_path, [make_verdict("c-1"), make_verdict("c-2")], command="pytest", claimkit_version="1")
    second = write_run(tmp_path, [make_verdict("c-1", Outcome.REFUTED), make_verdict("c-3")],
                       command="pytest", claimkit_version="1")
    rows = read_history(tmp_path)
    assert [(r["run_id"], r["claim_id"], r["outcome"]) for r in rows] == [
        (first.document.run_id, "c-1", "supported"),
        (first.document.run_id, "c-2", "supported"),
        (second.document.run_id, "c-1", "refuted"),
        (second.document.run_id, "c-3", "supported"),
    ]
    assert rows[0]["estimate"] == {"name": "L0", "value": 0.8, "low": 0.7, "high": 0.88}
    assert rows[0]["spec_hash"] == "sha256:aaa" and rows[0]["model"] == "m-1"

    assert os.readlink(tmp_path / "latest") == second.document.run_id
    assert (tmp_path / LATEST_JSON).read_text() == (second.run_dir / "verdicts.json").read_text()
    assert resolve_run_dir("latest", tmp_path) == tmp_path / second.document.run_id
    assert resolve_run_dir(tmp_path / LATEST_JSON, tmp_path) == tmp_path / second.document.run_id
    assert resolve_verdicts_file(tmp_path / LATEST_JSON) == tmp_path / LATEST_JSON

    assert first.previous_run is None
    assert second.previous_run == first.document.run_id
    assert [(c.claim_id, c.kind) for c in second.changes] == [("c-1", "changed"), ("c-2", "missing"), ("c-3", "new")]
    assert f"## Changes since run {first.document.run_id}" in (second.run_dir / "report.md").read_text()


def test_latest_falls_back_to_a_text_file_where_symlinks_fail(tmp_path, monkeypatch):
    first = write_run(tmp_path, [make_verdict()], command="pytest", claimkit_version="1")
    assert (tmp_path / "latest").is_symlink()

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not permitted here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    second = write_run(tmp_path, [make_verdict()], command="pytest", claimkit_version="1")
    assert not (tmp_path / "latest").exists()  # the stale link to the first run is gone
    assert (tmp_path / "latest.txt").read_text().strip() == second.document.run_id != first.document.run_id
    assert resolve_run_dir("latest", tmp_path) == second.run_dir
    assert json.loads((tmp_path / LATEST_JSON).read_text())["run_id"] == second.document.run_id


def test_drifts_name_verdicts_that_kept_their_outcome_but_not_their_numbers():
    import dataclasses

    def with_estimate(verdict, index, **fields):
        estimates = list(verdict.evidence.estimates)
        estimates[index] = dataclasses.replace(estimates[index], **fields)
        return dataclasses.replace(verdict, evidence=dataclasses.replace(verdict.evidence, estimates=tuple(estimates)))

    before = [make_verdict("same"), make_verdict("moved"), make_verdict("worded"), make_verdict("flipped"),
              make_verdict("retrained", model="m-1+lora:aaaa"), make_verdict("gone"),
              with_estimate(make_verdict("nan"), 2, value=float("nan"))]  # fmt: skip
    moved = with_estimate(make_verdict("moved"), 0, value=0.78, successes=78)
    retrained = with_estimate(make_verdict("retrained", model="m-1+lora:bbbb"), 1, low=0.64)
    tests = (StatTest("TOST L1 vs L0", 0.03, 2.3, 0.02, "tost", "two-sided"),)
    after = [make_verdict("same"), moved, dataclasses.replace(make_verdict("worded"), reason="other words"),
             make_verdict("flipped", Outcome.REFUTED), retrained, with_estimate(make_verdict("nan"), 2, value=float("nan")),
             dataclasses.replace(make_verdict("new-test"))]  # fmt: skip
    before.append(dataclasses.replace(make_verdict("new-test"), evidence=dataclasses.replace(make_verdict().evidence, tests=tests)))
    found, identical = drifts(before, after)
    by_claim = {d.claim_id: d for d in found}
    assert identical == 2  # "same" and "nan" (NaN equals NaN here); "flipped" is compare()'s, "gone" has no pair
    assert set(by_claim) == {"moved", "worded", "retrained", "new-test"}
    assert by_claim["moved"].differences == ("estimate 'L0' value: 0.8 -> 0.78",)
    assert by_claim["retrained"].model == "m-1" and by_claim["retrained"].differences == ("estimate 'L1' low: 0.65 -> 0.64",)
    assert by_claim["worded"].differences == ("reason: the same numbers, other words",)
    assert by_claim["new-test"].differences == ("test 'TOST L1 vs L0' p_value: 0.03 -> 0.01",)
    assert by_claim["moved"].describe() == "moved [organism, m-1]: estimate 'L0' value: 0.8 -> 0.78"


def test_compare_keys_by_claim_profile_and_base_model():
    before = [make_verdict("a"), make_verdict("b"), make_verdict("c"), make_verdict("d", spec_hash="sha256:old"),
              make_verdict("e", model="m-1+lora:aaaa"), make_verdict("f", model="m-1+lora:aaaa")]  # fmt: skip
    after = [
        make_verdict("a"),  # same
        make_verdict("b", Outcome.INCONCLUSIVE),  # flipped
        make_verdict("c", model="m-2"),  # another base model: a different verdict, not a change of c/m-1's
        make_verdict("d", Outcome.REFUTED, spec_hash="sha256:new"),  # flipped with new rules
        make_verdict("e", Outcome.REFUTED, model="m-1+lora:bbbb"),  # retrained adapter, flipped: still a change
        make_verdict("f", model="m-1+lora:bbbb"),  # retrained adapter, same outcome: no change
    ]
    changes = {(c.claim_id, c.model, c.kind): c for c in compare(before, after)}
    assert set(changes) == {("b", "m-1", "changed"), ("c", "m-1", "missing"), ("c", "m-2", "new"), ("d", "m-1", "changed"),
                            ("e", "m-1", "changed")}  # fmt: skip
    e = changes[("e", "m-1", "changed")]
    assert e.unexplained and "(model m-1+lora:aaaa -> m-1+lora:bbbb)" in e.describe()
    b, d = changes[("b", "m-1", "changed")], changes[("d", "m-1", "changed")]
    assert (b.before, b.after, b.unexplained) == (Outcome.SUPPORTED, Outcome.INCONCLUSIVE, True)
    assert d.spec_changed and not d.unexplained
    assert "supported -> refuted (claim spec changed)" in d.describe()
    assert compare(before, before) == []


def test_a_spec_revision_explains_a_flip_only_of_the_claims_whose_rule_it_changed():
    import dataclasses

    def hashed(claim_id, outcome, spec_hash, claim_hash):
        return dataclasses.replace(make_verdict(claim_id, outcome, spec_hash=spec_hash), claim_hash=claim_hash)

    before = [hashed("ruled", Outcome.SUPPORTED, "sha256:v1", "sha256:r1"),
              hashed("kept", Outcome.SUPPORTED, "sha256:v1", "sha256:k"),
              make_verdict("old", spec_hash="sha256:v1")]  # fmt: skip
    after = [hashed("ruled", Outcome.REFUTED, "sha256:v2", "sha256:r2"),
             hashed("kept", Outcome.NOT_TESTED, "sha256:v2", "sha256:k"),
             hashed("old", Outcome.INCONCLUSIVE, "sha256:v2", "sha256:o")]  # fmt: skip
    changes = {c.claim_id: c for c in compare(before, after)}
    assert changes["ruled"].spec_changed and not changes["ruled"].unexplained
    # the spec changed, but not this claim's rule: the flip has no stated cause
    assert not changes["kept"].spec_changed and changes["kept"].unexplained
    # a record from before claim hashes: the whole spec's hash is all there is to go by
    assert changes["old"].spec_changed and not changes["old"].unexplained


def test_run_ids_sort_by_time_and_are_unique():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ids = [new_run_id(t + timedelta(seconds=s)) for s in (0, 0.001, 0.5, 1, 60, 3600)]
    assert ids == sorted(ids) and ids[0].startswith("20260102T030405.000Z-")
    assert len({new_run_id(t) for _ in range(50)}) == 50


def test_rates_chart_marks_the_paper_values_beside_counted_rates():
    verdict = make_verdict()
    figure = rates_figure(verdict)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["L0", "L1"]  # the difference is not a rate
    heights = [round(p.get_height(), 6) for p in axes.patches]
    assert heights == [0.8, 0.75]
    (paper,) = axes.collections[-1:]  # scatter of the paper's values, drawn last
    assert [round(y, 6) for _, y in paper.get_offsets()] == [0.833, 0.767]

    no_rates = Verdict.from_dict({**verdict.to_dict(), "evidence": {"estimates": [
        {"name": "ratio", "value": 1.1, "low": 0.9, "high": 1.3}]}})
    assert rates_figure(no_rates) is None
    assert is_rate(Estimate("mean_confidence", 0.95, 0.9, 0.99), {"mean_confidence": 1.0})
    assert not is_rate(Estimate("mean_confidence", 0.95, 0.9, 0.99), {})


def test_a_long_title_is_wrapped_inside_the_figure():
    title = "em-1 (smollm2-135m, inconclusive): estimates and paper values of a claim with a long name"
    figure = extra_figure({"title": title, "kind": "bars", "series": {"a": 1.0}})
    figure.canvas.draw()
    shown = figure.axes[0].title
    assert shown.get_text().replace("\n", " ") == title and "\n" in shown.get_text()
    box = shown.get_window_extent(renderer=figure.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width


@pytest.mark.parametrize(
    "spec",
    [
        {"title": "bars", "kind": "bars", "series": {"a": 1.0, "b": [0.5, 0.4, 0.6], "c": {"value": 2, "high": 3}},
         "paper": {"a": 1.2}},
        {"title": "lines", "kind": "lines", "series": {"x": {"x": [1, 2, 3], "y": [3, 2, 1]}, "y": [1, 2]}},
        {"title": "hist", "kind": "hist", "series": {"safe": [1, 2, 2, 3], "direct": [5, 6]}, "bins": 5},
    ],
)
def test_extra_plot_kinds_draw(spec):
    figure = extra_figure(spec)
    assert figure.axes[0].get_title() == spec["title"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"kind": "bars", "series": {"a": 1}}, "'title'"),
        ({"title": "t", "kind": "pie", "series": {"a": 1}}, "'kind' must be one of bars, lines, hist"),
        ({"title": "t", "kind": "bars", "series": {"a": "high"}}, "bar 'a': value must be a number"),
        ({"title": "t", "kind": "lines", "series": {"a": {"x": [1], "y": [1, 2]}}}, "x has 1 values but y has 2"),
        ({"title": "t", "kind": "hist", "series": {"a": [1]}, "bins": 0}, "'bins' must be a positive integer"),
    ],
)
def test_bad_plot_specs_say_what_is_wrong(spec, message):
    with pytest.raises(PlotSpecError, match=re.escape(message)):
        extra_figure(spec)


def test_a_bad_plot_spec_is_listed_not_fatal(tmp_path):
    verdict = make_verdict(extra={"plots": [{"title": "oops", "kind": "pie", "series": {"a": 1}}]})
    plots, problems = verdict_plots([verdict])
    assert len(plots) == 1 and problems[0].title == "oops" and "kind" in problems[0].problem
    written = write_run(tmp_path, [verdict], command="pytest", claimkit_version="1")
    assert "Plot 'oops' not drawn" in (written.run_dir / "report.md").read_text()


def test_render_run_redraws_from_verdicts_json_and_drops_stale_plots(tmp_path):
    written = write_run(tmp_path, [make_verdict()], command="pytest", claimkit_version="1")
    (written.run_dir / "report.md").unlink()
    stale = written.run_dir / "plots" / "99-old.png"
    stale.write_bytes(b"old")
    paths = render_run(written.run_dir)
    assert (written.run_dir / "report.md").is_file() and not stale.exists()
    assert all(p.is_file() for p in paths)


def test_malformed_reports_are_named_errors(tmp_path):
    bad = tmp_path / "verdicts.json"
    bad.write_text(json.dumps({"schema": 7, "run_id": "x", "created": "y", "verdicts": []}))
    with pytest.raises(ReportError, match=r"verdicts.json: field 'schema' must be 1, got 7"):
        load_document(bad)
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_document(bad)
    with pytest.raises(ReportError, match="no runs yet"):
        resolve_run_dir("latest", tmp_path / "empty")
    with pytest.raises(ReportError, match="report not found"):
        resolve_verdicts_file(tmp_path / "reports" / "latest.json")



def test_a_not_tested_verdict_loads_renders_and_compares(tmp_path):
    first = write_run(tmp_path, [make_verdict("c-1")], command="pytest", claimkit_version="1")
    second = write_run(tmp_path, [make_verdict("c-1", Outcome.NOT_TESTED)], command="pytest", claimkit_version="1")
    assert load_document(second.run_dir / "verdicts.json").verdicts[0].outcome is Outcome.NOT_TESTED
    assert "| c-1 | organism | m-1 | **not tested** |" in (second.run_dir / "report.md").read_text()
    assert '<span class="not-tested">NOT TESTED</span>' in (second.run_dir / "report.html").read_text()
    [change] = second.changes
    assert change.describe() == "c-1 [organism, m-1]: supported -> not tested" and change.unexplained
    assert first.document.verdicts[0].outcome is Outcome.SUPPORTED


def test_a_run_written_after_a_spec_revision_shows_the_revision_with_its_changes(tmp_path):
    import dataclasses

    from claimkit.spec import load_spec

    specs = tmp_path / "specs"
    (specs / "archive").mkdir(parents=True)
    v1_text = ('schema = 1\npaper = "demo"\ntitle = "t"\n[claims.c-1]\ntitle = "c"\nscan_claim = "C."\n'
               "[claims.c-1.rule]\nalpha = 0.05\n")
    (specs / "archive" / "demo.v1.toml").write_text(v1_text)
    (specs / "demo.toml").write_text(v1_text.replace("alpha = 0.05", "alpha = 0.01") + (
        '[[changelog]]\nversion = 2\nclaims = ["c-1"]\nchange = "alpha 0.01"\nwhy = "five claims share 0.05"\n'))
    v1, v2 = load_spec(specs / "archive" / "demo.v1.toml"), load_spec(specs / "demo.toml")

    def under(spec, outcome):
        return dataclasses.replace(make_verdict("c-1", outcome, spec_hash=spec.hash), claim_hash=spec.claims["c-1"].hash)

    reports = tmp_path / "reports"
    first = write_run(reports, [under(v1, Outcome.SUPPORTED)], command="pytest", claimkit_version="1", specs_dir=specs)
    same = write_run(reports, [under(v1, Outcome.SUPPORTED)], command="pytest", claimkit_version="1", specs_dir=specs)
    assert first.revisions == () and same.revisions == ()
    second = write_run(reports, [under(v2, Outcome.INCONCLUSIVE)], command="pytest", claimkit_version="1",
                       specs_dir=specs)
    [revision] = second.revisions
    assert (revision.paper, revision.before, revision.after, revision.newer) == ("demo", (v1.hash,), (v2.hash,),
                                                                                 specs / "demo.toml")
    assert [c.describe() for c in revision.claims] == [
        "c-1 [organism, m-1]: supported -> inconclusive; its rule changed; changelog 1"]
    assert revision.entry_lines() == [("changelog 1 (version 2; c-1): alpha 0.01", "five claims share 0.05")]
    md = (second.run_dir / "report.md").read_text()
    changes = md[md.index(f"## Changes since run {same.document.run_id}"):md.index("## Verdicts")]
    assert f"**spec of demo changed: {v1.hash[:15]} -> {v2.hash[:15]}" in changes
    assert "- changelog 1 (version 2; c-1): alpha 0.01 *Why:* five claims share 0.05" in changes
    assert "- changed: c-1 [organism, m-1]: supported -> inconclusive (claim spec changed)" in changes
    html = (second.run_dir / "report.html").read_text()
    assert "<li>changelog 1 (version 2; c-1): alpha 0.01 <i>Why:</i> five claims share 0.05</li>" in html
    # without a specs directory (render_run from elsewhere) the changes are as before
    assert write_run(reports, [under(v1, Outcome.SUPPORTED)], command="pytest", claimkit_version="1").revisions == ()


# -- provenance and pre-registration in reports ------------------------------------------

PROVENANCE = {
    "commit": "a" * 40, "dirty": True, "diff_hash": "sha256:d1ff", "claimkit_source": "sha256:c0de",
    "versions": {"python": "3.11.7", "torch": "2.13.0", "sae-lens": None},
    "device": {"cpu": "Xeon", "cpu_count": 2, "platform": "Linux", "gpu": None},
    "command": "pytest claims/", "claim_dir": "claims/demo", "claim_code": "sha256:c1a1",
}


def registered(verdict, status="preregistered", differs=(), claim_hash="sha256:rule-1", provenance=PROVENANCE):
    import dataclasses

    record = {"status": status, "lock": "specs/demo.lock.json", "locked_at": "2026-12-01T00:00:00+00:00",
              "differs": list(differs)}
    return dataclasses.replace(verdict, claim_hash=claim_hash, preregistration=record, provenance=dict(provenance))


def test_a_record_of_an_older_claimkit_loads_without_provenance_or_preregistration(tmp_path):
    old = make_verdict().to_dict()
    for key in ("claim_hash", "preregistration", "provenance"):
        del old[key]
    verdict = Verdict.from_dict(old)
    assert (verdict.claim_hash, dict(verdict.preregistration), dict(verdict.provenance)) == ("", {}, {})
    assert verdict.preregistered is None
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps({"schema": 1, "run_id": "r", "created": "c", "verdicts": [old]}))
    document = load_document(path)
    assert document.provenance == {} and document.verdicts == (verdict,)
    new = registered(make_verdict())
    assert Verdict.from_dict(json.loads(json.dumps(new.to_dict()))) == new and new.preregistered is True


def test_reports_show_provenance_and_what_breaks_the_lock(tmp_path):
    verdicts = [registered(make_verdict("c-1")),
                registered(make_verdict("c-2"), "not preregistered", ["claim c-2 changed since the lock"])]
    written = write_run(tmp_path, verdicts, command="pytest claims/", claimkit_version="1",
                        provenance={k: v for k, v in PROVENANCE.items() if not k.startswith("claim_")})
    data = json.loads((written.run_dir / "verdicts.json").read_text())
    assert data["provenance"]["commit"] == "a" * 40
    assert data["verdicts"][1]["preregistration"]["differs"] == ["claim c-2 changed since the lock"]
    md = (written.run_dir / "report.md").read_text()
    assert "| c-2 | organism | m-1 | **supported** [not pre-registered] |" in md
    assert "| c-1 | organism | m-1 | **supported** |" in md
    for text in ("## Provenance", f"- commit: {'a' * 40} (dirty, diff sha256:d1ff)", "- claimkit source: sha256:c0de",
                 "- claim code: claims/demo sha256:c1a1", "python 3.11.7, torch 2.13.0, sae-lens (not installed)",
                 "- device (verdicts): CPU Xeon (2 cores)", "- pre-registration: 1 of 2 verdicts",
                 "- c-2 [organism]: not pre-registered: claim c-2 changed since the lock",
                 "- pre-registration: preregistered (lock specs/demo.lock.json, locked at 2026-12-01T00:00:00+00:00)",
                 "- claim hash: `sha256:rule-1`", "<summary>provenance</summary>"):
        assert text in md, text
    html = (written.run_dir / "report.html").read_text()
    for text in ("<h2>Provenance</h2>", "[not pre-registered]", "not pre-registered: claim c-2 changed since the lock",
                 "claimkit source: sha256:c0de"):
        assert text in html, text


def test_a_report_written_where_no_verdict_ran_says_so(tmp_path):
    """Under xdist the controller writes the report on the CPU while the workers ran on a GPU."""
    gpu = {**PROVENANCE["device"], "gpu": {"name": "NVIDIA H100 80GB HBM3", "driver": "580", "cuda": "13.0"}}
    verdicts = [registered(make_verdict("c-1"), provenance={**PROVENANCE, "device": gpu})]
    run = {k: v for k, v in PROVENANCE.items() if not k.startswith("claim_")}
    md = (write_run(tmp_path / "split", verdicts, command="pytest", claimkit_version="1", provenance=run).run_dir
          / "report.md").read_text()  # fmt: skip
    assert "(the process that wrote the report, not where any verdict ran)" in md
    same = [registered(make_verdict("c-1"))]
    md = (write_run(tmp_path / "same", same, command="pytest", claimkit_version="1", provenance=run).run_dir
          / "report.md").read_text()  # fmt: skip
    assert "- device (report): CPU Xeon (2 cores)\n" in md and "not where any verdict ran" not in md


def test_a_claim_decided_under_a_rule_changed_after_a_result_is_flagged_for_good(tmp_path):
    def run(claim_hash, profile="organism", outcome=Outcome.SUPPORTED):
        return write_run(tmp_path, [registered(make_verdict("c-1", outcome, profile=profile), claim_hash=claim_hash)],
                         command="pytest", claimkit_version="1")

    first = run("sha256:rule-1", outcome=Outcome.REFUTED)
    assert "changed_after_result" not in first.document.verdicts[0].preregistration
    assert not run("sha256:rule-1").document.verdicts[0].preregistration.get("changed_after_result")
    assert not run("sha256:rule-2", profile="gpu").document.verdicts[0].preregistration.get("changed_after_result")
    changed = run("sha256:rule-2")
    flag = changed.document.verdicts[0].preregistration["changed_after_result"]
    assert flag["claim_hash"] == "sha256:rule-1" and flag["outcome"] == "supported"
    again = run("sha256:rule-2")  # re-running under the new rule does not make it chosen beforehand
    assert again.document.verdicts[0].preregistration["changed_after_result"]["claim_hash"] == "sha256:rule-1"
    rows = read_history(tmp_path)
    assert [r["claim_hash"] for r in rows] == ["sha256:rule-1", "sha256:rule-1", "sha256:rule-2", "sha256:rule-2",
                                               "sha256:rule-2"]
    assert [bool(r["changed_after_result"]) for r in rows] == [False, False, False, True, True]
    md = (changed.run_dir / "report.md").read_text()
    assert "[changed after a result was seen]" in md
    assert (f"**Changed after a result was seen:** run {rows[1]['run_id']} recorded supported under claim hash "
            "sha256:rule-1; this verdict was decided under sha256:rule-2") in md
    # records without a claim hash (older runs) are never compared
    assert not write_run(tmp_path, [make_verdict("c-1")], command="pytest",
                         claimkit_version="1").document.verdicts[0].preregistration


def test_environment_differences_name_devices_versions_commits_and_code():
    import dataclasses

    from claimkit.report.environment import differences, environment
    from claimkit.report.json_report import RunDocument

    def document(run_id, **changes):
        provenance = {**PROVENANCE, **changes}
        return RunDocument(run_id, "c", "1", "pytest", ("organism",), (registered(make_verdict(), provenance=provenance),))

    base = environment(document("r1"))
    assert differences(base, environment(document("r2"))) == []
    gpu = {"cpu": "Xeon", "cpu_count": 16, "gpu": {"name": "NVIDIA H100", "driver": "550", "cuda": "12.4"}}
    other = environment(document("r2", device=gpu, versions={"python": "3.11.7", "torch": "2.11.0", "sae-lens": "6.5"},
                                 commit="b" * 40, dirty=False, claim_code="sha256:c1a2"))
    assert differences(base, other) == [
        "devices differ: CPU Xeon (2 cores) -> NVIDIA H100 (driver 550, CUDA 12.4)",
        "package versions differ: sae-lens (absent) -> 6.5; torch 2.13.0 -> 2.11.0",
        f"commits differ: {'a' * 40} (dirty, diff sha256:d1ff) -> {'b' * 40} (clean)",
        "code differs: claim code claims/demo sha256:c1a1 -> claim code claims/demo sha256:c1a2",
    ]
    old = RunDocument("r0", "c", "1", "pytest", ("organism",), (make_verdict(),))
    assert differences(environment(old), base) == [
        "run r0 records no provenance: devices, package versions and commits cannot be compared"]
    assert dataclasses.asdict(base)["devices"] == ("CPU Xeon (2 cores)",)


# -- notes: verdict changes a person expects ------------------------------------------

NOTES = """
[[change]]
claim = "b"
profile = "organism"
to = "inconclusive"
why = "  n halved to fit the night  "

[[change]]
claim = "c"
profile = "organism"
from = "refuted"
to = "supported"
why = "only from refuted"

[[change]]
claim = "d"
profile = "organism"
model = "m-9"
to = "refuted"
why = "another model only"

[[change]]
claim = "e"
profile = "gpu-profile"
to = "supported"
why = "another profile only"
"""


def test_a_note_explains_the_change_it_names_and_no_other(tmp_path):
    path = tmp_path / "notes.toml"
    path.write_text(NOTES)
    notes = load_notes(path)
    assert [(n.claim_id, n.before, n.after, n.model, n.why) for n in notes][:2] == [
        ("b", None, Outcome.INCONCLUSIVE, None, "n halved to fit the night"),
        ("c", Outcome.REFUTED, Outcome.SUPPORTED, None, "only from refuted"),
    ]
    before = [make_verdict(x) for x in "bcde"] + [make_verdict("f"), make_verdict("g")]
    after = [
        make_verdict("b", Outcome.INCONCLUSIVE),  # noted
        make_verdict("c", Outcome.REFUTED),  # the note is for refuted -> supported, not this way
        make_verdict("d", Outcome.REFUTED),  # the note is for model m-9
        make_verdict("e", Outcome.REFUTED),  # the note is for another profile and another verdict
        make_verdict("f", Outcome.REFUTED),  # no note at all
    ]  # g: missing, never "unexplained"
    changes = {c.claim_id: c for c in apply_notes(compare(before, after), notes)}
    assert changes["b"].note == "n halved to fit the night" and not changes["b"].unexplained
    assert "supported -> inconclusive (noted: n halved to fit the night)" in changes["b"].describe()
    assert [k for k, c in sorted(changes.items()) if c.unexplained] == ["c", "d", "e", "f"]
    assert changes["g"].kind == "missing" and changes["g"].note is None
    assert [n.claim_id for n in unused_notes(changes.values(), notes)] == ["c", "d", "e"]
    # the right way round, c's note applies
    flipped = apply_notes(compare([make_verdict("c", Outcome.REFUTED)], [make_verdict("c")]), notes)
    assert [c.note for c in flipped] == ["only from refuted"]


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[change]]\nclaim = "b"\nprofile = "p"\nto = "supported"\n', r"change\[0\]: field\(s\) why missing"),
        ('[[change]]\nclaim = "b"\nprofile = "p"\nto = "passed"\nwhy = "w"\n',
         r"change\[0\]: field 'to' must be one of supported, refuted, inconclusive, not tested, got 'passed'"),
        ('[[change]]\nclaim = "b"\nprofile = "p"\nto = "refuted"\nwhy = " "\n',
         r"change\[0\]: field 'why' must be a non-empty string"),
        ('[[change]]\nclaim = "b"\nprofile = "p"\nto = "refuted"\nwhy = "w"\nreason = "r"\n',
         r"change\[0\]: unknown field\(s\) reason; allowed: claim, profile, to, why, from, model"),
        ('[change]\nclaim = "b"\n', r"'change' must be an array of tables \(\[\[change\]\]\)"),
        ('[[changes]]\nclaim = "b"\n', r"unknown top-level key\(s\) changes"),
        ("[[change]\n", "not valid TOML"),
    ],
)
def test_a_malformed_notes_file_names_the_entry_and_field(tmp_path, text, message):
    path = tmp_path / "notes.toml"
    path.write_text(text)
    with pytest.raises(NotesError, match=message) as error:
        load_notes(path)
    assert str(error.value).startswith(f"{path}: ")


def test_the_committed_notes_file_is_valid():
    load_notes(Path(__file__).resolve().parent.parent / NOTES_FILE)


# -- the rules' simulated error rates --------------------------------------------------------

TABLE_ROW = {"n": 100, "seeds": 2, "parts": 1, "power": 0.9, "power_required": True, "within_bounds": True,
             "problems": []}


def calibrated_specs(tmp_path, spec_hash="sha256:aaa", rows=None, table_text=None):
    """A spec directory with the demo paper's spec and, beside it, a calibration table for `spec_hash`."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "demo.toml").write_text('schema = 2\npaper = "demo"\n[calibration]\nreps = 1000\n')
    (specs / "other.toml").write_text('schema = 2\npaper = "another paper"\n')
    if rows is None:
        rows = [{**TABLE_ROW, "claim": "c-1", "profile": "organism", "false_support": 0.04, "false_refute": 0.03},
                {**TABLE_ROW, "claim": "c-2", "profile": "organism", "false_support": 0.02, "false_refute": 0.05},
                {**TABLE_ROW, "claim": "c-1", "profile": "paper", "false_support": 0.01, "false_refute": 0.01}]
    text = table_text or json.dumps({"spec": "demo.toml", "spec_hash": spec_hash, "reps": 1000, "rows": rows,
                                     "points": []})
    (specs / "demo.calibration.json").write_text(text)
    return specs


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end)]


def test_reports_show_the_rules_error_rates_and_bound_the_false_verdicts(tmp_path):
    verdicts = [make_verdict("c-1"), make_verdict("c-2", Outcome.REFUTED), make_verdict("c-3", Outcome.INCONCLUSIVE)]
    written = write_run(tmp_path / "reports", verdicts, command="pytest", claimkit_version="1",
                        specs_dir=calibrated_specs(tmp_path))
    md = section((written.run_dir / "report.md").read_text(), "## Decision rules' simulated error rates", "## Verdicts")
    assert f"demo: `{tmp_path / 'specs' / 'demo.calibration.json'}`, 1000 draws per point" in md
    assert "| claim | profile | n | seeds | parts | false support | false refutation | power | refutes a false claim | bounds |" in md
    assert "| c-1 | organism | 100 | 2 | 1 | 0.040 | 0.030 | 0.90 | - | met |" in md
    assert "| c-2 | organism | 100 | 2 | 1 | 0.020 | 0.050 | 0.90 | - | met |" in md
    assert "| c-1 | paper |" not in md  # a profile the run did not use
    assert "Note: no row for c-3 [organism]" in md
    # c-1 can be false (0.04) or true (0.03), c-2 likewise (0.02, 0.05): at most 0.04 + 0.05 false verdicts
    assert ("**Whole run:** At the simulated rates, at most 0.09 false verdicts are expected among these 2 claim "
            "decisions (1 supported, 1 refuted)") in md
    assert "1 verdict(s) without an applicable row are not counted." in md
    html = (written.run_dir / "report.html").read_text()
    assert "<h2>Decision rules&#x27; simulated error rates</h2>" in html
    assert "<td>c-1</td><td>organism</td><td>100</td><td>2</td><td>1</td><td>0.040</td><td>0.030</td>" in html
    assert "<b>Whole run:</b> At the simulated rates, at most 0.09 false verdicts are expected" in html


def test_a_broken_rule_is_named_where_its_verdict_is_counted(tmp_path):
    rows = [{**TABLE_ROW, "claim": "c-1", "profile": "organism", "false_support": 0.12, "false_refute": 0.01,
             "within_bounds": False, "problems": ["false support 0.120 > 0.05"]}]
    written = write_run(tmp_path / "reports", [make_verdict("c-1")], command="pytest", claimkit_version="1",
                        specs_dir=calibrated_specs(tmp_path, rows=rows))
    md = (written.run_dir / "report.md").read_text()
    assert "| 0.120 | 0.010 | 0.90 | - | BROKEN: false support 0.120 > 0.05 |" in md
    assert "at most 0.12 false verdicts" in md
    assert ("1 of them were decided by a rule whose simulated error rates break the spec's bounds: "
            "c-1 [organism].") in md


def test_a_table_of_another_spec_version_shows_no_numbers(tmp_path):
    written = write_run(tmp_path / "reports", [make_verdict("c-1")], command="pytest", claimkit_version="1",
                        specs_dir=calibrated_specs(tmp_path, spec_hash="sha256:bbb"))
    md = section((written.run_dir / "report.md").read_text(), "## Decision rules' simulated error rates", "## Verdicts")
    assert ("- demo: calibration table is for another version of the spec (table sha256:bbb, verdicts sha256:aaa): "
            "its numbers do not apply to these verdicts") in md
    assert "| c-1 |" not in md and "Whole run" not in md and "0.040" not in md
    assert "calibration table is for another version of the spec" in (written.run_dir / "report.html").read_text()


def test_verdicts_of_another_spec_version_are_not_counted(tmp_path):
    verdicts = [make_verdict("c-1"), make_verdict("c-2", spec_hash="sha256:old")]
    written = write_run(tmp_path / "reports", verdicts, command="pytest", claimkit_version="1",
                        specs_dir=calibrated_specs(tmp_path))
    md = (written.run_dir / "report.md").read_text()
    assert "Note: 1 verdict(s) were decided under another version of the spec: the table does not apply to them." in md
    assert "at most 0.04 false verdicts are expected among these 1 claim decisions (1 supported)" in md


@pytest.mark.parametrize(
    "table_text, line",
    [
        ("{not json", "- demo: its calibration table could not be read: "),
        ('{"spec_hash": "sha256:aaa", "rows": [{"claim": "c-1"}]}', "rows[0] lacks profile, n, seeds"),
    ],
)
def test_a_malformed_table_is_a_line_in_the_report_not_an_error(tmp_path, table_text, line):
    written = write_run(tmp_path / "reports", [make_verdict("c-1")], command="pytest", claimkit_version="1",
                        specs_dir=calibrated_specs(tmp_path, table_text=table_text))
    md = (written.run_dir / "report.md").read_text()
    assert line in md and "## Verdicts" in md and "Whole run" not in md


def test_without_a_table_or_a_spec_the_report_says_so_in_a_line(tmp_path):
    specs = calibrated_specs(tmp_path)
    (specs / "demo.calibration.json").unlink()
    import dataclasses

    verdicts = [make_verdict("c-1"), dataclasses.replace(make_verdict("x-1"), paper="unknown paper")]
    written = write_run(tmp_path / "reports", verdicts, command="pytest", claimkit_version="1", specs_dir=specs)
    md = (written.run_dir / "report.md").read_text()
    assert f"- demo: no calibration table beside {specs / 'demo.toml'} (`claimkit calibrate {specs / 'demo.toml'}` " \
           "writes one)" in md
    assert f"- unknown paper: the claim spec directory {specs} holds no spec of paper 'unknown paper'" in md
    (specs / "demo.toml").write_text('schema = 1\npaper = "demo"\n')  # a spec that cannot be calibrated
    render_run(written.run_dir, specs_dir=specs)
    assert "- demo: its spec" in (written.run_dir / "report.md").read_text()
    assert "declares no [calibration]: its rules' error rates are not simulated" in (
        written.run_dir / "report.md").read_text()
    render_run(written.run_dir, specs_dir=tmp_path / "nowhere")
    assert f"the claim spec directory {tmp_path / 'nowhere'} is not a directory" in (
        written.run_dir / "report.md").read_text()


def test_without_a_spec_directory_the_section_is_left_out(tmp_path):
    written = write_run(tmp_path / "reports", [make_verdict("c-1")], command="pytest", claimkit_version="1")
    assert "simulated error rates" not in (written.run_dir / "report.md").read_text()
    assert "simulated error rates" not in (written.run_dir / "report.html").read_text()


def test_the_report_says_what_each_profiles_model_is_and_what_it_can_test(tmp_path):
    notes = {"organism": {"description": "claimkit's own small model.", "about": "It cannot test claim 4 when ..."},
             "elsewhere": {"description": "a profile with no verdict in this run"}}
    written = write_run(tmp_path, [make_verdict("c-1")], command="pytest", claimkit_version="9.9", profile_notes=notes)
    md = (written.run_dir / "report.md").read_text()
    assert "## Profiles" in md and "- **organism**: claimkit's own small model. It cannot test claim 4 when ..." in md
    assert "elsewhere" not in md
    assert "It cannot test claim 4" in (written.run_dir / "report.html").read_text()
    assert load_document(written.run_dir / "verdicts.json").profile_notes == {"organism": notes["organism"]}


def test_a_verdict_section_shows_its_manipulation_checks_and_the_test_that_decided_it(tmp_path):
    import dataclasses

    checks = {"direct-learns": {"check_id": "direct-learns", "title": "Direct training teaches", "passed": False,
                                "reason": "L0 - filler = +2.0% on average", "numbers": {}}}
    verdict = dataclasses.replace(make_verdict("c-1", Outcome.NOT_TESTED), checks=checks, decided_by="")
    decided = dataclasses.replace(make_verdict("c-2"), decided_by="share: share > 0.75 and < 1.33")
    written = write_run(tmp_path, [verdict, decided], command="pytest", claimkit_version="9.9")
    md = (written.run_dir / "report.md").read_text()
    assert "- direct-learns (Direct training teaches): **FAILED**: L0 - filler = +2.0% on average" in md
    assert "- decided by: share: share > 0.75 and < 1.33" in md
    html = (written.run_dir / "report.html").read_text()
    assert "<b>FAILED</b>" in html and "NOT TESTED" in html
