"""Sequence to sequence: an encoder-decoder LSTM learns addition, ``"57+362=" -> "419"``.

Many-to-one then one-to-many. The encoder LSTM reads the question one character at a time (questions of
different lengths share a batch, right-padded; ``unroll(..., lengths=)`` freezes each one's state after its
last character), and its final ``LSTMCarry (h, c)`` is the decoder's initial state. The decoder, a second LSTM
with its own weights, reads ``GO`` then the answer's digits and predicts the digits then ``END``:

    encoder:  (h, c) = LSTM_enc("5", "7", "+", "3", "6", "2", "=")
    decoder:  inputs  GO  4  1  9          (teacher forcing: the true previous digit)
              targets  4  1  9  END        (cross-entropy, only up to END)

At test time the decoder feeds back its own greedy choice (``jaxrnn.sample`` at temperature 0). A problem is
right when every answer digit and the ``END`` are right (exact match). Held-out problems are a fixed 2% of all
``(a, b)`` pairs that training never sees. The reversed-input variant (Sutskever et al., 2014) feeds the question
backwards (``"=263+75"``); we compare how many steps each needs to reach 95% and 99% exact match over several
seeds (each seed draws its own initial weights, batches and held-out problems) and say that one variant is faster
only where the ranges over seeds are apart.

    python -m experiments.seq2seq --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import NamedTuple


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common

PLUS, EQUALS, GO, END = 10, 11, 12, 13  # ids 0..9 are the digits; END also pads
VOCAB = 14
CHARS = "0123456789+=^$"  # how the ids print (^ GO, $ END)
HELD_OUT_EVERY = 50  # (a + 7 b) % 50 == 0: the held-out 2% of problems


@dataclasses.dataclass(frozen=True)
class Config:
    digits: int = 3  # operands have 1..digits digits (the count drawn uniformly, then the value)
    variants: tuple = ("forward", "reversed")
    hidden_size: int = 128
    batch: int = 128
    learning_rate: float = 1e-2  # Adam, cosine-decayed to a tenth over ``steps``
    clip: float = 1.0
    steps: int = 8000  # at most; a run stops once it reaches stop_accuracy
    eval_every: int = 100
    eval_size: int = 2000
    stop_accuracy: float = 0.99  # stop a run early once held-out exact match reaches this
    seeds: tuple = (0, 1, 2)


PRESETS = {
    "cpu": Config(),
    "tiny": Config(digits=2, variants=("reversed",), hidden_size=64, steps=500, eval_size=200, seeds=(0, 1)),
}


class Seq2SeqParams(NamedTuple):
    """``encoder``: LSTM reading question ids (its ``Why``/``by`` unused); ``decoder``: LSTM reading the previous
    answer id, read out to ``V`` ids."""

    encoder: jaxrnn.LSTMParams
    decoder: jaxrnn.LSTMParams


def init_seq2seq(key, hidden_size: int) -> Seq2SeqParams:
    k_enc, k_dec = jax.random.split(key)
    return Seq2SeqParams(
        jaxrnn.init_lstm(k_enc, VOCAB, hidden_size, 1), jaxrnn.init_lstm(k_dec, VOCAB, hidden_size, VOCAB)
    )


# ------------------------------------------------------------------------------------------------ data


def num_digits(n):
    """Decimal digits of ``n >= 0`` (``0`` has one)."""
    return 1 + sum((n >= 10**k).astype(jnp.int32) for k in range(1, 5))


def digit_at(n, n_digits, p):
    """The ``p``-th digit of ``n`` counting from the most significant (``p < n_digits``)."""
    return (n // 10 ** jnp.clip(n_digits - 1 - p, 0, 5)) % 10


def is_held_out(a, b):
    return (a + 7 * b) % HELD_OUT_EVERY == 0


@functools.partial(jax.jit, static_argnames=("digits", "n"))
def draw_operands(key, digits: int, n: int):
    """``n`` pairs ``(a, b)``: digit count uniform in ``1..digits``, then the value uniform among those."""
    k_na, k_nb, k_a, k_b = jax.random.split(key, 4)

    def one(k_n, k_v):
        nd = jax.random.randint(k_n, (n,), 1, digits + 1)
        low = jnp.where(nd == 1, 0, 10 ** (nd - 1))
        return jax.random.randint(k_v, (n,), low, 10**nd)

    return one(k_na, k_a), one(k_nb, k_b)


@functools.partial(jax.jit, static_argnames=("digits", "reverse"))
def encode(a, b, digits: int, *, reverse: bool = False):
    """Question and answer ids, time-major.

    Returns: ``question (2 digits + 2, B)`` right-padded with ``END``, ``lengths (B,)``; decoder ``inputs``
    ``(digits + 2, B)`` = GO, digits of ``a + b``; ``targets`` the same digits then END (then END padding);
    ``mask`` true up to and including the first END.
    """
    na, nb, s = num_digits(a), num_digits(b), a + b
    ns = num_digits(s)
    p = jnp.arange(2 * digits + 2)[:, None]
    q = jnp.where(
        p < na,
        digit_at(a, na, p),
        jnp.where(
            p == na,
            PLUS,
            jnp.where(p <= na + nb, digit_at(b, nb, p - na - 1), jnp.where(p == na + nb + 1, EQUALS, END)),
        ),
    )
    lengths = na + nb + 2
    if reverse:  # read back to front within each question's own length; padding stays at the end
        q = jnp.take_along_axis(q, jnp.where(p < lengths, lengths - 1 - p, p), axis=0)
    t = jnp.arange(digits + 2)[:, None]
    targets = jnp.where(t < ns, digit_at(s, ns, t), END)
    inputs = jnp.concatenate([jnp.full((1, a.shape[0]), GO, targets.dtype), targets[:-1]])
    return q, lengths, inputs, targets, t <= ns


@functools.partial(jax.jit, static_argnames=("digits", "B", "reverse"))
def training_batch(key, digits: int, B: int, *, reverse: bool = False):
    """``B`` random problems, none of them held out: a held-out ``(a, b)`` becomes ``(a, b + 1)`` (or ``(a, b - 1)``
    when ``b + 1`` would have too many digits), which is never held out."""
    a, b = draw_operands(key, digits, B)
    return encode(a, training_operand(a, b, digits), digits, reverse=reverse)


def training_operand(a, b, digits: int):
    """``b``, or its neighbour where ``(a, b)`` is held out (``(a + 7 (b +- 1)) % 50`` is 7 or 43, never 0)."""
    return jnp.where(is_held_out(a, b), jnp.where(b + 1 < 10**digits, b + 1, b - 1), b)


def held_out_set(key, digits: int, n: int, *, reverse: bool = False):
    """``n`` distinct held-out problems (fewer if there are not that many): ``(a, b)`` and their encoding."""
    a, b = draw_operands(key, digits, 200 * n)
    a, b = np.asarray(a), np.asarray(b)
    keep = is_held_out(a, b)
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
    pairs = pairs[np.random.default_rng(0).permutation(len(pairs))[:n]]
    a, b = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    return (a, b), encode(a, b, digits, reverse=reverse)


def to_text(ids) -> str:
    return "".join(CHARS[int(i)] for i in ids)


# ------------------------------------------------------------------------------------------- the model


def encode_question(params: Seq2SeqParams, question, lengths):
    """Many-to-one: the encoder's final ``LSTMCarry`` for each question, ``(B, H)`` each."""
    carry = jaxrnn.initial_carry(params.encoder, lengths.shape)
    mask = jnp.arange(question.shape[0])[:, None] < lengths  # (T, B); what length_mask builds, also under jit
    carry_T, _ = jaxrnn.unroll(jaxrnn.lstm_step, params.encoder, carry, question, mask=mask)
    return carry_T


def loss_fn(params: Seq2SeqParams, batch):
    """Teacher forcing: mean cross-entropy per answer id (digits and the END)."""
    question, lengths, inputs, targets, mask = batch
    carry = encode_question(params, question, lengths)
    loss, _ = jaxrnn.sequence_loss(params.decoder, carry, inputs, targets, mask=mask, reduction="mean")
    return loss


def greedy_answer(params: Seq2SeqParams, question, lengths, length: int):
    """One-to-many at test time: feed GO, then each argmax back in: ids ``(length, B)``."""
    carry = encode_question(params, question, lengths)
    go = jnp.full(lengths.shape, GO, jnp.int32)
    ids, _ = jaxrnn.sample(jax.random.PRNGKey(0), params.decoder, carry, go, length, temperature=0.0)
    return ids


def scores(params: Seq2SeqParams, batch):
    """Greedy answers scored: ``exact_match``, the fraction right in every digit and the END (what follows is
    ignored); ``position_accuracy``, the fraction of answer positions (digits and END) right; and the ``ids``."""
    question, lengths, _, targets, mask = batch
    ids = greedy_answer(params, question, lengths, targets.shape[0])
    right = ids == targets
    return {
        "exact_match": jnp.mean(jnp.all(right | ~mask, axis=0)),
        "position_accuracy": jnp.sum(right & mask) / jnp.sum(mask),
        "ids": ids,
    }


def constant_answer_scores(targets, mask) -> dict:
    """Baselines that ignore the question: answer each position with its most frequent id (``accuracy``), or
    predict each position's id frequencies (``loss``, nats per answer id, the per-position entropy)."""
    targets, mask = np.asarray(targets), np.asarray(mask)
    hits, nats = 0, 0.0
    for t in range(targets.shape[0]):
        counts = np.bincount(targets[t][mask[t]])
        counts = counts[counts > 0]
        hits += counts.max(initial=0)
        nats -= float(np.sum(counts * np.log(counts / max(counts.sum(), 1))))
    return {"accuracy": float(hits / mask.sum()), "loss": nats / float(mask.sum())}


# ---------------------------------------------------------------------------------------------- runs


def first_step_at(curve, steps, level):
    """The first evaluation step where ``curve >= level``, or None."""
    return next((s for s, v in zip(steps, curve) if v >= level), None)


def run_one(cfg: Config, variant: str, seed: int) -> dict:
    reverse = variant == "reversed"
    (a, b), test = held_out_set(jax.random.PRNGKey(10_000 + seed), cfg.digits, cfg.eval_size, reverse=reverse)
    params = init_seq2seq(jax.random.PRNGKey(seed), cfg.hidden_size)
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.1)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(schedule))
    make_batch = lambda k: training_batch(k, cfg.digits, cfg.batch, reverse=reverse)
    test_scores = jax.jit(lambda p: scores(p, test))
    test_error = lambda p: 1.0 - test_scores(p)["exact_match"]
    start = time.perf_counter()
    params, hist = common.train(
        loss_fn,
        params,
        opt,
        make_batch,
        jax.random.PRNGKey(seed + 1),
        cfg.steps,
        chunk=cfg.eval_every,
        evaluate=test_error,
        stop_below=1.0 - cfg.stop_accuracy,
    )
    seconds = time.perf_counter() - start
    accuracy = [1.0 - e for e in hist["eval"]]
    final = test_scores(params)
    ids = np.asarray(final["ids"])
    examples = []
    for j in range(8):  # the first eight held-out problems, as read by this variant's encoder
        answer = to_text(ids[:, j]).split("$")[0]
        examples.append(
            {
                "question": to_text(np.asarray(test[0][: int(test[1][j]), j])),
                "answer": answer,
                "right": answer == str(int(a[j] + b[j])),
            }
        )
    return {
        "variant": variant,
        "seed": seed,
        "test_exact_match": accuracy[-1],
        "test_position_accuracy": float(final["position_accuracy"]),
        "test_loss": float(jax.jit(loss_fn)(params, test)),
        **{f"constant_answer_{k}": v for k, v in constant_answer_scores(test[3], test[4]).items()},
        "best_test_exact_match": max(accuracy),
        "steps_to_95": first_step_at(accuracy, hist["eval_step"], 0.95),
        "steps_to_99": first_step_at(accuracy, hist["eval_step"], 0.99),
        "steps_run": hist["eval_step"][-1],
        "eval_step": hist["eval_step"],
        "accuracy_curve": accuracy,
        "seconds": seconds,
        "train_loss_last_100": float(np.mean(hist["losses"][-100:])),
        "test_problems": int(a.shape[0]),
        "examples": examples,
    }


def steps_to(runs, key: str, cap: int) -> dict:
    """``spread`` over seeds of the step where a run first reached a level; a run that never did counts as ``cap``
    (a lower bound), and ``reached`` says how many did."""
    values = [r[key] if r[key] is not None else cap for r in runs]
    return {**common.spread(values), "reached": sum(r[key] is not None for r in runs)}


def main(cfg: Config) -> dict:
    runs = [run_one(cfg, v, seed) for v in cfg.variants for seed in cfg.seeds]
    summary = {}
    for v in cfg.variants:
        mine = [r for r in runs if r["variant"] == v]
        for k in (
            "test_exact_match",
            "test_position_accuracy",
            "constant_answer_accuracy",
            "test_loss",
            "constant_answer_loss",
            "steps_run",
            "seconds",
        ):
            summary[f"{v}_{k}"] = common.spread([r[k] for r in mine])
        for k in ("steps_to_95", "steps_to_99"):
            summary[f"{v}_{k}"] = steps_to(mine, k, cfg.steps)
    if set(cfg.variants) >= {"forward", "reversed"}:
        for k, lower in (("steps_to_95", True), ("steps_to_99", True), ("test_exact_match", False)):
            summary[f"verdict_{k}"] = common.verdict(
                summary[f"forward_{k}"], summary[f"reversed_{k}"], ("forward", "reversed"), lower_is_better=lower
            )
    return {"config": cfg, "summary": summary, "runs": runs}


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    fig, ax = common.new_figure(1, 2, size=(5.2, 3.8))
    left, right = ax[0, 0], ax[0, 1]
    variants = list(dict.fromkeys(r["variant"] for r in results["runs"]))
    for v, color in zip(variants, ("C0", "C1")):
        mine = [r for r in results["runs"] if r["variant"] == v]
        steps = max((r["eval_step"] for r in mine), key=len)
        curves = common.pad([r["accuracy_curve"] for r in mine])  # a seed that stopped at 99% is NaN after
        common.band(
            left,
            steps,
            curves,
            color=color,
            label=f"{v} input: mean, min-max over {len(mine)} seeds\n(a seed stops at 99%: dot)",
        )
        for r in mine:  # where each seed stopped
            left.plot(r["eval_step"][-1], r["accuracy_curve"][-1], "o", color=color, ms=3)
        for k, (level, marker) in enumerate(((95, "o"), (99, "s"))):
            s = results["summary"][f"{v}_steps_to_{level}"]
            y = k + (0.15 if color == "C0" else -0.15)
            right.errorbar(
                [s["mean"]],
                [y],
                xerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
                fmt=marker,
                color=color,
                capsize=4,
                label=f"{v}" if k == 0 else None,
            )
            right.plot(s["values"], [y] * len(s["values"]), "x", color=color, ms=5)
    left.axhline(0.95, color="k", lw=0.6, ls=":", label="95% and 99%")
    left.axhline(0.99, color="k", lw=0.6, ls=":")
    left.set(
        title=f"addition, up to {cfg['digits']} digits: held-out exact match",
        xlabel="training step",
        ylabel="exact match (fraction of problems)",
        ylim=(0, 1.02),
    )
    left.legend(loc="lower right", fontsize=7)
    left.grid(alpha=0.3)
    right.set(
        title="steps to reach a held-out exact match\n(bar: min-max, x: each seed)",
        xlabel="training step",
        yticks=[0, 1],
        yticklabels=["95%", "99%"],
        ylim=(-0.6, 1.6),
    )
    right.set_xlim(0, cfg["steps"] * 1.02)
    right.axvline(cfg["steps"], color="k", lw=0.6, ls="--", label="step limit (a seed that never got there)")
    right.legend(loc="upper left", fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("seq2seq", PRESETS, main, make_figure))
