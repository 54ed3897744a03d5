"""Interpretable cells (Karpathy, Johnson & Fei-Fei 2015): which hidden or cell unit tracks a property of the text?

An LSTM character model (``jaxrnn.lm.fit``, in memory) is trained on Python source (every top-level module of the
standard library, ``python_source()``: about 4 MB, enough that the model does not memorise it) to below 1.45 nats
per character on its validation text; then it reads held-out text from a zero state, and every unit of ``h_t`` and
``c_t`` (``2 H`` units) is correlated (Pearson ``r``) with per-character features of the text read so far: inside
a string literal, inside a comment, bracket depth, position in the line, indentation of the line. For each feature
the unit with the largest ``|r|`` is reported, against the same search on the untrained model (same initialiser,
same seed) and on the trained model with the feature circularly shifted by a random offset (a null that keeps the
feature's runs and autocorrelation). Several seeds; per feature, an exact permutation test of the trained model's
best ``|r|`` against the untrained one's, with Holm's correction over the features. The first seed's best units
colour the held-out text in ``interpretable_cells.html`` (self-contained) and in the PNG.

    python -m experiments.interpretable_cells --preset cpu --out experiments/results

The pictures (the HTML page and the PNG) are drawn by ``experiments/interpretable_cells_pictures.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from experiments import common, stats
from experiments.interpretable_cells_pictures import FEATURES, html_page, make_figure
from jaxrnn import lm
from jaxrnn.data import CORPORA, DEFAULT_CORPUS, Splits, load_splits
from jaxrnn.results import write_text

__all__ = ["FEATURES", "Config", "PRESETS", "best_units", "cli", "main", "make_figure", "text_features"]


@dataclasses.dataclass(frozen=True)
class Config:
    corpus: str = "python_source"  # python_source(), or a built-in corpus of jaxrnn.data
    hidden_size: int = 256
    steps: int = 4000
    seq_length: int = 64
    batch_size: int = 32
    held_out: int = 20_000  # validation characters read for the correlations
    seeds: tuple = (0, 1, 2, 3, 4)  # 5 against 5: p = 0.008 at best, below 0.05 / 5 features (Holm)
    render: int = 1500  # characters of held-out text coloured in the HTML page
    render_lines: int = 22  # lines of it drawn in the PNG


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        corpus="stdlib_source",
        hidden_size=32,
        steps=150,
        seq_length=32,
        batch_size=16,
        held_out=4000,
        seeds=(0, 1),
        render=400,
        render_lines=8,
    ),
}


# ------------------------------------------------------------------------------------------- features


def python_source() -> str:
    """Every top-level ``.py`` module of this Python's standard library, in sorted order (its exact text depends
    on the Python version): the last modules are the validation and test text."""
    import glob
    import sysconfig

    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    return "\n\n".join(open(path, encoding="utf-8").read() for path in paths)


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


def train(cfg: Config, splits: Splits, seed: int):
    """``(trained params, untrained params of the same seed, final validation loss)``."""
    run = lm.RunConfig(
        corpus=cfg.corpus if cfg.corpus in CORPORA else DEFAULT_CORPUS,  # fit reads the text from splits, not this
        cell="lstm",
        hidden_size=cfg.hidden_size,
        steps=cfg.steps,
        seq_length=cfg.seq_length,
        batch_size=cfg.batch_size,
        eval_every=cfg.steps,
        seed=seed,
    )
    result = lm.fit(run, splits)
    untrained = lm.initial_state(run.resolved(), splits.vocab.size).params
    return result.state.params, untrained, result.val_loss


def search(activations: np.ndarray, features: dict, rng) -> dict:
    """Best unit per feature, and the same search against the feature circularly shifted by at least N / 4."""
    n = activations.shape[0]
    out = {}
    for name, f in features.items():
        shift = int(rng.integers(n // 4, 3 * n // 4))
        out[name] = {**best_units(activations, f), "shifted": best_units(activations, np.roll(f, shift))}
    return out


def one_seed(cfg: Config, splits: Splits, ids, features: dict, shown: slice, seed: int) -> dict:
    """Train, read the held-out text with the trained and the untrained model, find the best units; for the page,
    each feature's best trained unit standardised over the shown characters."""
    trained, untrained, val_loss = train(cfg, splits, seed)
    rng = np.random.default_rng(seed)
    acts = {"trained": np.asarray(read_states(trained, ids)), "untrained": np.asarray(read_states(untrained, ids))}
    found = {which: search(a, features, rng) for which, a in acts.items()}
    z = {}
    for name in FEATURES:
        unit = acts["trained"][:, found["trained"][name]["unit"]]
        z[name] = np.round(((unit - unit.mean()) / max(float(unit.std()), 1e-12))[shown], 3).tolist()
    return {"seed": seed, "validation_loss": val_loss, "found": found, "z": z}


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    splits = load_splits(text=python_source()) if cfg.corpus == "python_source" else load_splits(cfg.corpus)
    ids = splits.val[: cfg.held_out]
    held_out = splits.vocab.decode(ids)
    features = text_features(held_out)
    H = cfg.hidden_size
    start = held_out.index("\n") + 1 if "\n" in held_out[:-1] else 0  # the page starts at a line
    shown = slice(start, start + cfg.render)
    runs = [kept({"seed": seed}, lambda s=seed: one_seed(cfg, splits, ids, features, shown, s)) for seed in cfg.seeds]
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
            "comparison": stats.compare(
                s["trained"]["values"], s["untrained"]["values"], ("trained", "untrained"), lower_is_better=False
            ),
            "seed0_unit": unit_name(best["unit"], H),
            "seed0_r": best["r"],
            "feature_mean": float(features[name].mean()),
        }
    decided = stats.decide({name: table[name]["comparison"] for name in FEATURES})
    for name in FEATURES:
        table[name]["verdict"] = decided[name]["verdict"]
    render = {}
    for name in FEATURES:
        render[name] = {
            "unit": unit_name(runs[0]["found"]["trained"][name]["unit"], H),
            "r": runs[0]["found"]["trained"][name]["r"],
            "gain": table[name]["abs_r"]["trained"]["mean"] - table[name]["abs_r"]["untrained"]["mean"],
            "z": runs[0]["z"][name],
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
    summary["validation nats/char (max over seeds)"] = max(r["validation_loss"] for r in runs)
    return {
        "config": cfg,
        "summary": summary,
        "table": table,
        "runs": [{k: v for k, v in r.items() if k != "z"} for r in runs],
        "units": 2 * H,
        "held_out_characters": len(ids),
        "render_text": held_out[shown],
        "render": render,
        "validation_loss": common.spread([r["validation_loss"] for r in runs]),
    }


def write_page(results: dict, out: str) -> None:
    """The HTML page of the JSON just written, beside it."""
    with open(os.path.join(out, "interpretable_cells.json"), encoding="utf-8") as f:
        path = write_text(os.path.join(out, "interpretable_cells.html"), html_page(json.load(f)))
    print(f"wrote {path}")


def cli(argv=None) -> int:
    return common.cli("interpretable_cells", PRESETS, main, make_figure, argv, after=write_page)


if __name__ == "__main__":
    sys.exit(cli())
