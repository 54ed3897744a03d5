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
``(a, b)`` pairs that training never sees, split into a validation set (every evaluation, the early stop, the steps
to a level) and a test set (read once, at the end). The reversed-input variant (Sutskever et al., 2014) feeds the
question backwards (``"=263+75"``); we compare how many steps each needs to reach 95% and 99% validation exact
match, and the final test exact match, over several seeds (each seed draws its own initial weights, batches and
held-out problems), by an exact permutation test with Holm's correction (``experiments.stats``).

    python -m experiments.seq2seq --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats
from experiments.seq2seq.data import (  # noqa: F401 (the task's names, read here and by the tests)
    END,
    EQUALS,
    GO,
    PLUS,
    CHARS,
    HELD_OUT_EVERY,
    VOCAB,
    digit_at,
    draw_operands,
    encode,
    held_out_set,
    held_out_split,
    is_held_out,
    num_digits,
    to_text,
    training_batch,
    training_operand,
)


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
    stop_accuracy: float = 0.99  # stop a run early once validation exact match reaches this
    seeds: tuple = (0, 1, 2, 3, 4)  # 5 against 5: p = 0.008 at best, below 0.05 / 3 comparisons (Holm)


PRESETS = {
    "cpu": Config(),
    "tiny": Config(digits=2, variants=("reversed",), hidden_size=64, steps=500, eval_size=60, seeds=(0, 1)),
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
    validation, ((a, b), test) = held_out_split(
        jax.random.PRNGKey(10_000 + seed), cfg.digits, cfg.eval_size, reverse=reverse
    )
    params = init_seq2seq(jax.random.PRNGKey(seed), cfg.hidden_size)
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.1)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(schedule))
    make_batch = lambda k: training_batch(k, cfg.digits, cfg.batch, reverse=reverse)
    validation_scores = jax.jit(lambda p: scores(p, validation[1]))
    test_scores = jax.jit(lambda p: scores(p, test))
    validation_error = lambda p: 1.0 - validation_scores(p)["exact_match"]
    start = time.perf_counter()
    params, hist = common.train(
        loss_fn,
        params,
        opt,
        make_batch,
        jax.random.PRNGKey(seed + 1),
        cfg.steps,
        chunk=cfg.eval_every,
        evaluate=validation_error,
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
        "validation_exact_match": accuracy[-1],
        "test_exact_match": float(final["exact_match"]),
        "test_position_accuracy": float(final["position_accuracy"]),
        "test_loss": float(jax.jit(loss_fn)(params, test)),
        **{f"constant_answer_{k}": v for k, v in constant_answer_scores(test[3], test[4]).items()},
        "best_validation_exact_match": max(accuracy),
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


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    runs = [
        kept({"variant": v, "seed": seed}, lambda v=v, s=seed: run_one(cfg, v, s))
        for v in cfg.variants
        for seed in cfg.seeds
    ]
    summary = {}
    for v in cfg.variants:
        mine = [r for r in runs if r["variant"] == v]
        for k in (
            "validation_exact_match",
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
        comparisons = {}
        for k, lower in (("steps_to_95", True), ("steps_to_99", True), ("test_exact_match", False)):
            values = [[float("inf") if r[k] is None else r[k] for r in runs if r["variant"] == v] for v in cfg.variants]
            comparisons[k] = stats.compare(*values, tuple(cfg.variants), lower_is_better=lower)
        summary["comparisons"] = stats.decide(comparisons)
    return {"config": cfg, "summary": summary, "runs": runs}
