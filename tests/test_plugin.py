"""The pytest plugin, run on small projects with pytester: outcomes, fail-on, profiles,
gpu skips, usage errors, xdist aggregation and the report files a run writes."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest_plugins = ["pytester"]

SPEC = """
schema = 1
paper = "demo"
title = "A demo paper"

[claims.d-1]
title = "A beats B"
scan_claim = "A happens far more often than B (80% vs 20%)."
paper_values = { A = 0.8, B = 0.2 }
[claims.d-1.rule]
alpha = 0.05
[claims.d-1.profiles.cpu]
n = 10
seeds = [0, 1]
[claims.d-1.profiles.big]
n = 50
seeds = [7]

[claims."d-1.sub"]
parent = "d-1"
title = "a sub-claim decided on the parent's samples"
[claims."d-1.sub".rule]
alpha = 0.05

[claims.d-2]
title = "C is rare"
scan_claim = "C is rare."
[claims.d-2.rule]
alpha = 0.05
[claims.d-2.profiles.organism]
n = 5
seeds = [3]
"""

# Decisions built by hand: the plugin is under test here, not the statistics.
HELPERS = """
from claimkit.verdict import Decision, Estimate, Evidence, Outcome, StatTest

def decision(outcome, n_to_decide=None):
    evidence = Evidence(
        estimates=(Estimate("A", 0.7, 0.5, 0.85, "clopper-pearson", 20, 14),
                   Estimate("B", 0.25, 0.1, 0.45, "clopper-pearson", 20, 5)),
        tests=(StatTest("fisher A>B", 0.003, 7.0, 0.006, "fisher_exact", "greater"),),
    )
    return Decision(Outcome(outcome), f"decided {outcome}", evidence, n_to_decide)
"""

# A stand-in for torch, so the gpu tests neither depend on this machine's GPU nor pay torch's import.
FAKE_TORCH = """
import sys, types
torch = types.ModuleType("torch")
torch.__version__ = "0.0-fake"
torch.cuda = types.SimpleNamespace(is_available=lambda: {cuda})
sys.modules["torch"] = torch
"""


@pytest.fixture
def project(pytester, tmp_path_factory, monkeypatch):
    """A pytester directory with a spec, two profiles (cpu, big: needs_gpu) and the ini options."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "mpl"))
    pytester.makeini(
        """
        [pytest]
        claimkit_specs = specs
        claimkit_profiles_dir = profiles
        claimkit_report_dir = out
        """
    )
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "demo.toml").write_text(SPEC)
    (pytester.path / "profiles").mkdir()
    (pytester.path / "profiles" / "cpu.toml").write_text("needs_gpu = false\n")
    (pytester.path / "profiles" / "big.toml").write_text('needs_gpu = true\ndescription = "a GPU model"\n')
    pytester.makepyfile(helpers=HELPERS)
    pytester.makeconftest(FAKE_TORCH.format(cuda=False))
    return pytester


def claim_test(name, claim_id, outcome, *, profile=False, n_to_decide=None, extra=""):
    args = "claim, profile" if profile else "claim"
    return textwrap.dedent(
        f"""
        @pytest.mark.claim({claim_id!r})
        def test_{name}({args}):
            {extra or 'pass'}
            claim.decide(decision({outcome!r}, {n_to_decide!r}))
        """
    )


def make_tests(pytester, *bodies, name="test_claims"):
    pytester.makepyfile(**{name: "import pytest\nfrom helpers import decision\n" + "\n".join(bodies)})


def run_verdicts(pytester):
    latest = pytester.path / "out" / "latest.json"
    return json.loads(latest.read_text())["verdicts"] if latest.exists() else []


# fnmatch patterns below write a literal "[" as "[[]".


# -- outcome mapping ------------------------------------------------------------


def test_supported_passes_refuted_fails_with_evidence_inconclusive_skips(project):
    make_tests(
        project,
        claim_test("supported", "d-1", "supported"),
        claim_test("refuted", "d-1.sub", "refuted"),
        claim_test("inconclusive", "d-2", "inconclusive", n_to_decide=400),
    )
    result = project.runpytest("--claimkit-no-report", "-rs")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*claim d-1.sub REFUTED on profile organism (model organism)",
            "*scan claim: A happens far more often than B (80% vs 20%).",  # a sub-claim answers to its parent's text
            "*reason: decided refuted",
            "*estimate: A=70.0% [[]50.0%, 85.0%] (14/20)",
            "*test: fisher A>B: p=0.003 (adj. 0.006)",
            # the inconclusive skip points at the test's line, not into claimkit
            "SKIPPED [[]1] test_claims.py:*: claim d-2 inconclusive: decided inconclusive; n per group to decide: 400",
        ]
    )
    result.stdout.fnmatch_lines(["*claimkit verdicts*", "d-1 *SUPPORTED*A=70.0%*| paper: A=0.8, B=0.2"])
    assert result.ret == 1
    assert not (project.path / "out").exists()  # --claimkit-no-report


def test_decide_rejects_a_second_verdict_and_a_non_decision(project):
    make_tests(
        project,
        claim_test("twice", "d-2", "supported", extra="claim.decide(decision('supported'))"),
        "@pytest.mark.claim('d-2')\ndef test_not_a_decision(claim):\n    claim.decide('supported')\n",
    )
    result = project.runpytest("--claimkit-no-report")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*already decided*one verdict per test*", "*takes a claimkit.verdict.Decision*"])


# -- manipulation checks -------------------------------------------------------------

CHECKED_SPEC = """
schema = 1
paper = "checked"
title = "A paper whose claim presupposes that training took"

[checks.trains]
title = "The training took"

[claims.k-1]
title = "A beats B"
scan_claim = "A beats B."
requires = ["trains"]
analog = "A and B as two toy arms, not the paper's models."
[claims.k-1.rule]
alpha = 0.05
"""


def test_a_failed_manipulation_check_reports_not_tested_not_a_verdict_of_the_claim(project):
    (project.path / "specs" / "checked.toml").write_text(CHECKED_SPEC)
    body = textwrap.dedent(
        """
        from claimkit.verdict import CheckResult

        def measured(passed):
            return {"trains": CheckResult("trains", "The training took", passed, f"L0 - filler = {'+30' if passed else '+2'} pp",
                                          {"per_seed": [0.3 if passed else 0.02]})}

        @pytest.mark.claim("k-1")
        def test_failed(claim):
            claim.require_checks(measured(False))
            raise AssertionError("a claim whose check failed is never measured")

        @pytest.mark.claim("k-1")
        def test_passed(claim):
            claim.require_checks(measured(True))
            claim.decide(decision("supported"))

        @pytest.mark.claim("k-1")
        def test_unmeasured(claim):
            claim.require_checks({})
        """
    )
    make_tests(project, body)
    result = project.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines([
        "*requires check(s) [[]'trains'] that the test did not measure*",
        "k-1 *NOT TESTED*",
        "*claim k-1 not tested: The manipulation check 'trains' failed (L0 - filler = +2 pp).",
    ])
    verdicts = {v["nodeid"].split("::")[1]: v for v in run_verdicts(project)}
    assert verdicts["test_failed"]["outcome"] == "not tested"
    assert verdicts["test_failed"]["checks"]["trains"]["passed"] is False
    assert verdicts["test_passed"]["outcome"] == "supported"
    assert verdicts["test_passed"]["checks"]["trains"]["numbers"] == {"per_seed": [0.3]}
    assert verdicts["test_failed"]["evidence"]["extra"]["analog"] == "A and B as two toy arms, not the paper's models."
    report = (project.path / "out" / "latest" / "report.md").read_text()
    assert "NOT TESTED" in report
    assert "**Measured as:** A and B as two toy arms" in report  # what was measured, though nothing was decided
    assert "<b>Measured as:</b> A and B as two toy arms" in (project.path / "out" / "latest" / "report.html").read_text()


# -- fail-on --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fail_on, outcomes, status, note",
    [
        ("refuted", ["supported", "inconclusive"], 0, "1 inconclusive verdict does not fail the session"),
        ("refuted", ["supported", "refuted"], 1, "1 refuted verdict fails the session (--claimkit-fail-on=refuted)"),
        ("inconclusive", ["supported", "inconclusive"], 1, "1 inconclusive verdict fails the session"),
        ("inconclusive", ["refuted"], 1, "1 refuted verdict fails the session (--claimkit-fail-on=inconclusive)"),
        ("never", ["refuted", "inconclusive", "refuted"], 0,
         "2 refuted verdicts and 1 inconclusive verdict do not fail the session (--claimkit-fail-on=never)"),
        ("never", ["supported"], 0, "no failures, errors or failing verdicts"),
    ],
)
def test_fail_on_decides_which_verdicts_fail_the_session(project, fail_on, outcomes, status, note):
    make_tests(project, *(claim_test(f"c{i}", "d-2", o) for i, o in enumerate(outcomes)))
    result = project.runpytest(f"--claimkit-fail-on={fail_on}", "--claimkit-no-report")
    assert result.ret == status
    result.stdout.fnmatch_lines([f"claimkit: exit status {status}: {note}*"])


def test_fail_on_is_read_from_the_ini_file_and_validated(project):
    make_tests(project, claim_test("refuted", "d-2", "refuted"))
    project.makeini("[pytest]\nclaimkit_specs = specs\nclaimkit_fail_on = never\nclaimkit_no_report = true\n")
    assert project.runpytest().ret == 0
    project.makeini("[pytest]\nclaimkit_specs = specs\nclaimkit_fail_on = sometimes\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*claimkit_fail_on must be one of refuted, inconclusive, never, got 'sometimes'"])


def test_errors_are_never_verdicts_and_always_fail(project):
    make_tests(
        project,
        claim_test("good", "d-1", "supported"),
        "@pytest.mark.claim('d-2')\ndef test_raises_before(claim):\n    raise RuntimeError('broken fixture data')\n",
        claim_test("raises_after", "d-2", "supported").rstrip() + "\n    raise ValueError('after the verdict')\n",
        "def test_plain_failure():\n    assert 1 == 2\n",
    )
    result = project.runpytest("--claimkit-fail-on=never")
    result.assert_outcomes(passed=1, failed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*test_raises_after decided a verdict and then failed: counted as an error, not a verdict",
            "claimkit: exit status 1: 3 failures or errors that are not verdicts fail the session*",
        ]
    )
    assert [v["claim_id"] for v in run_verdicts(project)] == ["d-1"]


def test_setup_errors_fail_even_with_fail_on_never(project):
    make_tests(
        project,
        "@pytest.fixture\ndef data():\n    raise OSError('no data')\n",
        "@pytest.mark.claim('d-2')\ndef test_uses_data(claim, data):\n    pass\n",
    )
    result = project.runpytest("--claimkit-fail-on=never", "--claimkit-no-report")
    result.assert_outcomes(errors=1)
    assert result.ret == 1


# -- usage errors -----------------------------------------------------------------


def test_unknown_claim_id_and_missing_marker_are_clear_errors(project):
    make_tests(
        project,
        "@pytest.mark.claim('d-9')\ndef test_unknown(claim):\n    pass\n",
        "def test_unmarked(claim):\n    pass\n",
    )
    result = project.runpytest("--claimkit-no-report")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "test_claims.py::test_unknown: @pytest.mark.claim('d-9'): no claim spec has the id 'd-9' "
            "(known ids: d-1, d-1.sub, d-2)",
            "test_claims.py::test_unmarked: uses the 'claim' fixture but has no @pytest.mark.claim*",
        ]
    )
    assert "During handling" not in result.stdout.str() and "Traceback" not in result.stdout.str()


def test_a_broken_spec_names_its_file(project):
    (project.path / "specs" / "demo.toml").write_text('schema = 1\npaper = "demo"\n')
    make_tests(project, claim_test("x", "d-1", "supported"))
    result = project.runpytest("--claimkit-no-report")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*specs/demo.toml: field 'title' is missing"])


# -- profiles and gpu ---------------------------------------------------------------


def test_profile_parametrises_claim_tests_and_marks_gpu_profiles(project):
    make_tests(
        project,
        """
@pytest.mark.claim("d-1")
def test_plan(claim, profile):
    assert claim.profile == profile
    claim.model = f"model-of-{profile}"
    verdict = claim.decide(decision("supported"))
    assert (verdict.n, verdict.seeds) == ({"cpu": (10, (0, 1)), "big": (50, (7,))}[profile])
    assert verdict.model == f"model-of-{profile}"

@pytest.mark.claim("d-2")
def test_default_profile(claim):
    assert claim.profile == "organism" and claim.plan.n == 5
""",
    )
    result = project.runpytest("-v", "-rs", "--claimkit-no-report")
    result.stdout.fnmatch_lines(
        [
            "*test_plan[[]big] SKIPPED*",
            "*test_plan[[]cpu] PASSED*",
            "*test_default_profile PASSED*",
            "SKIPPED [[]1] *: needs CUDA: torch 0.0-fake sees no CUDA device (torch.cuda.is_available() is False)",
        ]
    )
    result = project.runpytest("-v", "-m", "not gpu", "--claimkit-no-report")
    result.assert_outcomes(passed=2, deselected=1)
    result = project.runpytest("-v", "--claimkit-profile", "big", "--claimkit-no-report")
    result.assert_outcomes(passed=1, skipped=1)


def test_gpu_tests_run_where_cuda_is_available(project):
    project.makeconftest(FAKE_TORCH.format(cuda=True))
    make_tests(project, claim_test("plan", "d-1", "supported", profile=True))
    result = project.runpytest("-v", "--claimkit-no-report")
    result.assert_outcomes(passed=2)


def test_missing_torch_is_the_skip_reason(project):
    project.makeconftest("import sys\nsys.modules['torch'] = None  # import torch raises ImportError\n")
    project.makepyfile(test_gpu="import pytest\n\n@pytest.mark.gpu\ndef test_needs_gpu():\n    pass\n")
    result = project.runpytest("-rs")
    result.stdout.fnmatch_lines(["SKIPPED [[]1] test_gpu.py:*: needs CUDA: torch is not installed"])


def test_unknown_profile_is_a_clear_error(project):
    make_tests(project, claim_test("plan", "d-1", "supported", profile=True))
    result = project.runpytest("--claimkit-profile", "tpu", "--claimkit-no-report")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown profile 'tpu' (--claimkit-profile); profiles in *profiles: big, cpu"])
    assert "During handling" not in result.stdout.str()


def test_unrelated_profile_fixtures_and_own_parametrisation_are_left_alone(project):
    project.makepyfile(
        test_other="""
import pytest

@pytest.fixture
def profile():
    return "mine"

def test_own_fixture(profile):
    assert profile == "mine"

@pytest.mark.parametrize("profile", ["chosen"])
def test_own_parameters(profile):
    assert profile == "chosen"
"""
    )
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2)


# -- start-up, strict markers, entry point -------------------------------------------


def test_entry_point_plugin_passes_strict_markers_and_stays_light(project):
    project.makeconftest(
        """
import sys

def pytest_sessionfinish(session):
    heavy = sorted(m for m in ("torch", "matplotlib", "transformers") if m in sys.modules)
    print("HEAVY-MODULES:", heavy)
"""
    )
    make_tests(
        project,
        claim_test("d2", "d-2", "supported"),
        "@pytest.mark.gpu\n@pytest.mark.claim('d-2')\ndef test_gpu_claim(claim):\n    pass\n",
    )
    result = project.runpytest_subprocess("--strict-markers", "-m", "not gpu", "-s", "--claimkit-no-report")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*HEAVY-MODULES: [[][]]"])  # no gpu test left: torch never imported
    project.makepyfile(test_typo="import pytest\n\n@pytest.mark.calim('d-2')\ndef test_typo():\n    pass\n")
    result = project.runpytest_subprocess("--strict-markers", "test_typo.py")
    result.stdout.fnmatch_lines(["*'calim' not found in `markers` configuration option*"])


def test_works_without_xdist(project):
    make_tests(project, claim_test("d2", "d-2", "refuted"))
    result = project.runpytest_subprocess("-p", "no:xdist", "--claimkit-fail-on=never")
    assert result.ret == 0
    assert [v["outcome"] for v in run_verdicts(project)] == ["refuted"]


# -- xdist ------------------------------------------------------------------------------


def test_xdist_workers_verdicts_reach_the_controller_report_and_summary(project):
    pytest.importorskip("xdist")
    make_tests(
        project,
        claim_test("a", "d-1", "supported", profile=True),  # cpu and big (skipped: no CUDA)
        claim_test("b", "d-1.sub", "refuted", profile=True),
        claim_test("c", "d-2", "inconclusive", n_to_decide=40),
        claim_test("d", "d-2", "supported", extra="import time; time.sleep(0.2)"),
        "def test_plain():\n    pass\n",
    )
    result = project.runpytest_subprocess("-n", "2", "--claimkit-fail-on=never")
    result.assert_outcomes(passed=3, failed=1, skipped=3)
    assert result.ret == 0  # the controller counted the worker's failure as a verdict, not an error
    result.stdout.fnmatch_lines_random(
        [
            "d-1 *cpu *SUPPORTED*",
            "d-1.sub *cpu *REFUTED*",
            "d-2 *organism *INCONCLUSIVE*",
            "d-2 *organism *SUPPORTED*",
            "claimkit: report written to *out*",
            "claimkit: exit status 0: 1 refuted verdict and 1 inconclusive verdict do not fail the session*",
        ]
    )
    verdicts = run_verdicts(project)
    assert sorted((v["claim_id"], v["profile"], v["outcome"]) for v in verdicts) == [
        ("d-1", "cpu", "supported"),
        ("d-1.sub", "cpu", "refuted"),
        ("d-2", "organism", "inconclusive"),
        ("d-2", "organism", "supported"),
    ]
    runs = [p for p in (project.path / "out").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1  # written once, by the controller, not by each worker
    # each verdict's record was made by the worker that decided it, and says how it was decided
    assert all(v["provenance"]["claim_code"].startswith("sha256:") for v in verdicts)
    assert all(v["preregistration"]["differs"] == ["no lock file"] for v in verdicts)


# -- one GPU per xdist worker --------------------------------------------------------------

# Each test records what its worker sees; the file is named by the worker's id.
SEES = """
import os, pathlib, pytest

@pytest.mark.parametrize("i", range({tests}))
def test_records_its_devices(i):
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
    pathlib.Path("seen", os.environ["PYTEST_XDIST_WORKER"]).write_text(seen)
"""

# An nvidia-smi -L listing: two GPUs, the second with a MIG instance (a line of its own).
NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA H200 (UUID: GPU-aaaa-0000)"
echo "GPU 1: NVIDIA H200 (UUID: GPU-bbbb-1111)"
echo "  MIG 1g.18gb     Device  0: (UUID: MIG-cccc-2222)"
"""


def devices_seen(project, workers, *args):
    """Run SEES on `workers` xdist workers (one test each: xdist hands them out round robin)."""
    pytest.importorskip("xdist")
    project.makepyfile(test_sees=SEES.format(tests=workers))
    (project.path / "seen").mkdir(exist_ok=True)
    result = project.runpytest_subprocess("-n", str(workers), "--claimkit-no-report", *args)
    result.assert_outcomes(passed=workers)
    return result, {p.name: p.read_text() for p in (project.path / "seen").iterdir()}


def fake_path(project, monkeypatch, nvidia_smi=None):
    """PATH with only a fake nvidia-smi (or none at all); CUDA_VISIBLE_DEVICES unset."""
    bin_dir = project.path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(nvidia_smi)
        (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_each_worker_sees_one_of_the_controllers_visible_devices(project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    result, seen = devices_seen(project, 3)
    assert seen == {"gw0": "3", "gw1": "5", "gw2": "3"}  # three workers, two GPUs: gw2 shares the first
    result.stdout.fnmatch_lines(["claimkit: GPUs 3, 5: xdist worker gwK sees only the K-th (mod 2)*"])


def test_gpus_are_counted_with_nvidia_smi_when_nothing_restricts_them(project, monkeypatch):
    fake_path(project, monkeypatch, NVIDIA_SMI)
    _, seen = devices_seen(project, 2)
    assert seen == {"gw0": "GPU-aaaa-0000", "gw1": "GPU-bbbb-1111"}


@pytest.mark.parametrize("nvidia_smi", [None, "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n"],
                         ids=["no-nvidia-smi", "nvidia-smi-fails"])
def test_no_pinning_on_a_machine_without_gpus(project, monkeypatch, nvidia_smi):
    fake_path(project, monkeypatch, nvidia_smi)
    result, seen = devices_seen(project, 2)
    assert seen == {"gw0": "(unset)", "gw1": "(unset)"}
    assert "claimkit: GPUs" not in result.stdout.str()


def test_an_empty_device_list_means_no_gpus_and_stays_as_it_is(project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _, seen = devices_seen(project, 2)
    assert seen == {"gw0": "", "gw1": ""}


def test_pinning_can_be_turned_off_by_option_and_by_ini(project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    result, seen = devices_seen(project, 2, "--claimkit-no-gpu-pinning")
    assert seen == {"gw0": "3,5", "gw1": "3,5"}
    assert "claimkit: GPUs" not in result.stdout.str()
    project.makeini("[pytest]\nclaimkit_specs = specs\nclaimkit_no_gpu_pinning = true\n")
    _, seen = devices_seen(project, 2)
    assert seen == {"gw0": "3,5", "gw1": "3,5"}


def test_without_xdist_workers_the_process_keeps_every_gpu(project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    project.makepyfile(test_one="import os\n\ndef test_sees():\n    assert os.environ['CUDA_VISIBLE_DEVICES'] == '3,5'\n")
    project.runpytest_subprocess("--claimkit-no-report").assert_outcomes(passed=1)


# -- the report a run writes --------------------------------------------------------------


def test_a_run_writes_its_report_history_and_latest(project):
    make_tests(project, claim_test("a", "d-1", "supported", profile=True), claim_test("b", "d-2", "refuted"))
    result = project.runpytest("--claimkit-fail-on=never", "--claimkit-profile=cpu")
    assert result.ret == 0
    out = project.path / "out"
    latest = (out / "latest").resolve()
    data = json.loads((latest / "verdicts.json").read_text())
    assert data["schema"] == 1 and data["profiles"] == ["cpu", "organism"]
    assert data["command"].startswith("pytest ") and "--claimkit-profile=cpu" in data["command"]
    d1 = data["verdicts"][0]
    assert (d1["claim_id"], d1["profile"], d1["model"], d1["outcome"]) == ("d-1", "cpu", "cpu", "supported")
    assert d1["scan_claim"] == "A happens far more often than B (80% vs 20%)."
    assert d1["evidence"]["paper_values"] == {"A": 0.8, "B": 0.2}  # from the spec, as the test gave none
    assert d1["spec_hash"].startswith("sha256:") and d1["nodeid"] == "test_claims.py::test_a[cpu]"
    assert "<img" in (latest / "report.html").read_text() and (latest / "report.md").is_file()
    assert json.loads((out / "latest.json").read_text()) == data
    # the rules' error rates are looked up beside the run's specs: this schema-1 spec has none
    assert (f"- demo: its spec {project.path / 'specs' / 'demo.toml'} declares no [calibration]: its rules' error "
            "rates are not simulated") in (latest / "report.md").read_text()

    # the next run: history grows, latest moves, the changed verdict is named
    make_tests(project, claim_test("a", "d-1", "inconclusive", profile=True), claim_test("b", "d-2", "refuted"))
    result = project.runpytest("--claimkit-fail-on=never", "--claimkit-profile=cpu")
    result.stdout.fnmatch_lines(
        [f"claimkit: 1 verdict change(s) since run {latest.name}", "  changed: d-1 [[]cpu, cpu]: supported -> inconclusive"]
    )
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [(h["claim_id"], h["outcome"]) for h in history] == [
        ("d-1", "supported"), ("d-2", "refuted"), ("d-1", "inconclusive"), ("d-2", "refuted"),
    ]
    assert (out / "latest").resolve() != latest and (out / "latest").resolve().name == history[-1]["run_id"]


# -- provenance and pre-registration ---------------------------------------------------------

DEMO_SCAN = {"paper": {"title": "A demo paper"}, "scan_version": 2,
             "claims": [{"claim": "C is rare.", "evidence": "a table", "supported": "moderate"}]}


def latest_run(project):
    """The newest run's verdicts.json (as data) and report.md (as text)."""
    latest = (project.path / "out" / "latest").resolve()
    return json.loads((latest / "verdicts.json").read_text()), (latest / "report.md").read_text()


def marked_record(project):
    """Mark a fresh copy of the demo scan with the newest run; its one record."""
    from claimkit.cli import main

    scan = project.path / "scan.json"
    scan.write_text(json.dumps(DEMO_SCAN, indent=2))
    assert main(["mark", str(scan), "--report", str(project.path / "out" / "latest.json"),
                 "--specs", str(project.path / "specs")]) == 0
    return json.loads(scan.read_text())["claims"][0]["verification"]["records"][0]


def test_a_run_is_preregistered_only_while_its_spec_and_inputs_match_the_lock(project):
    from claimkit.cli import main

    spec = project.path / "specs" / "demo.toml"
    spec.write_text(SPEC.replace('title = "A demo paper"',
                                 'title = "A demo paper"\n[preregistration]\ninputs = ["../data/shares.toml"]', 1))
    shares = project.path / "data" / "shares.toml"
    shares.parent.mkdir()
    shares.write_text("vulnerable = 0.25\n")
    make_tests(project, claim_test("d2", "d-2", "supported"))

    result = project.runpytest()
    result.stdout.fnmatch_lines(["d-2 *organism *SUPPORTED  [[]not pre-registered]  *", "    not pre-registered: no lock file"])

    assert main(["preregister", str(spec)]) == 0
    result = project.runpytest()
    assert result.ret == 0 and "pre-registered" not in result.stdout.str()
    data, md = latest_run(project)
    assert data["verdicts"][0]["preregistration"] == {
        "status": "preregistered", "lock": "specs/demo.lock.json",
        "locked_at": json.loads((project.path / "specs" / "demo.lock.json").read_text())["locked_at"], "differs": [],
    }
    assert "- pre-registration: preregistered (lock specs/demo.lock.json" in md
    assert marked_record(project)["preregistration"]["status"] == "preregistered"

    shares.write_text("vulnerable = 0.30\n")  # an input the decision depends on, edited after the lock
    result = project.runpytest()
    changed_input = "input ../data/shares.toml changed since the lock"
    result.stdout.fnmatch_lines(["d-2 *SUPPORTED  [[]not pre-registered]  *", f"    not pre-registered: {changed_input}"])
    data, md = latest_run(project)
    assert data["verdicts"][0]["preregistration"]["status"] == "not preregistered"
    assert data["verdicts"][0]["preregistration"]["differs"] == [changed_input]
    assert "| **supported** [not pre-registered] |" in md and f"not pre-registered: {changed_input}" in md
    record = marked_record(project)
    assert record["preregistration"]["differs"] == [changed_input] and record["claim_hash"].startswith("sha256:")

    shares.write_text("vulnerable = 0.25\n")
    spec.write_text(spec.read_text().replace("[claims.d-2.rule]\nalpha = 0.05", "[claims.d-2.rule]\nalpha = 0.01"))
    result = project.runpytest()
    result.stdout.fnmatch_lines([
        "d-2 *SUPPORTED  [[]not pre-registered]  [[]changed after a result was seen]  *",
        "    not pre-registered: claim d-2 changed since the lock",
        "    changed after a result was seen: run * recorded supported under claim hash sha256:*; "
        "this verdict was decided under sha256:*",
    ])
    data, md = latest_run(project)
    assert data["verdicts"][0]["preregistration"]["differs"] == ["claim d-2 changed since the lock"]
    assert "**Changed after a result was seen:**" in md
    history = [json.loads(line) for line in (project.path / "out" / "history.jsonl").read_text().splitlines()]
    assert len({h["claim_hash"] for h in history}) == 2 and history[-1]["changed_after_result"]["outcome"] == "supported"
    assert marked_record(project)["preregistration"]["changed_after_result"]["run_id"] == history[-2]["run_id"]


def test_runs_of_different_code_differ_in_their_provenance(project, monkeypatch, capsys):
    from claimkit import provenance
    from claimkit.cli import main

    make_tests(project, claim_test("d2", "d-2", "supported"))
    project.runpytest("--claimkit-profile=cpu")
    first, _ = latest_run(project)
    record = first["verdicts"][0]["provenance"]
    assert record["claim_dir"] == "." and record["command"].startswith("pytest --claimkit-profile=cpu")
    assert record["versions"]["python"] and record["device"]["gpu"] is None and record["device"]["cpu_count"] >= 1
    assert first["provenance"]["claimkit_source"] == record["claimkit_source"]

    make_tests(project, claim_test("d2", "d-2", "supported", extra="x = 1  # the claim module, edited"))
    project.runpytest("--claimkit-profile=cpu")
    second, _ = latest_run(project)
    assert second["verdicts"][0]["provenance"]["claim_code"] != record["claim_code"]
    assert second["verdicts"][0]["provenance"]["claimkit_source"] == record["claimkit_source"]

    monkeypatch.setattr(provenance, "claimkit_source_hash", lambda: "sha256:an-edited-claimkit")
    project.runpytest("--claimkit-profile=cpu")
    third, md = latest_run(project)
    assert third["provenance"]["claimkit_source"] == third["verdicts"][0]["provenance"]["claimkit_source"]
    assert third["provenance"]["claimkit_source"] == "sha256:an-edited-claimkit"
    assert "- claimkit source: sha256:an-edited-claimkit" in md
    capsys.readouterr()
    assert main(["report", "--report-dir", str(project.path / "out")]) == 0
    assert (f"  code differs: claimkit source {record['claimkit_source']} -> claimkit source sha256:an-edited-claimkit"
            in capsys.readouterr().out)
