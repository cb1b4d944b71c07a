"""A spec's calibration table on disk: `<spec>.calibration.json` beside the spec, read back and shown.

`claimkit.calibration` simulates the rows and writes the file; the reports read it
(claimkit.report.error_rates) and `claimkit calibrate` prints it. Reading and showing
need no numpy or scipy, so they live apart from the simulation: a report must be
written even where the statistics stack cannot be imported, and a malformed table
must become a sentence in it, not a traceback (`read_table` says what is wrong).

The file: {"spec": "<name>.toml", "spec_hash": "sha256:...", "reps": draws per point,
"seconds": ..., "rows": [one per claim and profile, ROW_FIELDS], "points": [every
simulated point: claim, part, profile, truth, theta, levels, rates]}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

FILE_SUFFIX = ".calibration.json"
# What every row of a table file holds, and the columns it is shown under.
ROW_FIELDS = ("claim", "profile", "n", "seeds", "parts", "false_support", "false_refute", "power",
              "power_required", "within_bounds", "problems")
TABLE_HEADERS = ("claim", "profile", "n", "seeds", "parts", "false support", "false refutation", "power",
                 "refutes a false claim", "bounds")


class CalibrationError(ValueError):
    """A spec's calibration settings or table are missing or malformed; the message says where."""


def table_path(spec_path: str | Path) -> Path:
    spec_path = Path(spec_path)
    return spec_path.with_name(spec_path.stem + FILE_SUFFIX)


def read_table(spec_path: str | Path) -> dict[str, Any] | None:
    """The table beside `spec_path`, checked enough to show; None when there is none.

    CalibrationError names the file and what is wrong with it, so a report can say so in a line.
    """
    path = table_path(spec_path)
    redo = f"rerun `claimkit calibrate {spec_path}`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc}); {redo}") from None
    if not isinstance(document, dict) or not isinstance(document.get("spec_hash"), str) \
            or not isinstance(document.get("rows"), list):
        raise CalibrationError(f"{path}: not a calibration table (it needs 'spec_hash' and 'rows'); {redo}")
    for i, row in enumerate(document["rows"]):
        missing = [k for k in ROW_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise CalibrationError(f"{path}: rows[{i}] lacks {', '.join(missing)}; {redo}")
        odd = [k for k in ("n", "seeds", "parts", "false_support", "false_refute", "power")
               if not isinstance(row[k], (int, float)) or isinstance(row[k], bool)]
        odd += [k for k in ("claim", "profile") if not isinstance(row[k], str)]
        odd += [k for k in ("power_required", "within_bounds") if not isinstance(row[k], bool)]
        if not isinstance(row["problems"], list) or not all(isinstance(p, str) for p in row["problems"]):
            odd.append("problems")
        if odd:
            raise CalibrationError(f"{path}: rows[{i}]: {', '.join(odd)} not of the type the table writes; {redo}")
    return document


def table_cells(row: Mapping[str, Any]) -> list[str]:
    """A row's cells under TABLE_HEADERS, for the terminal and every report format."""
    exempt = row.get("power_exempt")
    power = f"{row['power']:.2f}" + ("" if row["power_required"] else " (not required)")
    if exempt:
        power += f" (unreachable: {exempt})"
    ok = "met" if row["within_bounds"] else "BROKEN: " + "; ".join(row["problems"])
    refutes = row.get("refute_power")
    return [str(row["claim"]), str(row["profile"]), str(row["n"]), str(row["seeds"]), str(row["parts"]),
            f"{row['false_support']:.3f}", f"{row['false_refute']:.3f}", power,
            "-" if refutes is None else f"{refutes:.2f}", ok]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per claim and profile: n, seeds, false support, false refutation, power, within bounds."""
    lines = ["| " + " | ".join(TABLE_HEADERS) + " |", "|" + " --- |" * len(TABLE_HEADERS)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(lines)
