"""claimkit.scan: reading scans v2/v4, their formatting, stable claim ids, matching, listing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimkit.scan import (
    MATCH_THRESHOLD,
    SUPPORTED_VERSIONS,
    ScanError,
    ScanStyle,
    claim_id,
    detect_style,
    format_claim_list,
    list_claims,
    load_scan,
    match_claim,
    paper_matches,
    parse_scan,
)
from claimkit.spec import load_spec, load_specs
from claimkit.verdict import Evidence, Outcome, Verdict

ROOT = Path(__file__).resolve().parent.parent
V2 = ROOT / "fixtures" / "scans" / "scan-v2.warning-framed.json"
V4 = ROOT / "fixtures" / "scans" / "scan-v4.emergent-misalignment.json"
SPEC = ROOT / "fixtures" / "claims" / "warning_framed.toml"


def scan_bytes(**overrides) -> bytes:
    """A small valid v2 scan; keyword arguments replace top-level fields."""
    raw = {
        "paper": {"title": "A Paper", "arxiv_id": "2401.00001"},
        "scan_version": 2,
        "claims": [
            {"claim": "Models learn X.", "evidence": "Table 1", "supported": "strong"},
            {"claim": "Probes detect Y.", "evidence": "Fig. 2", "supported": "weak"},
        ],
    }
    raw.update(overrides)
    return json.dumps(raw, indent=2).encode()


# -- loading ------------------------------------------------------------------------


def test_both_seed_scans_load_with_their_schema_and_paper():
    v2, v4 = load_scan(V2), load_scan(V4)
    assert (v2.version, v4.version) == (2, 4)
    assert v2.paper.arxiv_id == "2512.22293" and v2.paper.title.startswith("Learning from Negative Examples")
    assert v4.paper.arxiv_id == "2602.07852" and v4.paper.doi is None and len(v4.paper.authors) == 4
    assert [c.index for c in v2.claims] == list(range(5)) and len(v4.claims) == 7
    assert v2.claims[4].supported == "weak" and v4.claims[0].supported == "strong"
    assert v4.claims[1].text == json.loads(V4.read_text())["claims"][1]["claim"]
    assert "paper_type" in v4.raw and "paper_type" not in v2.raw  # the versions differ at the top level


@pytest.mark.parametrize("path", [V2, V4], ids=["v2", "v4"])
def test_seed_style_is_detected_and_reproduces_the_bytes(path):
    scan = load_scan(path)
    original = path.read_bytes()
    assert scan.style.round_trips
    assert scan.style.indent == 2 and not scan.style.ensure_ascii and scan.style.trailing == ""
    assert scan.style.encode(scan.raw) == original
    assert list(scan.raw) == list(json.loads(original))  # key order kept


style_strategy = st.builds(
    ScanStyle,
    indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]),
    item_separator=st.sampled_from([",", ", "]),
    key_separator=st.sampled_from([":", ": "]),
    ensure_ascii=st.booleans(),
    trailing=st.sampled_from(["", "\n", "\n\n", " \n"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
text_strategy = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=150, deadline=None)
@given(style=style_strategy, words=st.lists(text_strategy, min_size=1, max_size=4), number=st.floats(-1e6, 1e6))
def test_detected_style_reproduces_any_json_dumps_layout(style, words, number):
    raw = {"paper": {"title": "Ünïcode — “quoted”", "n": [1, 2.5, number]}, "scan_version": 2,
           "claims": [{"claim": w, "evidence": "", "supported": "x"} for w in words], "empty": {}, "none": []}
    text = style.dumps(raw)
    found = detect_style(text, json.loads(text.lstrip("\ufeff")))
    assert found.round_trips
    assert found.dumps(raw) == text


def test_escaped_unicode_is_kept_escaped(tmp_path):
    raw = json.loads(scan_bytes())
    raw["paper"]["title"] = "Naïve — paper"
    data = (json.dumps(raw, indent=4, ensure_ascii=True) + "\n").encode()
    scan = parse_scan(data, tmp_path / "s.json")
    assert scan.style.ensure_ascii and scan.style.indent == 4 and scan.style.trailing == "\n"
    assert scan.paper.title == "Naïve — paper"
    assert scan.style.encode(scan.raw) == data


def test_hand_formatted_json_loads_but_says_it_does_not_round_trip():
    data = b'{"scan_version": 2,\n "paper": {"title": "T"},\n   "claims": []}'
    scan = parse_scan(data)
    assert not scan.style.round_trips and scan.claims == ()


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"claims": [{"claim": "a", "evidence": "", "supported": "x"}] * 2
          + [{"claim": 7, "evidence": "", "supported": "x"}]},
         "scan.json: claims[2].claim: expected a string, got an integer"),
        ({"claims": [{"claim": "a", "supported": "x"}]}, "scan.json: claims[0].evidence: missing"),
        ({"claims": ["a claim"]}, "scan.json: claims[0]: expected an object, got a string"),
        ({"claims": {"a": 1}}, "scan.json: claims: expected a list, got an object"),
        ({"paper": {"title": ""}}, "scan.json: paper.title: expected a non-empty string"),
        ({"paper": {"title": "T", "arxiv_id": 2512.22293}}, "scan.json: paper.arxiv_id: expected a string, got a number"),
        ({"scan_version": 3}, "scan.json: scan_version: 3 is not supported; supported versions are 2, 4"),
        ({"scan_version": "2"}, "scan.json: scan_version: '2' is not supported; supported versions are 2, 4"),
        ({"scan_version": [2]}, "supported versions are 2, 4"),
        ({"scan_version": 4}, "scan.json: paper_type: missing (required by scan_version 4)"),
        ({"red_flags": "none"}, "scan.json: red_flags: expected a list, got a string"),
    ],
)
def test_invalid_scans_name_file_and_field(overrides, message):
    with pytest.raises(ScanError) as info:
        parse_scan(scan_bytes(**overrides), "scan.json")
    assert message in str(info.value)


def test_missing_version_and_missing_file_are_clear(tmp_path):
    raw = json.loads(scan_bytes())
    del raw["scan_version"]
    with pytest.raises(ScanError, match=r"scan_version: missing; supported versions are 2, 4"):
        parse_scan(json.dumps(raw).encode(), "scan.json")
    with pytest.raises(ScanError, match="scan file not found"):
        load_scan(tmp_path / "nope.json")
    assert SUPPORTED_VERSIONS == (2, 4)


def test_malformed_json_gives_line_and_column(tmp_path):
    path = tmp_path / "scan.json"
    path.write_bytes(b'{\n  "scan_version": 2,\n  "paper": {"title": "T",}\n}')
    with pytest.raises(ScanError, match=r"scan\.json: not valid JSON at line 3, column 26"):
        load_scan(path)
    path.write_bytes(b'{"scan_version": NaN}')
    with pytest.raises(ScanError, match="NaN is not valid JSON"):
        load_scan(path)


def test_every_cut_of_the_v2_seed_is_a_clear_error():
    data = V2.read_bytes()
    shape = re.compile(r"cut\.json: (not valid JSON at line \d+, column \d+: |not UTF-8 text at byte \d+ \(line \d+\))")
    for cut in range(len(data)):
        with pytest.raises(ScanError) as info:
            parse_scan(data[:cut], "cut.json")
        assert shape.match(str(info.value)), str(info.value)
    assert "the file ends early: it may be truncated" in str(_err(data[:1000]))


def _err(data: bytes) -> ScanError:
    try:
        parse_scan(data, "cut.json")
    except ScanError as exc:
        return exc
    raise AssertionError("no error")


def test_a_cut_inside_a_multibyte_character_is_named_as_encoding_trouble():
    data = V2.read_bytes()
    cut = data.index("—".encode()) + 1
    assert "not UTF-8 text at byte" in str(_err(data[:cut]))


# -- ids --------------------------------------------------------------------------


def test_claim_ids_are_hashes_of_the_normalised_text():
    scan = load_scan(V2)
    first = scan.claims[0]
    # Independently computed: lower-case, plain ASCII already, single spaces.
    expected = "c-" + hashlib.sha256(first.text.lower().encode()).hexdigest()[:10]
    assert first.id == expected
    assert all(re.fullmatch(r"c-[0-9a-f]{10}", c.id) for c in scan.claims)
    assert len({c.id for c in scan.claims}) == len(scan.claims)
    assert claim_id("Warning  “framed”\u2014training") == claim_id("warning \"framed\"-training")


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_ids_are_stable_when_claims_are_reordered(data):
    for path in (V2, V4):
        raw = json.loads(path.read_bytes())
        before = {c.text: c.id for c in load_scan(path).claims}
        raw["claims"] = data.draw(st.permutations(raw["claims"]))
        after = parse_scan(json.dumps(raw, indent=2, ensure_ascii=False).encode(), path)
        assert {c.text: c.id for c in after.claims} == before
        assert [c.index for c in after.claims] == list(range(len(raw["claims"])))


def test_repeated_claim_text_gets_numbered_ids():
    claims = [{"claim": "Same.", "evidence": "", "supported": "x"}, {"claim": " same. ", "evidence": "", "supported": "y"}]
    scan = parse_scan(scan_bytes(claims=claims))
    assert scan.claims[1].id == scan.claims[0].id + "-2"


# -- matching -----------------------------------------------------------------------


def test_every_spec_claim_of_the_paper_matches_exactly_one_v2_claim():
    scan, spec = load_scan(V2), load_spec(SPEC)
    top = {cid: c for cid, c in spec.claims.items() if c.parent is None}
    assert set(top) == {"wf-1", "wf-2", "wf-3", "wf-4", "wf-5"}
    # The spec numbers its claims after the scan's order (its comments say "scan claim N").
    assert {cid: match_claim(scan, c.scan_claim).index for cid, c in top.items()} == {
        "wf-1": 0, "wf-2": 1, "wf-3": 2, "wf-4": 3, "wf-5": 4,
    }


QUOTES = {"'": ["'", "\u2018", "\u2019"], '"': ['"', "\u201c", "\u201d"], "-": ["-", "\u2013", "\u2014", "\u2212"]}


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_matching_survives_case_space_quote_and_dash_changes(data):
    scan = load_scan(V2)
    target = data.draw(st.sampled_from(scan.claims))
    out = []
    for ch in target.text:
        if ch in QUOTES:
            ch = data.draw(st.sampled_from(QUOTES[ch]))
        elif ch == " ":
            ch = data.draw(st.sampled_from([" ", "  ", "\n", "\t", "\u00a0"]))
        elif ch.isalpha() and data.draw(st.booleans()):
            ch = ch.swapcase()
        out.append(ch)
    assert match_claim(scan, "".join(out)).id == target.id


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_small_edits_match_by_similarity(data):
    scan = load_scan(V4)
    target = data.draw(st.sampled_from(scan.claims))
    where = data.draw(st.integers(0, len(target.text) - 3))
    edited = target.text[:where] + target.text[where + 2:]  # two characters lost
    assert match_claim(scan, edited).id == target.id


def test_no_match_lists_the_nearest_claims_with_scores():
    scan = load_scan(V2)
    with pytest.raises(ScanError) as info:
        match_claim(scan, "Feature 8684 is a warning detector.")
    text = str(info.value)
    assert "no scan claim matches" in text and f">= {MATCH_THRESHOLD:g}" in text
    listed = re.findall(r"^\s+(\d\.\d\d)\s+claims\[(\d)\] (c-[0-9a-f]{10})", text, re.M)
    assert len(listed) == 3
    scores = [float(s) for s, _, _ in listed]
    assert scores == sorted(scores, reverse=True) and scores[0] < MATCH_THRESHOLD
    assert listed[0][1] == "1"  # the claim about feature 8684 is the nearest


def test_two_candidates_above_the_threshold_is_ambiguous():
    claims = [
        {"claim": "The probe reaches 99% accuracy on held-out warning outputs.", "evidence": "", "supported": "x"},
        {"claim": "The probe reaches 98% accuracy on held-out warning outputs.", "evidence": "", "supported": "x"},
        {"claim": "Something else entirely.", "evidence": "", "supported": "x"},
    ]
    scan = parse_scan(scan_bytes(claims=claims), "amb.json")
    with pytest.raises(ScanError) as info:
        match_claim(scan, "The probe reaches 97% accuracy on held-out warning outputs.")
    text = str(info.value)
    assert "matches 2 scan claims" in text and "claims[0]" in text and "claims[1]" in text
    assert "claims[2]" not in text
    # an exact quote is not ambiguous
    assert match_claim(scan, claims[1]["claim"]).index == 1
    dup = parse_scan(scan_bytes(claims=[claims[0], dict(claims[0])]), "dup.json")
    with pytest.raises(ScanError, match="matches 2 scan claims exactly"):
        match_claim(dup, claims[0]["claim"])


def test_paper_matching_by_arxiv_id_then_title(tmp_path):
    spec = load_spec(SPEC)
    v2, v4 = load_scan(V2), load_scan(V4)
    assert paper_matches(spec, v2.paper) and not paper_matches(spec, v4.paper)
    raw = json.loads(V2.read_bytes())
    raw["paper"]["arxiv_id"] = "arXiv:2512.22293v3"
    assert paper_matches(spec, parse_scan(json.dumps(raw).encode()).paper)
    raw["paper"]["arxiv_id"] = None
    raw["paper"]["title"] = raw["paper"]["title"].upper()
    assert paper_matches(spec, parse_scan(json.dumps(raw).encode()).paper)


# -- listing ------------------------------------------------------------------------


def verdict(claim_id, text, outcome, created, profile="organism", model="org-v1", parent=None):
    return Verdict(claim_id=claim_id, paper="warning-framed", scan_claim=text, profile=profile, model=model,
                   outcome=outcome, reason="r", evidence=Evidence(), rule={}, spec_hash="h", parent=parent,
                   created=created)


def test_list_shows_specs_and_latest_verdicts():
    scan, specs = load_scan(V2), load_specs(SPEC.parent)
    text1 = specs["warning-framed"].claims["wf-1"].scan_claim
    text3 = specs["warning-framed"].claims["wf-3"].scan_claim
    verdicts = {
        text1: [verdict("wf-1", text1, Outcome.REFUTED, "2026-01-01"),
                verdict("wf-1", text1, Outcome.SUPPORTED, "2026-02-01"),
                verdict("wf-1.ordering", text1, Outcome.REFUTED, "2026-03-01", parent="wf-1"),
                verdict("wf-1", text1, Outcome.INCONCLUSIVE, "2025-12-01", profile="paper", model="llama")],
        text3: [verdict("wf-3", text3, Outcome.SUPPORTED, "2026-01-01")],
        "A claim this scan does not make.": [verdict("wf-9", "x", Outcome.SUPPORTED, "2026-01-01")],
    }
    rows = list_claims(scan, verdicts, specs)
    assert [r.index for r in rows] == [0, 1, 2, 3, 4, None]
    assert rows[0].specs == ("wf-1", "wf-1.format-leak", "wf-1.ordering", "wf-1.control")
    assert {(n.profile, n.outcome) for n in rows[0].verdicts} == {("organism", "supported"), ("paper", "inconclusive")}
    assert rows[0].verdict.outcome == "supported" and rows[0].verdict.date == "2026-02-01"
    assert rows[1].verdicts == () and rows[2].verdict.claim_id == "wf-3"
    assert rows[5].index is None and "no scan claim matches" in rows[5].problem
    out = format_claim_list(rows)
    assert "[0] " + scan.claims[0].id in out and "SUPPORTED" in out and "INCONCLUSIVE" in out
    assert "[not in scan] wf-9" in out
    assert out.endswith("5 scan claim(s): 5 with a claim spec (0 of them drafts only), 2 with a verdict")


def test_list_without_a_report_shows_the_recorded_verdicts_and_unmatched_specs(tmp_path):
    raw = json.loads(V4.read_bytes())
    raw["claims"][2]["verification"] = {"records": [
        {"verdict": "refuted", "profile": "organism", "model": "m", "date": "2026-01-01", "claim_id": "em-3"}]}
    scan = parse_scan(json.dumps(raw).encode(), "v4.json")
    spec = tmp_path / "em.toml"
    spec.write_text(
        'schema = 1\npaper = "em"\ntitle = "Emergent Misalignment is Easy, Narrow Misalignment is Hard"\n'
        '[claims.em-3]\ntitle = "t"\nscan_claim = "The general solution is cheaper."\n[claims.em-3.rule]\nalpha = 0.05\n'
    )
    (tmp_path / "wf").mkdir()
    shutil.copy(SPEC, tmp_path / "wf")  # the first paper's spec only: the repository's also has this paper's drafts
    rows = list_claims(scan, None, load_specs(tmp_path) | load_specs(tmp_path / "wf"))
    assert rows[2].verdict.outcome == "refuted" and rows[2].specs == ()
    assert rows[-1].index is None and rows[-1].id == "em-3" and "Nearest" in rows[-1].problem
    assert "no claim spec" in format_claim_list(rows)
