"""claimkit's pytest plugin: options, markers, fixtures and hooks, nothing else.

The work lives in `claimkit.fixture` (the object a claim test talks to),
`claimkit.session` (run-wide state: profiles, specs, verdicts, exit status) and
`claimkit.report` (the files a run writes). Start-up stays light: torch is
imported only when a collected test is marked `gpu`, matplotlib only when a
report is drawn. Under xdist on a machine with GPUs, each worker is pinned to one
GPU (`claimkit.gpus`) before anything in it initialises CUDA.
"""

from __future__ import annotations

import shlex
from functools import cached_property
from typing import Any

import pytest

from claimkit import gpus
from claimkit.fixture import ClaimRecorder, claim_for
from claimkit.session import FAIL_ON, ClaimkitSession, ProfileError

SESSION = pytest.StashKey[ClaimkitSession]()
CONTROLLER = "claimkit-controller"
_GPUS_INPUT = "claimkit_gpus"  # the controller's GPU list, in each xdist worker's workerinput


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claimkit", "claimkit: paper claims as tests")
    group.addoption(
        "--claimkit-profile", action="append", dest="claimkit_profiles", metavar="NAME", default=None,
        help="model profile to run claim tests on; repeat (or comma-separate) for several "
        "(default: every profile in claimkit_profiles_dir)",
    )
    group.addoption(
        "--claimkit-report-dir", dest="claimkit_report_dir", metavar="DIR", default=None,
        help="where runs write their verdict reports (default: ini claimkit_report_dir, 'reports')",
    )
    group.addoption(
        "--claimkit-fail-on", dest="claimkit_fail_on", choices=FAIL_ON, default=None,
        help="which verdicts fail the session: refuted (default; refuted only), inconclusive "
        "(refuted, inconclusive and not tested) or never (only failures and errors that are not verdicts)",
    )
    group.addoption(
        "--claimkit-no-report", dest="claimkit_no_report", action="store_true", default=False,
        help="do not write a verdict report for this run",
    )
    group.addoption(
        "--claimkit-no-gpu-pinning", dest="claimkit_no_gpu_pinning", action="store_true", default=False,
        help="under xdist, let every worker see all GPUs (default: worker gwK sees only the K-th GPU, "
        "mod their number, through CUDA_VISIBLE_DEVICES)",
    )
    parser.addini("claimkit_specs", "directory of claim spec TOML files", default="fixtures/claims")
    parser.addini("claimkit_profiles_dir", "directory of model profile TOML files", default="fixtures/profiles")
    parser.addini("claimkit_profiles", "profiles to run claim tests on (default: all)", type="args", default=[])
    parser.addini("claimkit_report_dir", "where runs write their verdict reports", default="reports")
    parser.addini("claimkit_fail_on", "which verdicts fail the session: refuted, inconclusive, never", default="refuted")
    parser.addini("claimkit_no_report", "do not write verdict reports", type="bool", default=False)
    parser.addini("claimkit_no_gpu_pinning", "let every xdist worker see all GPUs", type="bool", default=False)


@pytest.hookimpl(tryfirst=True)  # before other plugins' configure: one of them might initialise CUDA
def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config):
        _pin_worker_gpu(config)
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped, with the reason, where none is usable")
    config.addinivalue_line("markers", "claim(id): the id of the claim spec this test decides")
    fail_on = config.getoption("claimkit_fail_on") or config.getini("claimkit_fail_on")
    if fail_on not in FAIL_ON:
        raise pytest.UsageError(f"claimkit_fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
    ini_base = config.inipath.parent if config.inipath else config.rootpath
    cli_base = config.invocation_params.dir
    report_option = config.getoption("claimkit_report_dir")
    names = [
        name.strip()
        for value in (config.getoption("claimkit_profiles") or config.getini("claimkit_profiles"))
        for name in value.split(",")
        if name.strip()
    ]
    run = ClaimkitSession(
        specs_dir=ini_base / config.getini("claimkit_specs"),
        profiles_dir=ini_base / config.getini("claimkit_profiles_dir"),
        profile_names=names,
        report_dir=cli_base / report_option if report_option else ini_base / config.getini("claimkit_report_dir"),
        fail_on=fail_on,
        write_report=not (config.getoption("claimkit_no_report") or config.getini("claimkit_no_report")),
        command=shlex.join(["pytest", *config.invocation_params.args]),
        checkout=config.rootpath,
    )
    config.stash[SESSION] = run
    if not _is_worker(config):  # xdist workers only decide; the controller collects and reports
        config.pluginmanager.register(_ControllerHooks(run, pin_gpus=_gpu_pinning(config)), CONTROLLER)


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.stash[SESSION]
    profiles = ", ".join(run.profile_names) or f"all in {run.profiles_dir}"
    report = f"report to {run.report_dir}" if run.write_report else "no report"
    lines = [f"claimkit: specs {run.specs_dir}; profiles {profiles}; {report}; fail on {run.fail_on}"]
    controller = config.pluginmanager.get_plugin(CONTROLLER)
    distributed = config.pluginmanager.hasplugin("dsession")  # xdist's controller: -n/--dist in use
    if distributed and controller is not None and controller.pin_gpus and controller.visible_gpus:
        found = controller.visible_gpus
        lines.append(f"claimkit: GPUs {', '.join(found)}: xdist worker gwK sees only the K-th (mod {len(found)}) "
                     f"through {gpus.VISIBLE_DEVICES} (--claimkit-no-gpu-pinning: every worker sees all)")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that asks for `profile` once per selected profile (ids = names)."""
    if "profile" not in metafunc.fixturenames or not _profile_is_ours(metafunc):
        return
    try:
        profiles = metafunc.config.stash[SESSION].profiles()
    except ProfileError as exc:  # a collection error with just the message
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    params = [pytest.param(p.name, id=p.name, marks=[pytest.mark.gpu] if p.needs_gpu else []) for p in profiles]
    # Session scope: the expensive per-profile fixtures (models, samples) can depend on it.
    metafunc.parametrize("profile", params, indirect=True, scope="session")


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: torch is imported only if a gpu test remains
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = _cuda_missing()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> str:
    """The name of the model profile this test runs on (parametrised by claimkit).

    A conftest may override this fixture and turn `request.param` (the name) into a
    richer object; `claim.profile` then uses that object's `.name`.
    """
    if not hasattr(request, "param"):
        pytest.fail("the 'profile' fixture was not parametrised by claimkit (is 'profile' also "
                    "parametrised by the test itself?)", pytrace=False)
    return request.param


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> ClaimRecorder:
    """The claim named by the test's @pytest.mark.claim: its spec, plan and `decide`."""
    run = request.config.stash[SESSION]
    return claim_for(request, run.specs, command=run.command, preregistration=run.preregistration)


class _ControllerHooks:
    """Hooks of the process that sees every report: the only one, or xdist's controller."""

    def __init__(self, run: ClaimkitSession, *, pin_gpus: bool) -> None:
        self.run = run
        self.pin_gpus = pin_gpus

    @cached_property
    def visible_gpus(self) -> tuple[str, ...]:
        """The GPUs this process sees, listed once (nvidia-smi may be slow) for every worker."""
        return gpus.visible_gpus()

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: called only where xdist is installed
    def pytest_configure_node(self, node: Any) -> None:
        if self.pin_gpus and self.visible_gpus:
            node.workerinput[_GPUS_INPUT] = list(self.visible_gpus)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.run.add_report(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        session.exitstatus = self.run.finish(int(exitstatus), session.testsfailed)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run, tr = self.run, terminalreporter
        if run.verdicts:
            tr.write_sep("=", "claimkit verdicts")
            rows = run.summary_rows()
            widths = [max(len(getattr(row, name)) for row in rows) for name in ("claim_id", "profile", "outcome")]
            colours = {"SUPPORTED": {"green": True}, "REFUTED": {"red": True}, "INCONCLUSIVE": {"yellow": True},
                       "NOT TESTED": {"purple": True}}
            for row in rows:
                tr.write(f"{row.claim_id:<{widths[0]}}  {row.profile:<{widths[1]}}  ")
                tr.write(f"{row.outcome:<{widths[2]}}", bold=True, **colours[row.outcome])
                tags = "".join(f"  {tag}" for tag, _ in row.notes)
                tr.write_line(f"{tags}  {row.numbers}  | paper: {row.paper}")
                for _, line in row.notes:
                    tr.write_line(f"    {line}")
        for nodeid in run.not_verdicts:
            tr.write_line(f"claimkit: {nodeid} decided a verdict and then failed: counted as an error, not a verdict")
        if run.report_note:
            tr.write_line(f"claimkit: report {run.report_note}")
        if run.written is not None and run.written.previous_run is not None:
            changes = run.written.changes
            tr.write_line(f"claimkit: {len(changes) or 'no'} verdict change(s) since run {run.written.previous_run}")
            for change in changes:
                tr.write_line(f"  {change.kind}: {change.describe()}")
        if run.exit_note:
            tr.write_line(f"claimkit: {run.exit_note}", bold=True)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _gpu_pinning(config: pytest.Config) -> bool:
    return not (config.getoption("claimkit_no_gpu_pinning") or config.getini("claimkit_no_gpu_pinning"))


def _pin_worker_gpu(config: pytest.Config) -> None:
    """Keep this worker's one GPU of the controller's list visible (no list: no GPUs, or pinning off)."""
    device = gpus.worker_gpu(config.workerinput.get(_GPUS_INPUT) or (), config.workerinput.get("workerid", ""))
    if device is None:
        return
    late = gpus.pin_to_gpu(device)
    if late:
        config.issue_config_time_warning(pytest.PytestWarning(f"claimkit: {late}"), stacklevel=2)


def _profile_is_ours(metafunc: pytest.Metafunc) -> bool:
    """Claim tests always get profiles; other tests only when `profile` is claimkit's fixture
    (an unrelated fixture of the same name in someone's unit tests is left alone)."""
    if any("profile" in _argnames(m) for m in metafunc.definition.iter_markers("parametrize")):
        return False  # the test chose its profiles itself
    if metafunc.definition.get_closest_marker("claim") is not None:
        return True
    definitions = getattr(metafunc, "_arg2fixturedefs", {}).get("profile") or ()
    return bool(definitions) and getattr(definitions[-1].func, "__module__", None) == __name__


def _argnames(marker: pytest.Mark) -> list[str]:
    names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


def _cuda_missing() -> str | None:
    """Why gpu tests cannot run here, or None when a CUDA device is usable."""
    try:
        import torch
    except ImportError:
        return "needs CUDA: torch is not installed"
    if not torch.cuda.is_available():
        return f"needs CUDA: torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    return None

