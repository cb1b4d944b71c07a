"""Pre-registration locks: what a lock holds, how it is written, and what a run finds against it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from claimkit.preregistration import (
    NO_LOCK,
    PreregistrationError,
    check_spec,
    lock_path,
    make_lock,
    read_lock,
    write_lock,
)
from claimkit.provenance import content_hash
from claimkit.spec import load_spec

SPEC = """
schema = 1
paper = "demo"
title = "A demo paper"

[preregistration]
inputs = ["../corpus", "../claims/demo"]

[claims.d-1]
title = "A beats B"
scan_claim = "A beats B."
[claims.d-1.rule]
alpha = 0.05

[claims."d-1.sub"]
parent = "d-1"
title = "a sub-claim"
[claims."d-1.sub".rule]
alpha = 0.05

[claims.d-2]
title = "C is rare"
scan_claim = "C is rare."
[claims.d-2.rule]
alpha = 0.05
"""
T = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def layout(tmp_path):
    """specs/demo.toml declaring ../corpus (a directory) and ../claims/demo (the claim package)."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "corpus" / "families").mkdir(parents=True)
    (tmp_path / "corpus" / "shares.toml").write_text("vulnerable = 0.25\n")
    (tmp_path / "corpus" / "families" / "sql.toml").write_text("templates = 3\n")
    (tmp_path / "claims" / "demo").mkdir(parents=True)
    (tmp_path / "claims" / "demo" / "test_demo.py").write_text("def test(): pass\n")
    spec = tmp_path / "specs" / "demo.toml"
    spec.write_text(SPEC)
    return tmp_path, spec


def test_a_lock_holds_the_spec_claim_and_input_hashes_as_stable_pretty_json(layout):
    root, spec_path = layout
    spec = load_spec(spec_path)
    path, lock = write_lock(spec, now=T)
    assert path == root / "specs" / "demo.lock.json" == lock_path(spec_path)
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data == {
        "schema": 1, "spec": "demo.toml", "paper": "demo", "spec_hash": spec.hash,
        "claims": {cid: spec.claims[cid].hash for cid in ("d-1", "d-1.sub", "d-2")},
        "inputs": {"../claims/demo": content_hash(root / "claims" / "demo"),
                   "../corpus": content_hash(root / "corpus")},
        "commit": data["commit"], "dirty": data["dirty"], "locked_at": "2026-12-02T09:00:00+00:00",
    }
    assert read_lock(path) == lock


def test_locking_needs_every_declared_input(layout):
    root, spec_path = layout
    spec_path.write_text(SPEC.replace('"../corpus"', '"../corpus", "../missing.toml"'))
    with pytest.raises(PreregistrationError, match=r"input '../missing.toml' \(.*missing.toml\) not found"):
        make_lock(load_spec(spec_path))
    assert not lock_path(spec_path).exists()


def test_an_untouched_lock_preregisters_every_claim(layout):
    _, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    check = check_spec(load_spec(spec_path))
    assert check.preregistered
    assert check.for_claim("d-1") == {"status": "preregistered", "lock": check.lock,
                                      "locked_at": "2026-12-02T09:00:00+00:00", "differs": []}
    assert check.lock.endswith("specs/demo.lock.json")


def test_without_a_lock_nothing_is_preregistered(layout):
    _, spec_path = layout
    check = check_spec(load_spec(spec_path))
    assert check.for_claim("d-2") == {"status": "not preregistered", "lock": check.lock, "locked_at": None,
                                      "differs": [NO_LOCK]}


def test_a_changed_rule_is_attributed_to_its_claim_and_breaks_the_whole_lock(layout):
    _, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    spec_path.write_text(SPEC.replace('scan_claim = "C is rare."\n[claims.d-2.rule]\nalpha = 0.05',
                                      'scan_claim = "C is rare."\n[claims.d-2.rule]\nalpha = 0.01'))
    check = check_spec(load_spec(spec_path))
    assert check.for_claim("d-2")["differs"] == ["claim d-2 changed since the lock"]
    d1 = check.for_claim("d-1")
    assert d1["status"] == "not preregistered" and d1["differs"] == ["claim d-2 changed since the lock"]


def test_own_difference_comes_first_and_new_or_removed_claims_are_named(layout):
    _, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    edited = SPEC.replace("[claims.d-2]", '[claims.d-3]\ntitle = "new"\nscan_claim = "New."\n'
                          '[claims.d-3.rule]\nalpha = 0.05\n\n[claims.d-2]')
    edited = edited.replace("[claims.d-1.rule]\nalpha = 0.05", "[claims.d-1.rule]\nalpha = 0.04")
    spec_path.write_text(edited)
    check = check_spec(load_spec(spec_path))
    assert check.for_claim("d-3")["differs"][0] == "claim d-3 is not in the lock"
    assert check.for_claim("d-1.sub")["differs"][0] == "claim d-1.sub changed since the lock"  # its parent's plan
    assert "claim d-1 changed since the lock" in check.for_claim("d-1.sub")["differs"]
    spec_path.write_text(SPEC[: SPEC.index('[claims."d-1.sub"]')] + SPEC[SPEC.index("[claims.d-2]"):])
    assert "claim d-1.sub is in the lock but no longer in the spec" in check_spec(load_spec(spec_path)).differs


def test_a_changed_input_is_named_by_its_declared_path(layout):
    root, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    (root / "corpus" / "families" / "sql.toml").write_text("templates = 4\n")
    assert check_spec(load_spec(spec_path)).differs == ("input ../corpus changed since the lock",)
    (root / "corpus" / "families" / "sql.toml").write_text("templates = 3\n")
    (root / "claims" / "demo" / "__pycache__").mkdir()
    (root / "claims" / "demo" / "__pycache__" / "test_demo.cpython-311.pyc").write_bytes(b"\0")
    assert check_spec(load_spec(spec_path)).preregistered  # bytecode is not an input
    (root / "claims" / "demo" / "test_demo.py").write_text("def test(): assert True\n")
    assert check_spec(load_spec(spec_path)).differs == ("input ../claims/demo changed since the lock",)


def test_inputs_declared_after_the_lock_missing_or_dropped_are_named(layout):
    root, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    (root / "extra.txt").write_text("x")
    spec_path.write_text(SPEC.replace('["../corpus", "../claims/demo"]', '["../extra.txt", "../gone", "../corpus"]'))
    differs = check_spec(load_spec(spec_path)).differs
    assert set(differs) == {"input ../extra.txt is not in the lock", "input ../gone not found",
                            "input ../claims/demo is in the lock but no longer declared"}


def test_a_spec_change_outside_claims_still_breaks_the_lock(layout):
    _, spec_path = layout
    write_lock(load_spec(spec_path), now=T)
    spec_path.write_text(SPEC.replace('title = "A demo paper"', 'title = "A retitled paper"'))
    assert check_spec(load_spec(spec_path)).differs == (
        "the spec changed outside its claims and [experiment] since the lock",)


@pytest.mark.parametrize("text", ["{", '{"schema": 2}', '{"schema": 1, "spec_hash": "x", "locked_at": "t", "claims": []}'])
def test_a_malformed_lock_is_reported_not_raised(layout, text):
    _, spec_path = layout
    lock_path(spec_path).write_text(text)
    differs = check_spec(load_spec(spec_path)).differs
    assert len(differs) == 1 and differs[0].startswith("lock file unreadable: ")
    with pytest.raises(PreregistrationError, match=str(lock_path(spec_path).name)):
        read_lock(lock_path(spec_path))
    with pytest.raises(FileNotFoundError):
        read_lock(Path(spec_path).with_name("absent.lock.json"))
