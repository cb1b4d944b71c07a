"""What two runs were made with, and where that differs: devices, package versions, commits, code.

Seeded runs of the same code, with the same packages on the same kind of device,
are expected to give the same numbers to the bit; across a device type or a package
version, only the same outcomes. So `claimkit report --against` names what differs
between the two runs before it lists the numbers that moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from claimkit.provenance import describe_device
from claimkit.report.json_report import RunDocument
from claimkit.report.markdown import commit_text


@dataclass(frozen=True)
class Environment:
    """A run's conditions, gathered from its own provenance and its verdicts'."""

    run_id: str
    recorded: bool  # False: the run predates provenance records
    devices: tuple[str, ...] = ()
    versions: Mapping[str, str | None] = field(default_factory=dict)
    commits: tuple[str, ...] = ()
    code: tuple[str, ...] = ()  # "claimkit source <hash>", "claim code <dir> <hash>"


def environment(document: RunDocument) -> Environment:
    """The conditions of a run: the verdicts' devices (where they were decided), else the run's."""
    records = [v.provenance for v in document.verdicts if v.provenance]
    every: list[Mapping[str, Any]] = ([document.provenance] if document.provenance else []) + records
    if not every:
        return Environment(document.run_id, recorded=False)
    devices = {describe_device(p.get("device")) for p in records} or {describe_device(document.provenance.get("device"))}
    versions: dict[str, str | None] = {}
    for record in every:
        versions.update(record.get("versions") or {})
    code = {f"claimkit source {p['claimkit_source']}" for p in every if p.get("claimkit_source")}
    code |= {f"claim code {p.get('claim_dir')} {p['claim_code']}" for p in records if p.get("claim_code")}
    return Environment(
        run_id=document.run_id,
        recorded=True,
        devices=tuple(sorted(devices)),
        versions=versions,
        commits=tuple(sorted({commit_text(p) for p in every})),
        code=tuple(sorted(code)),
    )


def differences(before: Environment, after: Environment) -> list[str]:
    """One line for each of devices, package versions, commits and code that differ between two runs."""
    missing = [e.run_id for e in (before, after) if not e.recorded]
    if missing:
        return [f"run {', '.join(missing)} records no provenance: devices, package versions and commits "
                "cannot be compared"]
    lines = []
    if before.devices != after.devices:
        lines.append(f"devices differ: {'; '.join(before.devices)} -> {'; '.join(after.devices)}")
    moved = [f"{name} {before.versions.get(name) or '(absent)'} -> {after.versions.get(name) or '(absent)'}"
             for name in sorted(before.versions.keys() | after.versions.keys())
             if before.versions.get(name) != after.versions.get(name)]
    if moved:
        lines.append(f"package versions differ: {'; '.join(moved)}")
    if before.commits != after.commits:
        lines.append(f"commits differ: {'; '.join(before.commits)} -> {'; '.join(after.commits)}")
    if before.code != after.code:
        gone = sorted(set(before.code) - set(after.code))
        new = sorted(set(after.code) - set(before.code))
        lines.append(f"code differs: {'; '.join(gone) or '-'} -> {'; '.join(new) or '-'}")
    return lines
