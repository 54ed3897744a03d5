"""Interpretable cells (Karpathy, Johnson & Fei-Fei 2015): which hidden or cell unit tracks a property of the text?

An LSTM character model (``jaxrnn.lm.run_training``) is trained on Python source (the ``stdlib_source`` corpus);
then it reads held-out text from a zero state, and every unit of ``h_t`` and ``c_t`` (``2 H`` units) is
correlated (Pearson ``r``) with per-character features of the text read so far: inside a string literal,
inside a comment, bracket depth, position in the line, indentation of the line. For each feature the unit with
the largest ``|r|`` is reported, against the same search on the untrained model (same initialiser, same seed)
and on the trained model with the feature circularly shifted by a random offset (a null that keeps the
feature's runs and autocorrelation). Several seeds. The first seed's best units colour the held-out text in
``interpretable_cells.html`` (self-contained) and in the PNG.

    python experiments/interpretable_cells.py --preset cpu --out experiments/results
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from experiments import common
from jaxrnn import lm
from jaxrnn.data import Vocabulary, load_corpus, split_ids

FEATURES = ("in_string", "in_comment", "bracket_depth", "line_position", "indentation")


@dataclasses.dataclass(frozen=True)
class Config:
    corpus: str = "stdlib_source"
    hidden_size: int = 128
    steps: int = 1500
    seq_length: int = 64
    batch_size: int = 32
    held_out: int = 20_000  # validation characters read for the correlations
    seeds: tuple = (0, 1, 2)
    render: int = 1500  # characters of held-out text coloured in the HTML page
    render_lines: int = 22  # lines of it drawn in the PNG


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        hidden_size=32, steps=150, seq_length=32, batch_size=16, held_out=4000, seeds=(0, 1), render=400, render_lines=8
    ),
}


# ------------------------------------------------------------------------------------------- features


def text_features(text: str) -> dict:
    """Per-character features of Python source, each describing the text up to and including that character
    (what ``h_t`` has read): ``(N,)`` arrays.

    ``in_string``: inside a string literal ('...', "...", triple-quoted; the opening quote is inside, the
    closing one outside; backslash escapes). ``in_comment``: from ``#`` outside a string to the end of the
    line (the newline is outside). ``bracket_depth``: open ``([{`` minus closed outside strings and comments,
    never below 0. ``line_position``: characters since the last newline (0 for the newline itself).
    ``indentation``: leading spaces of the current line (while still in the leading spaces, those read so far).
    """
    n = len(text)
    in_string, in_comment = np.zeros(n, np.float32), np.zeros(n, np.float32)
    depth, position, indent = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    quote, comment, escaped, d, col, ind, leading = None, False, False, 0, 0, 0, True
    i = 0
    while i < n:
        ch, width = text[i], 1  # the state is updated first, then the ``width`` characters read are marked
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif text.startswith(quote, i):
                width, quote = len(quote), None
            elif ch == "\n" and len(quote) == 1:  # a one-line string cannot continue past the newline
                quote = None
        elif comment:
            comment = ch != "\n"
        elif ch == "#":
            comment = True
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            width = len(quote)
        elif ch in "([{":
            d += 1
        elif ch in ")]}":
            d = max(d - 1, 0)
        for j in range(i, min(i + width, n)):
            if text[j] == "\n":
                col, ind, leading = 0, 0, True
            else:
                col += 1
                leading = leading and text[j] == " "
                ind += leading
            in_string[j], in_comment[j], depth[j], position[j], indent[j] = quote is not None, comment, d, col, ind
        i += width
    return {
        "in_string": in_string,
        "in_comment": in_comment,
        "bracket_depth": depth,
        "line_position": position,
        "indentation": indent,
    }


def best_units(activations: np.ndarray, feature: np.ndarray) -> dict:
    """The unit whose activation has the largest ``|Pearson r|`` with the feature.

    Args: ``activations (N, U)``, ``feature (N,)``. Constant units (or a constant feature) score ``r = 0``.
    Returns: ``{"unit", "r", "abs_r"}``.
    """
    a = activations - activations.mean(axis=0)
    f = feature - feature.mean()
    denominator = np.sqrt((a**2).sum(axis=0) * (f**2).sum())
    r = np.where(denominator > 0, (a * f[:, None]).sum(axis=0) / np.where(denominator > 0, denominator, 1), 0.0)
    u = int(np.argmax(np.abs(r)))
    return {"unit": u, "r": float(r[u]), "abs_r": float(abs(r[u]))}


def unit_name(u: int, H: int) -> str:
    return f"h[{u}]" if u < H else f"c[{u - H}]"


# ------------------------------------------------------------------------------------------- the model


@jax.jit
def read_states(params, ids):
    """Read ``ids (N,)`` from the zero state: every step's ``h`` and ``c`` of the (one-layer LSTM) stack, side by
    side: ``(N, 2H)``."""

    def body(carry, x):
        carry, _ = jaxrnn.stack_step(params, carry, x)
        return carry, carry[0]

    _, states = jax.lax.scan(body, jaxrnn.initial_carry(params), ids)
    return jnp.concatenate([states.h, states.c], axis=-1)


def train(cfg: Config, seed: int):
    """``(trained params, untrained params of the same seed, vocabulary, final validation loss)``."""
    run = lm.RunConfig(
        corpus=cfg.corpus,
        cell="lstm",
        hidden_size=cfg.hidden_size,
        steps=cfg.steps,
        seq_length=cfg.seq_length,
        batch_size=cfg.batch_size,
        eval_every=cfg.steps,
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as out:
        summary = lm.run_training(run, out, progress=False, log=lambda s: None)
    run = run.resolved()  # the defaults filled in, as run_training used them
    untrained = lm.init_train_state(
        jax.random.PRNGKey(seed), run.model(summary["vocab"].size), run.make_optimizer(), 1
    ).params
    return summary["params"], untrained, summary["vocab"], summary["val_loss"]


def search(activations: np.ndarray, features: dict, rng) -> dict:
    """Best unit per feature, and the same search against the feature circularly shifted by at least N / 4."""
    n = activations.shape[0]
    out = {}
    for name, f in features.items():
        shift = int(rng.integers(n // 4, 3 * n // 4))
        out[name] = {**best_units(activations, f), "shifted": best_units(activations, np.roll(f, shift))}
    return out


def main(cfg: Config) -> dict:
    text = load_corpus(cfg.corpus)
    vocab = Vocabulary.from_text(text)
    _, validation, _ = split_ids(vocab.encode(text))
    ids = validation[: cfg.held_out]
    held_out = vocab.decode(ids)
    features = text_features(held_out)
    H = cfg.hidden_size
    runs, first = [], None
    for seed in cfg.seeds:
        trained, untrained, run_vocab, val_loss = train(cfg, seed)
        assert run_vocab.chars == vocab.chars
        rng = np.random.default_rng(seed)
        acts = {"trained": np.asarray(read_states(trained, ids)), "untrained": np.asarray(read_states(untrained, ids))}
        found = {which: search(a, features, rng) for which, a in acts.items()}
        runs.append({"seed": seed, "validation_loss": val_loss, "found": found})
        if first is None:
            first = acts["trained"]
    table = {}
    for name in FEATURES:
        s = {
            which: common.spread([r["found"][which][name]["abs_r"] for r in runs]) for which in ("trained", "untrained")
        }
        s["trained, shifted feature"] = common.spread([r["found"]["trained"][name]["shifted"]["abs_r"] for r in runs])
        s["untrained, shifted feature"] = common.spread(
            [r["found"]["untrained"][name]["shifted"]["abs_r"] for r in runs]
        )
        best = runs[0]["found"]["trained"][name]
        table[name] = {
            "abs_r": s,
            "verdict": common.verdict(s["trained"], s["untrained"], ("trained", "untrained"), lower_is_better=False),
            "seed0_unit": unit_name(best["unit"], H),
            "seed0_r": best["r"],
            "feature_mean": float(features[name].mean()),
        }
    start = held_out.index("\n") + 1 if "\n" in held_out[:-1] else 0  # the page starts at a line
    shown = slice(start, start + cfg.render)
    render = {}
    for name in FEATURES:
        u = runs[0]["found"]["trained"][name]["unit"]
        z = (first[:, u] - first[:, u].mean()) / max(float(first[:, u].std()), 1e-12)
        render[name] = {
            "unit": unit_name(u, H),
            "r": runs[0]["found"]["trained"][name]["r"],
            "gain": table[name]["abs_r"]["trained"]["mean"] - table[name]["abs_r"]["untrained"]["mean"],
            "z": np.round(z[shown], 3).tolist(),
        }
    summary = {
        f"{name}: best |r| trained (mean of {len(runs)})": table[name]["abs_r"]["trained"]["mean"] for name in FEATURES
    }
    summary.update(
        {
            f"{name}: best |r| untrained (mean of {len(runs)})": table[name]["abs_r"]["untrained"]["mean"]
            for name in FEATURES
        }
    )
    return {
        "config": cfg,
        "summary": summary,
        "table": table,
        "runs": runs,
        "units": 2 * H,
        "held_out_characters": len(ids),
        "render_text": held_out[shown],
        "render": render,
        "validation_loss": common.spread([r["validation_loss"] for r in runs]),
    }


# ------------------------------------------------------------------------------------------- pictures


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


def cli(argv=None) -> int:
    """``common.cli``, then the HTML page from the JSON it wrote, beside it."""
    code = common.cli("interpretable_cells", PRESETS, main, make_figure, argv)
    if code == 0:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--out", default=os.path.join("experiments", "results"))
        out = parser.parse_known_args(argv)[0].out
        with open(os.path.join(out, "interpretable_cells.json"), encoding="utf-8") as f:
            page = html_page(json.load(f))
        path = os.path.join(out, "interpretable_cells.html")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(path + ".tmp", path)
        print(f"wrote {path}")
    return code


if __name__ == "__main__":
    sys.exit(cli())
