"""Truncated backpropagation through time on the character language model: how far back must gradients go?

1. **Truncation sweep.** The same LSTM character model (``jaxrnn.lm``) trained with truncation length ``k`` in
   {5, 10, 25, 50, 100}: ``B`` parallel streams cut into chunks of ``k`` characters, the state carried from one
   chunk to the next (so the forward pass sees the whole past) but gradients stopped at the chunk boundary.
   Validation loss (nats per character, the held-out text read with the state carried) is compared twice, from
   the same runs: at **equal characters** (``k = 5`` makes 20 times as many updates as ``k = 100``) and at an
   **equal number of updates** (``k = 100`` then sees 20 times as many characters). Several seeds (the initial
   parameters).
2. **What truncation cannot learn.** The adding problem (``tasks.adding_batch``, length ``T``) with the loss at
   the last step: truncated BPTT with length ``k`` runs the first ``T - k`` steps without gradient and
   backpropagates through the last ``k`` only (``k = T``: full BPTT). Two targets: the sum of the two marked
   values (one marker in each half), and the *first* marked value alone (the second marker is a distractor).
   A marked value further back than ``k`` gets no gradient; but the weights are shared across time, so what is
   learnt from markers inside the window (store a marked value, keep it) applies to markers outside it too. The
   first-value target has no such help when ``k <= T / 2``: its marker is never inside the window, and
   the best the model can do is guess the mean, MSE 1/12.
3. **Memory as the sequence grows.** One gradient of the loss over ``T`` characters, compiled by XLA, whose own
   accounting (``compiled.memory_analysis()``: arguments + outputs + temporaries - aliased) gives the bytes the
   program needs, nothing allocated. Full BPTT stores every step's activations, ``O(T)``; rematerialised BPTT
   (``remat=True``: ``jax.checkpoint`` around the step) stores only each step's carry and recomputes the rest,
   still ``O(T)`` but smaller; truncated BPTT (``T / k`` chunks of ``k``, one gradient each, accumulated, the
   state carried without gradient) stores one chunk's activations, ``O(k)``: only the ``T`` input ids grow.

    python -m experiments.truncated_bptt --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import time


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats, tasks
from jaxrnn import lm
from jaxrnn.data import DEFAULT_CORPUS, load_splits
from jaxrnn.optim import make_optimizer
from jaxrnn.streams import Streams, evaluation_streams
from experiments.truncated_bptt.memory import memory_row, truncated_gradient  # noqa: F401 (tests read the gradient)


@dataclasses.dataclass(frozen=True)
class Config:
    truncations: tuple = (5, 10, 25, 50, 100)
    corpus: str = DEFAULT_CORPUS
    hidden_size: int = 128
    batch: int = 32  # parallel streams
    learning_rate: float = 2e-3  # Adam, global-norm clipping at ``clip``
    clip: float = 5.0
    characters: int = 400_000  # the equal-characters comparison: training characters per k
    updates: int = 250  # the equal-updates comparison: updates per k
    evaluations: int = 5  # validation points on each of the two budgets
    eval_seq_length: int = 100
    validation_characters: int = 20_000
    seeds: tuple = tuple(range(10))  # 6 were too few: one run in 6 that never learns leaves p = 0.009 (README)
    adding_T: int = 40
    adding_truncations: tuple = (("sum", (5, 10, 20, 40)), ("first", (10, 20, 30, 40)))  # (target, k values)
    adding_hidden: int = 32
    adding_batch: int = 64
    adding_steps: int = 1000
    adding_learning_rate: float = 3e-3
    adding_eval_size: int = 1000
    memory_lengths: tuple = (100, 200, 400, 800, 1600, 3200)
    memory_truncation: int = 50
    memory_batch: int = 32
    memory_hidden: int = 256


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        truncations=(5, 50),
        hidden_size=32,
        batch=8,
        learning_rate=1e-2,
        characters=20_000,
        updates=50,
        evaluations=2,
        validation_characters=4_000,
        eval_seq_length=50,
        seeds=(0, 1),
        adding_T=20,
        adding_truncations=(("first", (5, 20)),),
        adding_hidden=16,
        adding_steps=400,
        adding_eval_size=500,
        memory_lengths=(50, 200),
        memory_truncation=10,
        memory_batch=4,
        memory_hidden=16,
    ),
}
FIRST_BASELINE_MSE = 1.0 / 12.0  # the variance of one uniform value: guessing 0.5 for it


# ----------------------------------------------------------------------------------- 1. truncation sweep


def load_pieces(cfg: Config):
    """Vocabulary size and the training and validation ids (the corpus's first 90% and next 5%)."""
    splits = load_splits(cfg.corpus)
    return splits.vocab.size, splits.train, splits.val[: cfg.validation_characters + 1]


def run_one(cfg: Config, k: int, seed: int, vocab_size: int, train_ids, validation) -> dict:
    """Train with truncation ``k`` until both budgets are reached (``cfg.characters`` characters and
    ``cfg.updates`` updates), evaluating on each budget's grid; the curve is ``[{updates, characters,
    validation_loss}]``."""
    streams = Streams.from_ids(train_ids, cfg.batch, k)
    optimizer = make_optimizer("adam", cfg.learning_rate, clip=cfg.clip, clip_mode="global_norm")
    model = lm.ModelConfig(vocab_size, cell="lstm", hidden_size=cfg.hidden_size)
    state = lm.init_train_state(jax.random.PRNGKey(seed), model, optimizer, cfg.batch)
    equal_characters = max(cfg.characters // (cfg.batch * k), 1)
    grid = sorted(
        {
            max(round(budget * j / cfg.evaluations), 1)
            for budget in (equal_characters, cfg.updates)
            for j in range(1, cfg.evaluations + 1)
        }
    )
    per_call = max(min(b - a for a, b in zip([0] + grid, grid)), 1)
    train_chunks = lm.make_train_chunks(optimizer, per_call)
    start, points, losses = 0, [], []
    t0 = time.perf_counter()
    for stop in grid:
        while start < stop:
            count = min(per_call, stop - start)
            xs, targets, reset = streams.chunks(start, per_call)
            active = np.arange(per_call) < count  # one compiled shape for every call
            state, chunk_losses = train_chunks(state, xs, targets, reset, active)
            losses += np.asarray(chunk_losses)[:count].tolist()
            start += count
        points.append(
            {
                "characters": start * cfg.batch * k,
                "updates": start,
                "validation_loss": float(lm.evaluate(state.params, *validation.epoch())),
            }
        )
    at = {p["updates"]: p["validation_loss"] for p in points}
    return {
        "k": k,
        "seed": seed,
        "equal_characters": {
            "updates": equal_characters,
            "characters": equal_characters * cfg.batch * k,
            "validation_loss": at[equal_characters],
        },
        "equal_updates": {
            "updates": cfg.updates,
            "characters": cfg.updates * cfg.batch * k,
            "validation_loss": at[cfg.updates],
        },
        "curve": points,
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------------ 2. adding problem


def adding_target(xs, ys, target: str):
    """``ys`` (the sum) for ``"sum"``; for ``"first"`` the value marked in the first half: ``(B,)``."""
    if target == "sum":
        return ys
    half = max(xs.shape[0] // 2, 1)
    return jnp.sum(xs[:half, :, 0] * xs[:half, :, 1], axis=0)


def truncated_adding_loss(params, batch, k: int, target: str):
    """MSE of the final readout, backpropagated through the last ``k`` of the ``T`` steps only: the state after
    the first ``T - k`` steps enters as data (``stop_gradient``). ``k >= T`` is full BPTT."""
    xs, ys = batch
    T = xs.shape[0]
    step = jaxrnn.step_for(params)
    carry = jaxrnn.initial_carry(params, xs.shape[1:2])
    if k < T:
        carry = jax.lax.stop_gradient(jaxrnn.unroll(step, params, carry, xs[: T - k])[0])
    carry, _ = jaxrnn.unroll(step, params, carry, xs[T - k :] if k < T else xs)
    return jnp.mean((jaxrnn.readout(params, tasks.hidden(carry))[:, 0] - adding_target(xs, ys, target)) ** 2)


def run_adding(cfg: Config, target: str, k: int, seed: int) -> dict:
    """Train an LSTM on the adding problem with truncation ``k``; held-out MSE (full forward pass) per chunk."""
    key = jax.random.PRNGKey(seed)
    params = tasks.init_model("lstm", key, 2, cfg.adding_hidden, 1)
    test = tasks.adding_batch(jax.random.PRNGKey(10_000), cfg.adding_T, cfg.adding_eval_size)
    evaluate = jax.jit(lambda p: truncated_adding_loss(p, test, cfg.adding_T, target))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.adding_learning_rate))
    _, hist = common.train(
        lambda p, b: truncated_adding_loss(p, b, k, target),
        params,
        optimizer,
        lambda kk: tasks.adding_batch(kk, cfg.adding_T, cfg.adding_batch),
        jax.random.fold_in(key, 1),
        cfg.adding_steps,
        chunk=min(100, cfg.adding_steps),
        evaluate=evaluate,
    )
    return {
        "target": target,
        "k": k,
        "seed": seed,
        "test_mse": hist["eval"][-1],
        "eval_step": hist["eval_step"],
        "eval": hist["eval"],
    }


# ------------------------------------------------------------------------------------------- 3. memory
# ---------------------------------------------------------------------------------------------- main


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    vocab_size, train_ids, validation_ids = load_pieces(cfg)
    validation = evaluation_streams(validation_ids, cfg.batch, cfg.eval_seq_length, what="the validation text")
    sweep = [
        kept(
            {"text": True, "k": k, "seed": seed},
            lambda k=k, s=seed: run_one(cfg, k, s, vocab_size, train_ids, validation),
        )
        for k in cfg.truncations
        for seed in cfg.seeds
    ]
    adding = [
        kept({"adding": target, "k": k, "seed": seed}, lambda t=target, k=k, s=seed: run_adding(cfg, t, k, s))
        for target, ks in dict(cfg.adding_truncations).items()
        for k in ks
        for seed in cfg.seeds
    ]
    memory = [
        memory_row(cfg, vocab_size, T, method) for T in cfg.memory_lengths for method in ("full", "remat", "truncated")
    ]
    spreads, comparisons, summary = {}, {}, {"uniform_loss": float(np.log(vocab_size))}
    for budget in ("equal_characters", "equal_updates"):
        for k in cfg.truncations:
            s = common.spread([r[budget]["validation_loss"] for r in sweep if r["k"] == k])
            spreads[f"{budget} k{k}"] = s
            summary[f"{budget}: k{k} validation loss (mean of {s['n']})"] = s["mean"]
        for a, b in zip(cfg.truncations, cfg.truncations[1:]):
            comparisons[f"{budget}: k{a} vs k{b}"] = stats.compare(
                spreads[f"{budget} k{a}"]["values"], spreads[f"{budget} k{b}"]["values"], (f"k{a}", f"k{b}")
            )
    for target, ks in dict(cfg.adding_truncations).items():
        for k in ks:
            s = common.spread([r["test_mse"] for r in adding if r["target"] == target and r["k"] == k])
            spreads[f"adding {target} k{k}"] = s
            summary[f"adding ({target}), T={cfg.adding_T}: k{k} test MSE (mean of {s['n']})"] = s["mean"]
        full = max(ks)  # the longest window: full BPTT when it is adding_T
        for k in ks[:-1]:
            comparisons[f"adding ({target}): k{k} vs k{full}"] = stats.compare(
                spreads[f"adding {target} k{k}"]["values"],
                spreads[f"adding {target} k{full}"]["values"],
                (f"k{k}", f"k{full}"),
            )
    comparisons = stats.decide(comparisons)
    by = {(r["method"], r["T"]): r["total_bytes"] for r in memory}
    T0, T1 = cfg.memory_lengths[0], cfg.memory_lengths[-1]
    for method in ("full", "remat", "truncated"):
        summary[f"{method}_MiB_T{T1}"] = by[(method, T1)] / 2**20
        summary[f"{method}_growth_T{T0}_to_T{T1}"] = by[(method, T1)] / by[(method, T0)]
    return {
        "config": cfg,
        "summary": summary,
        "spreads": spreads,
        "comparisons": comparisons,
        "vocab_size": vocab_size,
        "adding_baselines": {"predict 1 (sum)": tasks.ADDING_BASELINE_MSE, "predict 0.5 (first)": FIRST_BASELINE_MSE},
        "sweep": sweep,
        "adding": adding,
        "memory": memory,
    }
