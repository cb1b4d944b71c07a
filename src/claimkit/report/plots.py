"""Plots for the reports, as PNG bytes (matplotlib's Agg canvas, imported only when drawing).

Two sources of plots per verdict:

1. Rates chart, drawn for every verdict with rate estimates: counted proportions
   (`successes` and `n` set), and 0..1 quantities the paper reported under the same
   name (e.g. a mean probe confidence). Each is a bar with its interval, and the
   paper's value of the same name a marker beside it (like the paper's Figure 1).
2. Plots a claim asks for in `evidence.extra["plots"]`: a list of plain-data specs,
   so a claim never needs matplotlib code of its own:

   ```python
   {"title": "Target rate by condition",        # required
    "kind": "bars" | "lines" | "hist",           # required
    "series": {...},                             # required, see below
    "xlabel": "...", "ylabel": "...",            # optional
    "paper": {"L0": 0.833},                      # optional, bars only: marked beside the bars
    "bins": 20}                                  # optional, hist only
   ```

   - `bars`:  `series = {category: value | [value, low, high] | {"value", "low", "high"}}`
   - `lines`: `series = {name: [y, ...] | {"x": [...], "y": [...]}}`
   - `hist`:  `series = {name: [value, ...]}` (several names overlap, half-transparent)

A spec that cannot be drawn does not stop the report: it is listed with the reason.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from claimkit.verdict import Estimate, Outcome, Verdict

PLOT_KINDS = ("bars", "lines", "hist")
OUTCOME_COLOURS = {Outcome.SUPPORTED: "#2e7d32", Outcome.REFUTED: "#c62828", Outcome.INCONCLUSIVE: "#9e9d24",
                   Outcome.NOT_TESTED: "#757575"}
PAPER_COLOUR = "#212121"


class PlotSpecError(ValueError):
    """A plot spec in evidence.extra["plots"] cannot be drawn; says which field is wrong."""


@dataclass(frozen=True)
class Plot:
    verdict_index: int  # position of the verdict in the run document
    title: str
    filename: str
    png: bytes


@dataclass(frozen=True)
class PlotProblem:
    verdict_index: int
    title: str
    problem: str


def is_rate(estimate: Estimate, paper_values: Mapping[str, Any]) -> bool:
    """A counted proportion, or a 0..1 quantity the paper gives a value for (not, say, a difference)."""
    values = [estimate.value, estimate.low, estimate.high]
    on_unit_scale = all(v is None or (_number(v) is not None and 0 <= v <= 1) for v in values)
    counted = estimate.successes is not None and estimate.n is not None
    return on_unit_scale and (counted or estimate.name in paper_values)


def verdict_plots(verdicts: Sequence[Verdict]) -> tuple[list[Plot], list[PlotProblem]]:
    """Every plot of every verdict, with file names unique within the run."""
    plots: list[Plot] = []
    problems: list[PlotProblem] = []
    for index, verdict in enumerate(verdicts):
        stem = f"{index:02d}-{_slug(verdict.claim_id)}-{_slug(verdict.profile)}"
        figure = rates_figure(verdict)
        if figure is not None:
            plots.append(Plot(index, _rates_title(verdict), f"{stem}-rates.png", _png(figure)))
        specs = verdict.evidence.extra.get("plots", [])
        if not isinstance(specs, list):
            problems.append(PlotProblem(index, "evidence.extra['plots']", "must be a list of plot specs"))
            continue
        for number, spec in enumerate(specs, 1):
            title = spec.get("title", f"plot {number}") if isinstance(spec, Mapping) else f"plot {number}"
            try:
                figure = extra_figure(spec)
            except PlotSpecError as exc:
                problems.append(PlotProblem(index, str(title), str(exc)))
                continue
            plots.append(Plot(index, str(title), f"{stem}-{number}-{_slug(str(title))[:40]}.png", _png(figure)))
    return plots, problems


def extra_figure(spec: Any) -> Any:
    """A matplotlib Figure for one plot spec (format in the module docstring)."""
    if not isinstance(spec, Mapping):
        raise PlotSpecError(f"a plot spec must be a table, got {type(spec).__name__}")
    title = spec.get("title")
    if not isinstance(title, str) or not title:
        raise PlotSpecError("field 'title' must be a non-empty string")
    kind = spec.get("kind")
    if kind not in PLOT_KINDS:
        raise PlotSpecError(f"field 'kind' must be one of {', '.join(PLOT_KINDS)}, got {kind!r}")
    series = spec.get("series")
    if not isinstance(series, Mapping) or not series:
        raise PlotSpecError("field 'series' must be a non-empty table")
    figure, axes = _figure()
    if kind == "bars":
        _draw_bars(axes, series, spec.get("paper") or {})
    elif kind == "lines":
        _draw_lines(axes, series)
    else:
        _draw_hist(axes, series, spec.get("bins", 20))
    axes.set_title(_fitted(title, figure), fontsize=10)
    axes.set_xlabel(str(spec.get("xlabel", "")))
    axes.set_ylabel(str(spec.get("ylabel", "")))
    figure.tight_layout()
    return figure


# -- drawing ------------------------------------------------------------------


def rates_figure(verdict: Verdict) -> Any | None:
    """The verdict's rate estimates with intervals and the paper's values; None if it has no rates."""
    paper = verdict.evidence.paper_values
    rates = [e for e in verdict.evidence.estimates if is_rate(e, paper)]
    if not rates:
        return None
    figure, axes = _figure(width=max(4.0, 0.9 * len(rates) + 2))
    bars = {e.name: (e.value, e.low, e.high) for e in rates}
    _draw_bars(axes, bars, paper, colour=OUTCOME_COLOURS[verdict.outcome])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("estimate (95% interval)")
    axes.set_title(_fitted(_rates_title(verdict), figure), fontsize=10)
    figure.tight_layout()
    return figure


def _fitted(title: str, figure: Any) -> str:
    """`title` wrapped to the figure's width: tight_layout does not shorten a title, it lets it run off the edge."""
    width_in = figure.get_size_inches()[0]
    return textwrap.fill(title, width=max(20, int(width_in * 11)))  # ~11 characters per inch at 10 pt


def _rates_title(verdict: Verdict) -> str:
    return f"{verdict.claim_id} ({verdict.profile}, {verdict.outcome.value}): estimates and paper values"


def _draw_bars(axes: Any, series: Mapping[str, Any], paper: Any, colour: str = "#1565c0") -> None:
    if not isinstance(paper, Mapping):
        raise PlotSpecError(f"field 'paper' must be a table of category -> value, got {type(paper).__name__}")
    names = list(series)
    values, lows, highs = zip(*(_bar_value(name, series[name]) for name in names))
    x = list(range(len(names)))
    axes.bar(x, values, width=0.55, color=colour, alpha=0.8, label="observed")
    errors = [
        [v - lo if lo is not None else 0 for v, lo in zip(values, lows)],
        [hi - v if hi is not None else 0 for v, hi in zip(values, highs)],
    ]
    if any(lo is not None or hi is not None for lo, hi in zip(lows, highs)):
        axes.errorbar(x, values, yerr=[[max(e, 0) for e in row] for row in errors], fmt="none",
                      ecolor="black", capsize=4, label="95% interval")
    marked = [(i, paper[name]) for i, name in enumerate(names) if _number(paper.get(name)) is not None]
    if marked:
        axes.scatter([i + 0.38 for i, _ in marked], [float(v) for _, v in marked], marker="D",
                     color=PAPER_COLOUR, zorder=3, label="paper")
    axes.set_xticks(x)
    axes.set_xticklabels(names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    axes.legend(fontsize=8, loc="best")


def _bar_value(name: str, raw: Any) -> tuple[float, float | None, float | None]:
    if isinstance(raw, Mapping):
        value, low, high = raw.get("value"), raw.get("low"), raw.get("high")
    elif isinstance(raw, (list, tuple)) and len(raw) == 3:
        value, low, high = raw
    else:
        value, low, high = raw, None, None
    if _number(value) is None:
        raise PlotSpecError(f"bar {name!r}: value must be a number, got {value!r}")
    for bound in (low, high):
        if bound is not None and _number(bound) is None:
            raise PlotSpecError(f"bar {name!r}: interval bounds must be numbers, got {bound!r}")
    return float(value), _number(low), _number(high)


def _draw_lines(axes: Any, series: Mapping[str, Any]) -> None:
    for name, raw in series.items():
        if isinstance(raw, Mapping):
            x, y = raw.get("x"), raw.get("y")
        else:
            x, y = None, raw
        y = _numbers(f"series {name!r}: y", y)
        x = list(range(len(y))) if x is None else _numbers(f"series {name!r}: x", x)
        if len(x) != len(y):
            raise PlotSpecError(f"series {name!r}: x has {len(x)} values but y has {len(y)}")
        axes.plot(x, y, marker="o", markersize=3, label=str(name))
    axes.legend(fontsize=8, loc="best")


def _draw_hist(axes: Any, series: Mapping[str, Any], bins: Any) -> None:
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise PlotSpecError(f"field 'bins' must be a positive integer, got {bins!r}")
    for name, raw in series.items():
        values = _numbers(f"series {name!r}", raw)
        axes.hist(values, bins=bins, alpha=0.5, label=str(name))
    axes.legend(fontsize=8, loc="best")


def _numbers(where: str, raw: Any) -> list[float]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise PlotSpecError(f"{where} must be a non-empty list of numbers")
    values = [_number(v) for v in raw]
    if any(v is None for v in values):
        raise PlotSpecError(f"{where} must contain only finite numbers")
    return values  # type: ignore[return-value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _figure(width: float = 6.0, height: float = 3.6) -> tuple[Any, Any]:
    # The object-oriented API with an explicit Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"
