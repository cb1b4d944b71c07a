"""`claimkit init`: a new paper's draft specs and skipped tests, written from its scan without losing a file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from claimkit.cli import main
from claimkit.scaffold import ScaffoldError, claim_prefix, package_name, plan
from claimkit.scan import format_claim_list, list_claims, load_scan, match_claim
from claimkit.spec import SpecError, load_spec, load_specs

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
EM_SCAN = REPO / "fixtures" / "scans" / "scan-v4.emergent-misalignment.json"
WF_SPEC = REPO / "fixtures" / "claims" / "warning_framed.toml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository with the first paper's spec and both scans, and no second paper yet."""
    (tmp_path / "fixtures" / "claims").mkdir(parents=True)
    (tmp_path / "fixtures" / "scans").mkdir()
    shutil.copy(WF_SPEC, tmp_path / "fixtures" / "claims")
    shutil.copy(EM_SCAN, tmp_path / "fixtures" / "scans")
    return tmp_path


def init(root: Path, *extra: str) -> int:
    scan = root / "fixtures" / "scans" / EM_SCAN.name
    return main(["init", str(scan), "--paper", "emergent-misalignment", "--root", str(root), *extra])


def test_init_writes_one_draft_claim_and_one_skipped_test_per_scan_claim(root, capsys):
    assert init(root) == 0
    scan = load_scan(root / "fixtures" / "scans" / EM_SCAN.name)
    spec = load_spec(root / "fixtures" / "claims" / "emergent_misalignment.toml")
    assert (spec.paper, spec.title, spec.arxiv_id) == ("emergent-misalignment", scan.paper.title, "2602.07852")
    assert spec.scan == scan.path.resolve()
    assert list(spec.claims) == [f"em-{k}" for k in range(1, 8)]
    assert [c.scan_claim for c in spec.claims.values()] == [c.text for c in scan.claims]  # exact text
    assert all(c.draft and not c.profiles for c in spec.claims.values())
    tests = sorted((root / "claims" / "emergent_misalignment").glob("test_claim*.py"))
    assert len(tests) == 7
    assert all('pytest.skip("em-' in t.read_text() and "not operationalised yet" in t.read_text() for t in tests)
    assert "em-7" in capsys.readouterr().out


def test_listing_a_scan_after_init_matches_every_claim_and_says_they_are_drafts(root):
    assert init(root) == 0
    scan = load_scan(root / "fixtures" / "scans" / EM_SCAN.name)
    specs = load_specs(root / "fixtures" / "claims")
    rows = list_claims(scan, None, specs)
    assert [row.specs for row in rows] == [(f"em-{k}",) for k in range(1, 8)]
    assert format_claim_list(rows).endswith("7 scan claim(s): 7 with a claim spec (7 of them drafts only), "
                                            "0 with a verdict")
    assert all(match_claim(scan, c.scan_claim) for c in specs["emergent-misalignment"].claims.values())


def test_init_refuses_before_writing_anything_when_a_file_is_in_the_way(root, capsys):
    package = root / "claims" / "emergent_misalignment"
    package.mkdir(parents=True)
    (package / "conftest.py").write_text("# mine\n")
    assert init(root) == 1
    assert "conftest.py already exists" in capsys.readouterr().err
    assert (package / "conftest.py").read_text() == "# mine\n"
    assert sorted(p.name for p in package.iterdir()) == ["conftest.py"]
    assert not (root / "fixtures" / "claims" / "emergent_misalignment.toml").exists()


def test_a_second_init_of_the_same_paper_changes_nothing(root, capsys):
    assert init(root) == 0
    spec = root / "fixtures" / "claims" / "emergent_misalignment.toml"
    before = spec.read_bytes()
    assert init(root) == 1
    assert "already has a claim spec" in capsys.readouterr().err
    assert spec.read_bytes() == before


def test_init_refuses_a_prefix_another_paper_uses(root, capsys):
    assert init(root, "--prefix", "wf") == 1
    assert "prefix 'wf' is taken" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["Emergent", "1paper", "em--x", "em x", ""])
def test_paper_names_must_be_lower_case_words(name):
    with pytest.raises(ScaffoldError, match="lower-case words"):
        package_name(name)


def test_claim_ids_take_the_initials_of_the_paper_name():
    assert claim_prefix("emergent-misalignment") == "em"
    assert claim_prefix("warning_framed") == "wf"
    assert package_name("emergent-misalignment") == "emergent_misalignment"


def test_titles_are_the_first_sentence_cut_at_a_word(root):
    scan = load_scan(root / "fixtures" / "scans" / EM_SCAN.name)
    scaffold = plan(scan, "em-paper", root=root, specs={}, prefix="emx")
    spec_text = scaffold.files[scaffold.spec_path]
    assert 'title = "The general misalignment solution is more efficient than the narrow solution ..."' in spec_text


def test_a_scan_with_no_claims_is_refused(root):
    path = root / "fixtures" / "scans" / "empty.json"
    data = json.loads(EM_SCAN.read_text())
    data["claims"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ScaffoldError, match="no claims"):
        plan(load_scan(path), "empty", root=root, specs={})


def test_a_rule_written_into_a_draft_is_validated(root):
    assert init(root) == 0
    path = root / "fixtures" / "claims" / "emergent_misalignment.toml"
    path.write_text(path.read_text().replace('rule = {}  # draft', 'rule = { alpha = 2 }  # draft', 1))
    with pytest.raises(SpecError, match="rule.alpha"):
        load_spec(path)


def scaffolded_project(root, pytester) -> None:
    """The scaffold of the EM scan copied into a pytester project with one CPU profile."""
    assert init(root) == 0
    for item in ("claims", "fixtures"):
        shutil.copytree(root / item, pytester.path / item)
    (pytester.path / "fixtures" / "profiles").mkdir()
    (pytester.path / "fixtures" / "profiles" / "cpu.toml").write_text("needs_gpu = false\n")
    pytester.makeini("[pytest]\nclaimkit_specs = fixtures/claims\nclaimkit_profiles_dir = fixtures/profiles\n"
                     "claimkit_no_report = true\n")


def test_generated_tests_run_and_skip_as_not_operationalised(root, pytester):
    scaffolded_project(root, pytester)
    result = pytester.runpytest_subprocess("claims/emergent_misalignment", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=7)
    result.stdout.fnmatch_lines(["*em-1 is not operationalised yet*"])


def test_deciding_a_draft_claim_is_a_usage_error(root, pytester):
    scaffolded_project(root, pytester)
    test = next((pytester.path / "claims" / "emergent_misalignment").glob("test_claim1_*.py"))
    test.write_text(
        "import pytest\n"
        "from claimkit.verdict import Decision, Evidence, Outcome\n\n"
        "@pytest.mark.claim('em-1')\n"
        "def test_decides(claim):\n"
        "    claim.decide(Decision(Outcome.SUPPORTED, 'made up', Evidence()))\n"
    )
    result = pytester.runpytest_subprocess(str(test), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*em-1* is a draft*"])
