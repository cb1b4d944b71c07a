"""Claim specs: the shipped spec loads, and bad specs fail naming file, claim and field."""

from pathlib import Path

import pytest

from claimkit.spec import SpecError, find_claim, load_spec, load_specs

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "fixtures" / "claims"

GOOD = """
schema = 1
paper = "demo"
title = "A demo paper"
[claims.c-1]
title = "x beats y"
scan_claim = "X beats Y."
paper_values = { x = 0.8 }
[claims.c-1.rule]
alpha = 0.05
[claims.c-1.profiles.organism]
n = 100
seeds = [0, 1]
[claims."c-1.sub"]
parent = "c-1"
title = "sub"
[claims."c-1.sub".rule]
alpha = 0.05
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_warning_framed_spec_has_the_five_scan_claims():
    spec = load_spec(SPECS / "warning_framed.toml")
    top = [c for c in spec.claims.values() if c.parent is None]
    assert [c.id for c in top] == ["wf-1", "wf-2", "wf-3", "wf-4", "wf-5"]
    assert spec.claims["wf-1"].paper_values["L1"] == pytest.approx(0.767)
    assert spec.claims["wf-1"].plan("smollm2-135m").seeds == (0, 1, 2, 3, 4)
    assert spec.scan is not None and spec.scan.exists()


def test_the_warning_framed_spec_is_version_2_with_its_checks_and_every_claim_requires_one():
    spec = load_spec(SPECS / "warning_framed.toml")
    assert spec.schema == 2
    assert set(spec.checks) == {"direct-learns", "enough-direct-outputs", "intervention-moves"}
    assert all(c.requires and "parts" in c.rule for c in spec.claims.values())
    assert all(len(c.plan("organism").seeds) >= 3 and len(c.plan("smollm2-135m").seeds) >= 5
               for c in spec.claims.values())


def test_the_replaced_spec_stays_readable_with_the_hash_of_its_verdicts():
    v1 = load_spec(SPECS / "archive" / "warning_framed.v1.toml")
    assert v1.schema == 1
    assert v1.hash == "sha256:97829c9995eb44f070ca126c3e5a6cfeda5956f5e1613f61c4cf2f60db1fc630"


def test_sub_claims_inherit_their_parents_sample_plans(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.claims["c-1.sub"].plan("organism").n == 100


def test_hash_ignores_formatting_but_not_values(tmp_path):
    a = load_spec(write(tmp_path, GOOD)).hash
    b = load_spec(write(tmp_path, "# a comment\n" + GOOD.replace("n = 100", "n   =   100"))).hash
    c = load_spec(write(tmp_path, GOOD.replace("n = 100", "n = 101"))).hash
    assert a == b != c


@pytest.mark.parametrize(
    "edit, message",
    [
        (("alpha = 0.05\n[claims.c-1.profiles", "alpha = 5\n[claims.c-1.profiles"), "claim 'c-1': field 'rule.alpha'"),
        (("seeds = [0, 1]", "seeds = []"), "profile 'organism': field 'seeds'"),
        (("n = 100", "n = -3"), "field 'n' must be a positive integer"),
        (('scan_claim = "X beats Y."', ""), "field 'scan_claim' is required"),
        (('parent = "c-1"', 'parent = "nope"'), "unknown claim 'nope'"),
        (("schema = 1", "schema = 7"), "field 'schema' must be one of [1, 2]"),
        (("paper_values = { x = 0.8 }", "paper_values = 3"), "field 'paper_values' must be a dict"),
    ],
)
def test_errors_name_file_claim_and_field(tmp_path, edit, message):
    path = write(tmp_path, GOOD.replace(*edit, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_invalid_toml_and_missing_file_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "schema = = 1"))
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.toml")


def test_unknown_claim_id_lists_the_known_ones():
    specs = load_specs(SPECS)
    assert find_claim(specs, "wf-3")[1].title
    with pytest.raises(SpecError, match="known ids: .*wf-1"):
        find_claim(specs, "wf-99")


def test_a_missing_sample_plan_names_the_profile():
    claim = load_spec(SPECS / "warning_framed.toml").claims["wf-1"]
    with pytest.raises(SpecError, match="no sample plan for profile 'laptop'"):
        claim.plan("laptop")


def test_a_claims_hash_follows_its_own_table_its_parents_and_the_experiment(tmp_path):
    two_claims = GOOD + '[claims.c-2]\ntitle = "other"\nscan_claim = "Other."\n[claims.c-2.rule]\nalpha = 0.05\n'
    base = load_spec(write(tmp_path, two_claims)).claims
    assert all(c.hash.startswith("sha256:") for c in base.values()) and len({c.hash for c in base.values()}) == 3

    def hashes(text):
        return {cid: c.hash for cid, c in load_spec(write(tmp_path, text)).claims.items()}

    # another claim's rule: only that claim changes
    other = hashes(two_claims.replace("[claims.c-2.rule]\nalpha = 0.05", "[claims.c-2.rule]\nalpha = 0.01"))
    assert other["c-2"] != base["c-2"].hash
    assert (other["c-1"], other["c-1.sub"]) == (base["c-1"].hash, base["c-1.sub"].hash)
    # a parent's plan: the parent and its sub-claim (decided on its samples)
    parent = hashes(two_claims.replace("n = 100", "n = 200"))
    assert parent["c-1"] != base["c-1"].hash and parent["c-1.sub"] != base["c-1.sub"].hash
    assert parent["c-2"] == base["c-2"].hash
    # the experiment: every claim; the paper's title: none
    experiment = hashes(two_claims.replace('title = "A demo paper"', 'title = "A demo paper"\n[experiment]\nk = 1', 1))
    assert all(experiment[cid] != base[cid].hash for cid in base)
    retitled = hashes(two_claims.replace('title = "A demo paper"', 'title = "Another title"', 1))
    assert retitled == {cid: c.hash for cid, c in base.items()}


def test_preregistration_inputs_are_declared_relative_to_the_spec(tmp_path):
    declared = GOOD.replace('title = "A demo paper"', 'title = "A demo paper"\n[preregistration]\n'
                            'inputs = ["../corpus", "data/shares.toml"]', 1)
    spec = load_spec(write(tmp_path, declared))
    assert spec.preregistration_inputs == ("../corpus", "data/shares.toml")
    assert spec.input_path("../corpus") == tmp_path / "../corpus"
    assert load_spec(write(tmp_path, GOOD)).preregistration_inputs == ()


@pytest.mark.parametrize(
    "table, message",
    [
        ('inputs = "corpus"', "field 'inputs' must be a list of paths"),
        ("inputs = [1]", "field 'inputs' must be a list of paths"),
        ('inputs = ["/abs/corpus"]', "must name paths relative to the spec file, not '/abs/corpus'"),
        ('inputs = ["a", "a"]', "names 'a' more than once"),
        ('files = ["a"]', "unknown field(s) files"),
    ],
)
def test_bad_preregistration_tables_name_the_field(tmp_path, table, message):
    path = write(tmp_path, GOOD.replace('title = "A demo paper"', f'title = "A demo paper"\n[preregistration]\n{table}', 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"{path}: [preregistration]" in str(info.value) and message in str(info.value)


# -- changelog ----------------------------------------------------------------------------

CHANGELOG = """
[[changelog]]
version = 2
claims = ["c-1", "c-1.sub"]
change = "n raised from 100 to 300"
why = "  100 could not detect the paper's effect  "
"""


def test_a_revised_spec_lists_each_change_with_its_reason(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + CHANGELOG))
    [entry] = spec.changelog
    assert (entry.version, entry.claims, entry.change) == (2, ("c-1", "c-1.sub"), "n raised from 100 to 300")
    assert entry.why == "100 could not detect the paper's effect"
    assert load_spec(write(tmp_path, GOOD)).changelog == ()
    # the reasons are part of the pre-registered spec: they are in its hash
    assert spec.hash != load_spec(write(tmp_path, GOOD + CHANGELOG.replace("300", "400"))).hash


def test_the_warning_framed_changelog_names_only_its_own_claims():
    spec = load_spec(SPECS / "warning_framed.toml")
    assert len(spec.changelog) >= 5 and all(e.version == 2 and e.change and e.why for e in spec.changelog)
    assert {c for e in spec.changelog for c in e.claims} <= set(spec.claims)
    assert load_spec(SPECS / "archive" / "warning_framed.v1.toml").changelog == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ('[changelog]\nversion = 2\n', "field 'changelog' must be an array of tables ([[changelog]] entries), got dict"),
        ("changelog = [1]\n", "changelog[0]: must be a table with version, claims, change, why, got int"),
        (CHANGELOG.replace('why = "  100 could not detect the paper\'s effect  "', ""), "changelog[0]: field(s) why missing"),
        (CHANGELOG + 'reason = "x"\n', "changelog[0]: unknown field(s) reason; an entry has only version"),
        (CHANGELOG.replace("version = 2", 'version = "2"'), "changelog[0]: field 'version' must be a positive integer"),
        (CHANGELOG.replace("version = 2", "version = 0"), "changelog[0]: field 'version' must be a positive integer"),
        (CHANGELOG.replace('claims = ["c-1", "c-1.sub"]', 'claims = "c-1"'), "changelog[0]: field 'claims' must be"),
        (CHANGELOG.replace('claims = ["c-1", "c-1.sub"]', "claims = []"), "changelog[0]: field 'claims' must be"),
        (CHANGELOG + CHANGELOG.replace('change = "n raised from 100 to 300"', 'change = " "'),
         "changelog[1]: field 'change' must be a non-empty string"),
    ],
)
def test_a_bad_changelog_names_the_file_the_entry_and_the_field(tmp_path, text, message):
    path = write(tmp_path, GOOD.replace('title = "A demo paper"\n', f'title = "A demo paper"\n{text}\n', 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
