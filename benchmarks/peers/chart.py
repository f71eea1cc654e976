"""Draw the suite's chart from its JSON (runs in the peers' venv, which has matplotlib):
no-op drain rates (from worker start and steady) and idle pickup latency percentiles,
one bar group a system.

    benchmarks/.peers-venv/bin/python benchmarks/peers/chart.py IN.json OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import BACKEND_TITLES, find, systems, value


def label(system: str, backend: str) -> str:
    return f"{system}\n{BACKEND_TITLES.get(backend, backend)}"


def stopped(results: list, key: tuple[str, str]) -> bool:
    """A drain stopped by its time cap: its bars show the rate up to the cap."""
    drained = find(results, *key, "drain")
    return bool(drained and not drained["figures"].get("finished", True))


def draw(report: dict, out: Path) -> None:
    results = report["results"]
    keys = systems(results)
    drains = [k for k in keys if value(results, *k, "drain", "tasks_per_s_from_start")]
    pickups = [k for k in keys if value(results, *k, "pickup", "p50_ms")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6))
    width = 0.4
    capped: list = []
    for offset, (name, text) in enumerate(
        (("tasks_per_s_from_start", "from worker start"), ("tasks_per_s_steady", "steady 10-90 %"))
    ):
        xs = [i + (offset - 0.5) * width for i in range(len(drains))]
        ys = [value(results, *k, "drain", name) or 0 for k in drains]
        bars = left.bar(xs, ys, width, label=text)
        capped += [bar for bar, key in zip(bars, drains, strict=True) if stopped(results, key)]
        left.bar_label(bars, fmt="%.0f", fontsize=7, rotation=90, padding=2)
    left.set_xticks(range(len(drains)), [label(*k) for k in drains], fontsize=7, rotation=45)
    left.set_ylabel("tasks/s (higher is better)")
    left.set_title("No-op drain, 2 worker processes")
    handles, labels = left.get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="xxx"))
    left.legend(handles, [*labels, "stopped at the time cap"], fontsize=8)
    for bar in capped:  # after the legend, whose swatches copy the first bars
        bar.set_hatch("xxx")
        bar.set_edgecolor("black")
    width = 0.27
    for offset, name in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        xs = [i + (offset - 1) * width for i in range(len(pickups))]
        ys = [value(results, *k, "pickup", name) or 0 for k in pickups]
        bars = right.bar(xs, ys, width, label=name.split("_")[0])
        right.bar_label(bars, fmt="%.1f", fontsize=6, rotation=90, padding=2)
    right.set_xticks(range(len(pickups)), [label(*k) for k in pickups], fontsize=7, rotation=45)
    right.set_yscale("log")
    right.set_ylabel("ms from before the enqueue call to task start (log; lower is better)")
    right.set_title("Idle pickup latency, 1 task / 20 ms")
    right.legend(fontsize=8)
    load = report["machine"].get("load_average_at_start", [])
    fig.suptitle(
        f"taskmill and its peers, {report['date'][:10]} ({report['mode']} run; "
        f"{report['machine'].get('cores')} cores, load average {load[0] if load else '?'} at start)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
