"""``make bench``: runs the project's benchmarks one after another and writes one report.

Each bench runs as its own process (``python -m bench.<module> --out <name>.md --json
<name>.json``, ``--quick`` with ``--quick``), its progress lines passing through to stderr.
Then this module reads the JSON side outputs (bench/cells_json.py), draws the PNG plots
(bench/plots.py) and writes ``REPORT.md``: one markdown table of every cell (system, rate,
p50, p99), links to each bench's own report and the plots. Everything lands in ``--dir``
(default ``bench/results/report/``, gitignored), replacing an earlier run's files.

A bench that fails (non-zero exit, or no JSON) is reported as such and the others still run;
the exit status is then 1. Ctrl-C stops the running bench (it cleans up its own servers) and
exits 130 without a report. ``--plot-only`` redraws from the JSON files already in ``--dir``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "bench" / "results" / "report"


@dataclass(frozen=True, slots=True)
class BenchRun:
    name: str
    module: str
    minutes_full: int  # rough wall time of a full run, for the progress line
    minutes_quick: int
    has_out: bool = True  # --out FILE; otherwise its stdout is the report


BENCHES = (
    BenchRun("wal", "bench.wal_group_commit", 3, 1),
    BenchRun("engine", "bench.engine_sql", 4, 1),
    BenchRun("http", "bench.http_api", 12, 3),
    BenchRun("topics", "bench.topics", 5, 2),
    BenchRun("live", "bench.live", 4, 1, has_out=False),
)


def progress(text: str) -> None:
    sys.stderr.write(f"[report {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def run_bench(bench: BenchRun, out_dir: Path, quick: bool) -> tuple[int, float]:
    """Runs one bench; returns (exit status, seconds). Its JSON and markdown go to out_dir."""
    md, js = out_dir / f"{bench.name}.md", out_dir / f"{bench.name}.json"
    for stale in (md, js):
        stale.unlink(missing_ok=True)
    command = [sys.executable, "-m", bench.module, "--json", str(js)]
    command += ["--quick"] if quick else []
    command += ["--out", str(md)] if bench.has_out else []
    started = time.monotonic()
    with open(md if not bench.has_out else "/dev/null", "wb") as stdout:
        status = subprocess.run(command, cwd=REPO_ROOT, stdout=stdout, check=False).returncode
    return status, time.monotonic() - started


def load_runs(out_dir: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    runs = {}
    for name in names:
        path = out_dir / f"{name}.json"
        if path.exists():
            runs[name] = json.loads(path.read_text(encoding="utf-8"))
    return runs


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_report(runs: dict[str, dict[str, Any]], outcomes: dict[str, str],
                  plots: Sequence[Path], settings: str) -> str:
    out = ["# Sluice bench report", "", f"- **settings**: {settings}",
           f"- **generated**: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    out += [f"- **{name}**: {outcome}" + (f" — [{name}.md]({name}.md)" if name in runs else "")
            for name, outcome in outcomes.items()]
    out += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    for name, run in runs.items():
        out += ["", f"## {name}", "", "| cell | system | throughput | unit | p50 ms | p99 ms |",
                "|---|---|---:|---|---:|---:|"]
        out += [f"| {c['label']} | {c['system']} | {_n(c['rate'])} | {c['rate_unit']} | "
                f"{_n(c['p50_ms'], 2)} | {_n(c['p99_ms'], 2)} |" for c in run["cells"]]
    out += ["", "Medians over each bench's rounds; each bench's own report has the machine, "
            "the settings, the spreads and its targets."]
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each bench's smoke run")
    parser.add_argument("--only", type=lambda s: s.split(","), default=[b.name for b in BENCHES],
                        help="comma-separated subset of: "
                             + ",".join(b.name for b in BENCHES))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="where the report, the benches' outputs and the plots go")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw plots and REPORT.md from the JSON files in --dir")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benches, then the plots and REPORT.md; prints where they are."""
    from bench.plots import render_plots  # fail fast if matplotlib is missing

    args = parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    chosen = [b for b in BENCHES if b.name in args.only]
    outcomes: dict[str, str] = {}
    for index, bench in enumerate(chosen if not args.plot_only else [], start=1):
        minutes = bench.minutes_quick if args.quick else bench.minutes_full
        progress(f"[{index}/{len(chosen)}] {bench.name}: python -m {bench.module}"
                 f"{' --quick' if args.quick else ''} (about {minutes} min)")
        try:
            status, seconds = run_bench(bench, args.dir, args.quick)
        except KeyboardInterrupt:
            progress("interrupted: no report written")
            return 130
        outcomes[bench.name] = f"exit {status} after {seconds:.0f} s"
        progress(f"[{index}/{len(chosen)}] {bench.name}: {outcomes[bench.name]}")
    runs = load_runs(args.dir, [b.name for b in chosen])
    for bench in chosen:
        if bench.name not in runs:
            outcomes[bench.name] = outcomes.get(bench.name, "not run") + ", no JSON output"
    plots = render_plots(runs, args.dir)
    settings = ("quick (smoke) runs" if args.quick else "full runs") + (
        "; plots redrawn from earlier JSON" if args.plot_only else "")
    report = render_report(runs, outcomes, plots, settings)
    (args.dir / "REPORT.md").write_text(report, encoding="utf-8")
    progress(f"wrote {args.dir / 'REPORT.md'} and {', '.join(p.name for p in plots) or 'no plots'}")
    failed = any(not o.startswith("exit 0") for o in outcomes.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
