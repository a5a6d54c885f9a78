"""Box plots for the benchmark pages (matplotlib, the ``bench`` extra).

Each panel is one horizontal box per variant, with every run drawn as a dot,
so the spread and the outliers are visible, not only the median.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Panel:
    """One panel: a box per variant, optional vertical marks (e.g. a deadline)."""

    title: str
    xlabel: str
    groups: Mapping[str, Sequence[float]]
    marks: Mapping[str, float] = field(default_factory=dict)


def box_panels(panels: Sequence[Panel], path: Path, suptitle: str) -> None:
    """Draw ``panels`` one under the other into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [0.5 * len(p.groups) + 1.2 for p in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, sum(heights) + 0.6), gridspec_kw={"height_ratios": heights}
    )
    for ax, panel in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        labels = list(panel.groups)
        data = [list(panel.groups[k]) for k in labels]
        with warnings.catch_warnings():  # `vert` is deprecated from matplotlib 3.11
            warnings.simplefilter("ignore", DeprecationWarning)
            ax.boxplot(data, vert=False, tick_labels=labels, showfliers=False)
        for y, xs in enumerate(data, start=1):
            ax.plot(xs, [y] * len(xs), "o", alpha=0.35, markersize=3, color="tab:blue")
        for name, x in panel.marks.items():
            ax.axvline(x, color="tab:red", linestyle="--", linewidth=1)
            ax.annotate(name, (x, len(data) + 0.45), color="tab:red", fontsize=8, ha="right")
        ax.invert_yaxis()
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.set_xlabel(panel.xlabel)
    fig.suptitle(suptitle)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
