"""Run-wide state of a claim run: which profiles it covers, the specs, the verdicts.

On the controller (the only process when xdist is not used) it collects verdicts
from test reports, prints them, writes the report and decides the exit status:
refuted or inconclusive verdicts fail the session only as `--claimkit-fail-on`
says; any failure or error that is not a verdict always does. In every process it
compares each claim spec with its pre-registration lock, once per run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from claimkit.fixture import verdict_dicts
from claimkit.preregistration import SpecCheck, check_spec
from claimkit.spec import ClaimSpec, PaperSpec, load_specs
from claimkit.verdict import Outcome, Verdict

if TYPE_CHECKING:
    from claimkit.report import WrittenRun

FAIL_ON = ("refuted", "inconclusive", "never")
_EXPECTED_REPORT = {Outcome.SUPPORTED: "passed", Outcome.REFUTED: "failed", Outcome.INCONCLUSIVE: "skipped",
                    Outcome.NOT_TESTED: "skipped"}


class ProfileError(ValueError):
    """A profile file is malformed or a selected profile does not exist."""


@dataclass(frozen=True)
class ProfileChoice:
    """What the plugin needs of a profile: its name and whether it needs a GPU."""

    name: str
    needs_gpu: bool
    path: Path


def read_profiles(directory: Path) -> list[ProfileChoice]:
    """Every `*.toml` in `directory`, named by file stem (an explicit `name` must agree)."""
    if not directory.is_dir():
        raise ProfileError(f"{directory}: profile directory not found (set claimkit_profiles_dir)")
    choices = []
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{path}: not valid TOML: {exc}") from None
        name = data.get("name", path.stem)
        if name != path.stem:
            raise ProfileError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}; make them agree")
        needs_gpu = data.get("needs_gpu")
        if not isinstance(needs_gpu, bool):
            raise ProfileError(f"{path}: field 'needs_gpu' must be true or false, got {needs_gpu!r}")
        choices.append(ProfileChoice(name, needs_gpu, path))
    return choices


def select_profiles(available: Sequence[ProfileChoice], names: Sequence[str], directory: Path) -> list[ProfileChoice]:
    """The profiles named (in that order), or all of them when none is named."""
    if not names:
        if not available:
            raise ProfileError(f"{directory}: no profiles (*.toml) found; add one or set claimkit_profiles_dir")
        return list(available)
    by_name = {p.name: p for p in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ProfileError(
            f"unknown profile {', '.join(map(repr, unknown))} (--claimkit-profile); "
            f"profiles in {directory}: {', '.join(by_name) or 'none'}"
        )
    return [by_name[n] for n in dict.fromkeys(names)]


class ClaimkitSession:
    """One pytest run's claimkit state; one per config (controller and each worker)."""

    def __init__(
        self,
        *,
        specs_dir: Path,
        profiles_dir: Path,
        profile_names: Sequence[str],
        report_dir: Path,
        fail_on: str,
        write_report: bool,
        command: str,
        checkout: Path | None = None,
    ) -> None:
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
        self.specs_dir = specs_dir
        self.profiles_dir = profiles_dir
        self.profile_names = tuple(profile_names)
        self.report_dir = report_dir
        self.fail_on = fail_on
        self.write_report = write_report
        self.command = command
        self.checkout = checkout or specs_dir  # where the run's commit is read: the run's root directory
        self.verdicts: list[Verdict] = []
        self.verdict_failures = 0  # failed reports that carry a refuted verdict
        self.not_verdicts: list[str] = []  # reports that recorded a verdict, then failed otherwise
        self.exit_note = ""
        self.report_note = ""
        self.written: WrittenRun | None = None
        self._specs: dict[str, PaperSpec] | None = None
        self._profiles: list[ProfileChoice] | None = None
        self._locks: dict[str, SpecCheck] = {}

    # -- lazily loaded inputs (each xdist worker loads its own) --

    def specs(self) -> dict[str, PaperSpec]:
        if self._specs is None:
            self._specs = load_specs(self.specs_dir)
        return self._specs

    def profiles(self) -> list[ProfileChoice]:
        if self._profiles is None:
            self._profiles = select_profiles(read_profiles(self.profiles_dir), self.profile_names, self.profiles_dir)
        return self._profiles

    def preregistration(self, paper_spec: PaperSpec, claim: ClaimSpec) -> dict[str, Any]:
        """A verdict's pre-registration field: the spec and its inputs against the lock, checked once per run."""
        if paper_spec.paper not in self._locks:
            self._locks[paper_spec.paper] = check_spec(paper_spec)
        return self._locks[paper_spec.paper].for_claim(claim.id)

    # -- controller: collect, summarise, finish --

    def add_report(self, report: Any) -> None:
        """Take the verdict of a test's call phase; a verdict whose test then failed
        for another reason (it raised after deciding) is an error, not a verdict."""
        if report.when != "call":
            return
        recorded = verdict_dicts(getattr(report, "user_properties", ()))
        if not recorded:
            return
        verdict = Verdict.from_dict(recorded[-1])
        if report.outcome != _EXPECTED_REPORT[verdict.outcome] or hasattr(report, "wasxfail"):
            self.not_verdicts.append(report.nodeid)
            return
        self.verdicts.append(verdict)
        if verdict.outcome is Outcome.REFUTED:
            self.verdict_failures += 1

    def exit_status(self, status: int, tests_failed: int) -> tuple[int, str]:
        """pytest's status with fail-on applied, and one sentence saying what decided it.

        Only 0 (all passed) and 1 (tests failed) are reconsidered; interruptions,
        usage and internal errors, and "no tests collected" stay as pytest set them.
        """
        if status not in (0, 1):
            return status, ""
        refuted = sum(v.outcome is Outcome.REFUTED for v in self.verdicts)
        inconclusive = sum(v.outcome is Outcome.INCONCLUSIVE for v in self.verdicts)
        not_tested = sum(v.outcome is Outcome.NOT_TESTED for v in self.verdicts)
        other = tests_failed - self.verdict_failures
        if status == 1 and tests_failed == 0:
            other = max(other, 1)  # something else failed the run; do not hide it
        option = f"--claimkit-fail-on={self.fail_on}"
        failing: list[tuple[int, str]] = []
        passing: list[tuple[int, str]] = []
        if other > 0:
            failing.append((other, _count(other, "failure or error that is not a verdict",
                                          "failures or errors that are not verdicts")))
        for count, name, fails in (
            (refuted, "refuted verdict", self.fail_on in ("refuted", "inconclusive")),
            (inconclusive, "inconclusive verdict", self.fail_on == "inconclusive"),
            (not_tested, "not-tested verdict", self.fail_on == "inconclusive"),
        ):
            if count:
                (failing if fails else passing).append((count, _count(count, name)))
        if failing:
            note = f"exit status 1: {_subject(failing)} {_verb(failing, 'fails', 'fail')} the session ({option})"
            if passing:
                note += f"; {_subject(passing)} would not"
            return 1, note
        if passing:
            return 0, f"exit status 0: {_subject(passing)} {_verb(passing, 'does', 'do')} not fail the session ({option})"
        return 0, f"exit status 0: no failures, errors or failing verdicts ({option})"

    def finish(self, status: int, tests_failed: int) -> int:
        """Write the report (unless disabled or empty) and return the run's exit status."""
        if self.write_report and self.verdicts:
            self._write()
        new_status, self.exit_note = self.exit_status(status, tests_failed)
        if self.report_note.startswith("could not") and new_status == 0:
            new_status, self.exit_note = 1, f"exit status 1: the report {self.report_note}"
        if not self.verdicts and new_status == status:
            self.exit_note = ""  # nothing of claimkit's to explain
        return new_status

    def _write(self) -> None:
        import claimkit
        from claimkit.provenance import run_provenance
        from claimkit.report import write_run

        try:
            self.written = write_run(
                self.report_dir, self.verdicts, command=self.command, claimkit_version=claimkit.__version__,
                provenance=run_provenance(command=self.command, checkout=self.checkout),
                profile_notes=self._profile_notes(),
                specs_dir=self.specs_dir,
            )
        except OSError as exc:
            self.report_note = f"could not be written to {self.report_dir}: {exc}"
            return
        self.verdicts = list(self.written.document.verdicts)  # with what history adds (rules changed after a result)
        self.report_note = f"written to {self.written.run_dir} (report.html, report.md, verdicts.json)"

    def _profile_notes(self) -> dict[str, dict[str, str]]:
        """Each selected profile's `description` and `about` (what its model can and cannot test), for the report."""
        notes = {}
        for choice in self.profiles():
            try:
                data = tomllib.loads(choice.path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                continue
            found = {k: data[k] for k in ("description", "about") if isinstance(data.get(k), str)}
            if found:
                notes[choice.name] = found
        return notes

    def summary_rows(self) -> list[SummaryRow]:
        """One row per verdict, in a stable order."""
        from claimkit.report.markdown import key_numbers, paper_numbers, preregistration_notes

        ordered = sorted(self.verdicts, key=lambda v: (v.claim_id, v.profile, v.model))
        return [
            SummaryRow(v.claim_id, v.profile, v.outcome.value.upper(), key_numbers(v), paper_numbers(v),
                       preregistration_notes(v))
            for v in ordered
        ]


@dataclass(frozen=True)
class SummaryRow:
    """A verdict's row in the terminal summary; `notes` are (tag, line) pairs such as
    ("[not pre-registered]", "not pre-registered: claim d-1 changed since the lock")."""

    claim_id: str
    profile: str
    outcome: str
    numbers: str
    paper: str
    notes: tuple[tuple[str, str], ...] = ()


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _subject(parts: list[tuple[int, str]]) -> str:
    return " and ".join(text for _, text in parts)


def _verb(parts: list[tuple[int, str]], singular: str, plural: str) -> str:
    return singular if len(parts) == 1 and parts[0][0] == 1 else plural
