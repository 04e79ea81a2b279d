"""PNG plots of a comparison (matplotlib, Agg backend: no display needed).

- ``jct_cdf.png``: the JCT CDF of each policy (log time axis), and of the recorded
  schedule where the trace has one (dashed);
- ``utilisation.png``: busy GPUs ÷ GPUs per time bin, each policy;
- ``share_<policy>.png``: per-tenant share of the factory over time, stacked.
Oracle policies keep their ``(oracle)`` label in legends and titles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from masnaa.sim.report import load_text


def write_plots(doc: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    c = doc["cluster"]
    title = f"{doc['trace']['name']}, {c['gpus']} GPUs, load {load_text(c['load_factor'])}"

    fig, ax = plt.subplots(figsize=(7, 4.5))
    history = doc.get("recorded")
    # (summary, colour, line style): policies in matplotlib's colours, the record dashed.
    curves: list[tuple[dict[str, Any], str | None, str]] = [
        (s, None, "-") for s in doc["policies"]
    ]
    if history is not None:
        curves.append((history, "black", "--"))
    for s, color, linestyle in curves:
        q = s["series"]["jct_quantiles"]
        if q:
            ax.plot(np.maximum(np.asarray(q), 1.0), np.linspace(0, 1, len(q)), label=s["label"],
                    color=color, linestyle=linestyle)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title(f"JCT CDF — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    written.append(_save(fig, directory / "jct_cdf.png"))

    fig, ax = plt.subplots(figsize=(9, 4))
    for s in doc["policies"]:
        series = s["series"]
        days = np.arange(len(series["utilisation"])) * series["bin_seconds"] / 86400
        ax.plot(days, series["utilisation"], label=s["label"], linewidth=0.9)
    ax.set_xlabel("days since the first submission")
    ax.set_ylabel("busy GPUs ÷ GPUs")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Utilisation over time — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    written.append(_save(fig, directory / "utilisation.png"))

    for s in doc["policies"]:
        series = s["series"]
        shares = series["tenant_share"]
        if not shares:
            continue
        names = list(shares)
        data = np.asarray([shares[n] for n in names])
        days = np.arange(data.shape[1]) * series["bin_seconds"] / 86400
        fig, ax = plt.subplots(figsize=(9, 4.5))
        colors = plt.get_cmap("tab20")(np.arange(len(names)) % 20)
        ax.stackplot(days, data, labels=names, colors=colors, linewidth=0)
        ax.set_xlabel("days since the first submission")
        ax.set_ylabel("share of the factory's GPUs")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Per-tenant share — {s['label']} — {title}")
        ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        safe = s["policy"].replace("/", "_")
        written.append(_save(fig, directory / f"share_{safe}.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
