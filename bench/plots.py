"""PNG plots of a bench report from the benches' ``--json`` side outputs (bench/cells_json.py).

``render_plots(runs, out_dir)`` takes ``{bench name: {"bench": ..., "cells": [...]}}`` and
writes up to three files, returning their paths (a plot with nothing to show is skipped):

- ``throughput.png``: the headline rate against the cell's x (connections, appenders, batch
  size), one line per workload, peers dashed; log scales.
- ``latency.png``: p50 and p99 per cell, one panel per bench (horizontal bars, log scale).
- ``peers.png``: every cell's headline rate in one panel per bench, coloured by system, so
  Sluice and the peers measured in the same run sit side by side.

Needs matplotlib (the ``bench`` extra); uses the Agg backend (no display). Pure function of
its input: no timing, no server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LABEL_CHARS_MAX = 70  # bar labels are cut to this many characters
BAR_INCHES = 0.28  # figure height per bar
PANEL_EXTRA_INCHES = 1.1  # title and axis of each panel
FIGURE_WIDTH_INCHES = 12.0
DPI = 110
TITLES = {"wal": "WAL group commit", "engine": "engine SQL (in process)",
          "http": "HTTP API (wrk)", "topics": "topics consume / publish",
          "live": "live queries (/v1/ws)"}
X_NAMES = {"wal": "appenders (ceiling: records per fdatasync)", "http": "connections",
           "topics": "batch size (publish: routes)", "live": "batch size / subscriptions"}
SYSTEM_COLOURS = {"sluice": "#1f77b4"}
PEER_COLOURS = ("#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f")
LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")  # one per curve in a throughput panel


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS_MAX else text[: LABEL_CHARS_MAX - 1] + "…"


def _colour(system: str, systems: list[str]) -> str:
    if system in SYSTEM_COLOURS:
        return SYSTEM_COLOURS[system]
    peers = [s for s in systems if s not in SYSTEM_COLOURS]
    return PEER_COLOURS[peers.index(system) % len(PEER_COLOURS)]


def _systems(runs: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({c["system"] for run in runs.values() for c in run["cells"]},
                  key=lambda s: (s != "sluice", s))


def _panels(plt: Any, heights: Sequence[float]) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(len(heights), 1, squeeze=False, figsize=(
        FIGURE_WIDTH_INCHES, sum(heights)), gridspec_kw={"height_ratios": list(heights)})
    return fig, [row[0] for row in axes]


def _positive(value: float | None) -> bool:
    return value is not None and value > 0  # a log axis cannot show 0 (e.g. "not measured")


def _log_limits(ax: Any, values: Sequence[float]) -> None:
    """Log x-axis limits around the positive values (bars start at 0, which autoscaling on
    a log axis handles badly)."""
    shown = [v for v in values if _positive(v)]
    if shown:
        ax.set_xlim(min(shown) / 2, max(shown) * 2)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def throughput_plot(plt: Any, runs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Rate against x per workload (groups with at least two points); see the module doc."""
    panels = []
    for name, run in runs.items():
        groups: dict[str, list[dict[str, Any]]] = {}
        for cell in run["cells"]:
            if cell["x"] is not None and _positive(cell["rate"]):
                groups.setdefault(cell["group"], []).append(cell)
        groups = {g: cells for g, cells in groups.items() if len({c["x"] for c in cells}) > 1}
        if groups:
            panels.append((name, groups))
    if not panels:
        return None
    fig, axes = _panels(plt, [4.0] * len(panels))  # peers: dashed lines
    for ax, (name, groups) in zip(axes, panels, strict=True):
        for index, (group, cells) in enumerate(groups.items()):
            cells = sorted(cells, key=lambda c: c["x"])
            system = cells[0]["system"]
            ax.plot([c["x"] for c in cells], [c["rate"] for c in cells], marker="o",
                    linestyle="-" if system == "sluice" else "--",
                    color=LINE_COLOURS[index % len(LINE_COLOURS)],
                    label=f"{group} ({system})")
        unit = next(iter(groups.values()))[0]["rate_unit"]
        ax.set(xscale="log", yscale="log", xlabel=X_NAMES.get(name, "x"), ylabel=unit,
               title=f"{TITLES.get(name, name)}: throughput")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(plt, fig, path)


def latency_plot(plt: Any, runs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """p50/p99 bars per cell, one panel per bench."""
    panels = [(name, [c for c in run["cells"] if _positive(c["p50_ms"])])
              for name, run in runs.items()]
    panels = [(name, cells) for name, cells in panels if cells]
    if not panels:
        return None
    fig, axes = _panels(plt, [len(c) * BAR_INCHES + PANEL_EXTRA_INCHES for _, c in panels])
    for ax, (name, cells) in zip(axes, panels, strict=True):
        rows = range(len(cells))
        ax.barh([r - 0.2 for r in rows], [c["p50_ms"] for c in cells], height=0.4, label="p50")
        ax.barh([r + 0.2 for r in rows], [c["p99_ms"] or 0 for c in cells], height=0.4,
                label="p99")
        ax.set_yticks(list(rows), [_short(c["label"]) for c in cells], fontsize="x-small")
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel="ms (log scale)",
               title=f"{TITLES.get(name, name)}: latency percentiles")
        _log_limits(ax, [c["p50_ms"] for c in cells] + [c["p99_ms"] for c in cells])
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return _save(plt, fig, path)


def peers_plot(plt: Any, runs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Every cell's rate coloured by system, benches that measured a peer only."""
    panels = []
    for name, run in runs.items():
        cells = [c for c in run["cells"] if _positive(c["rate"])]
        if len({c["system"] for c in cells}) > 1:
            panels.append((name, sorted(cells, key=lambda c: (c["rate_unit"], c["group"],
                                                              c["x"] or 0))))
    if not panels:
        return None
    systems = _systems(runs)
    fig, axes = _panels(plt, [len(c) * BAR_INCHES + PANEL_EXTRA_INCHES for _, c in panels])
    for ax, (name, cells) in zip(axes, panels, strict=True):
        rows = list(range(len(cells)))
        ax.barh(rows, [c["rate"] for c in cells],
                color=[_colour(c["system"], systems) for c in cells])
        ax.set_yticks(rows, [_short(f"{c['label']} [{c['rate_unit']}]") for c in cells],
                      fontsize="x-small")
        ax.invert_yaxis()
        shown = sorted({c["system"] for c in cells}, key=lambda s: (s != "sluice", s))
        for system in shown:
            ax.barh([0], [0], color=_colour(system, systems), label=system)
        ax.set(xscale="log", xlabel="throughput (log scale; unit per bar)",
               title=f"{TITLES.get(name, name)}: Sluice vs peers, same run")
        _log_limits(ax, [c["rate"] for c in cells])
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return _save(plt, fig, path)


def render_plots(runs: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """Writes the plots (see the module doc) into ``out_dir``; returns the files written."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [throughput_plot(plt, runs, out_dir / "throughput.png"),
               latency_plot(plt, runs, out_dir / "latency.png"),
               peers_plot(plt, runs, out_dir / "peers.png")]
    return [path for path in written if path is not None]
