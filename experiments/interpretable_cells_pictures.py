"""The pictures of ``experiments.interpretable_cells``: a self-contained HTML page and a PNG of the best units.

Each character of held-out text is coloured by a unit's activation after reading it, as a z-score over the text.
"""

from __future__ import annotations

import html

import numpy as np

FEATURES = ("in_string", "in_comment", "bracket_depth", "line_position", "indentation")


def colour(z: float) -> tuple[float, float, float]:
    """Blue (below the unit's mean) through white to red (above): RGB in [0, 1] for a z-score, saturating at
    2 standard deviations."""
    v = float(np.clip(z / 2.0, -1.0, 1.0))
    return (1.0, 1.0 - v, 1.0 - v) if v >= 0 else (1.0 + v, 1.0 + v, 1.0)


def html_page(results: dict) -> str:
    """A self-contained page: for each feature, the held-out text with each character's background coloured by
    the best unit's activation (inline styles only)."""
    text = results["render_text"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>interpretable cells</title></head>",
        "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>",
        "<h1>Interpretable cells: the best unit per feature</h1>",
        f"<p>LSTM on {html.escape(results['config']['corpus'])}, "
        "held-out text read from a zero state, seed 0. Each character's background is the unit's activation "
        "after reading it, as a z-score over the held-out text: red above the unit's mean, blue below, "
        "saturating at 2 standard deviations.</p>",
        "<table style='border-collapse:collapse' border='1' cellpadding='4'><tr><th>feature</th>"
        "<th>best |r|, trained (mean, min-max)</th><th>untrained</th><th>trained, shifted feature</th></tr>",
    ]
    for name, row in results["table"].items():
        cells = [
            f"{s['mean']:.3f} ({s['min']:.3f}-{s['max']:.3f})"
            for s in (row["abs_r"][k] for k in ("trained", "untrained", "trained, shifted feature"))
        ]
        parts.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    for name, r in results["render"].items():
        a = np.asarray(r["z"])
        parts.append(f"<h2>{html.escape(name)}: unit {html.escape(r['unit'])}, r = {r['r']:+.3f}</h2>")
        spans = []
        for ch, v in zip(text, a):
            rgb = "".join(f"{int(round(255 * x)):02x}" for x in colour(v))
            shown = "&#8629;\n" if ch == "\n" else html.escape(ch)
            spans.append(f"<span style='background:#{rgb}'>{shown}</span>")
        parts.append(
            "<pre style='font-family:monospace;font-size:12px;line-height:1.35;border:1px solid #ccc;"
            "padding:6px;white-space:pre-wrap'>" + "".join(spans) + "</pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def make_figure(results: dict):
    """Top: best |r| per feature (trained, untrained, shifted-feature controls; mean and min-max over seeds).
    Below: held-out text coloured by seed 0's best units for the two features where training gained most."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cfg = results["config"]
    lines_shown = cfg["render_lines"] if isinstance(cfg, dict) else cfg.render_lines  # dict when read from JSON
    fig = plt.figure(figsize=(12, 4 + 0.42 * lines_shown))
    grid = fig.add_gridspec(3, 1, height_ratios=(3.2, 0.2 * lines_shown, 0.2 * lines_shown))
    ax = fig.add_subplot(grid[0])
    kinds = ("trained", "untrained", "trained, shifted feature", "untrained, shifted feature")
    x = np.arange(len(FEATURES))
    for j, kind in enumerate(kinds):
        s = [results["table"][f]["abs_r"][kind] for f in FEATURES]
        mean = np.array([v["mean"] for v in s])
        err = np.array([[v["mean"] - v["min"] for v in s], [v["max"] - v["mean"] for v in s]])
        ax.bar(x + (j - 1.5) * 0.2, mean, 0.2, yerr=err, capsize=3, label=kind)
    n = results["table"][FEATURES[0]]["abs_r"]["trained"]["n"]
    ax.set(
        xticks=x,
        xticklabels=FEATURES,
        ylim=(0, 1),
        ylabel="best unit's |Pearson r| (of 2H units)",
        title=f"best unit per feature: mean and min-max over {n} seeds",
    )
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    lines = [line[:100] for line in results["render_text"].split("\n")[:lines_shown]]
    offsets = np.cumsum([0] + [len(line) + 1 for line in results["render_text"].split("\n")[:lines_shown]])
    shown = sorted(FEATURES, key=lambda f: -results["render"][f]["gain"])[:2]  # where training gained most
    for panel, name in enumerate(shown):
        r = results["render"][name]
        z = np.asarray(r["z"])
        ax = fig.add_subplot(grid[panel + 1])
        for row, line in enumerate(lines):
            for col, ch in enumerate(line):
                ax.add_patch(Rectangle((col, -row - 1), 1, 1, color=colour(z[offsets[row] + col]), lw=0))
                if ch.strip():
                    ax.text(col + 0.5, -row - 0.5, ch, ha="center", va="center", family="monospace", fontsize=6)
        ax.set(
            xlim=(0, max(len(line) for line in lines) + 1),
            ylim=(-len(lines), 0),
            xticks=[],
            yticks=[],
            title=f"{name}: unit {r['unit']} (r = {r['r']:+.2f}); background: activation z-score, "
            "red > mean > blue (saturating at 2 std)",
        )
    fig.tight_layout()
    return fig
