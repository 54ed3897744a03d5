"""Vanishing and exploding gradients: ``Whh = s Q`` multiplied at every step, and the LSTM's cell path.

Measures ``||dh_T/dh_t||_2`` against the lag ``T - t`` by ``jax.jacrev`` through the scan (``jaxrnn.gradflow``):
the linear RNN's log-norm slope is ``ln s``; the tanh RNN stays below ``s^(T-t)``; the LSTM's cell-path
Jacobian is the product of its forget gates, which keeps the gradient alive when the forget bias is large;
and ``||dL/dh_t||`` of an RNN and an LSTM before and after training on the adding problem.

    python -m experiments.vanishing_gradients --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import functools
import math


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats, tasks
from jaxrnn import gradflow


@dataclasses.dataclass(frozen=True)
class Config:
    hidden_size: int = 32
    T: int = 60  # lags 1..T
    samples: int = 16  # input sequences per measurement (the bound is checked on each)
    scales: tuple = (0.5, 0.9, 1.0, 1.1, 1.5)
    forget_biases: tuple = (0.0, 1.0, 2.0, 3.0, 5.0)
    keep_steps: int = 1000  # steps for which f = 1, i = 0 must keep the cell unchanged
    train_T: int = 50  # adding-problem length for the before/after-training comparison
    train_steps: int = 1500  # 0 skips the before/after-training comparison
    batch: int = 64
    learning_rate: float = 3e-3  # Adam, clipped at global norm 1 (long_range's grid point (3e-3, H = 32))
    train_seeds: tuple = tuple(range(10))
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(hidden_size=8, T=12, samples=3, keep_steps=50, train_steps=0),
}


@jax.jit
def _rnn_measure(p, h0, xs):
    """Norms by lag for the linear and the tanh RNN with the same weights, and the tanh RNN's saturation."""
    linear = gradflow.lag_norms(gradflow.linear_rnn_step, p, h0, xs)
    tanh = gradflow.lag_norms(jaxrnn.rnn_step, p, h0, xs)
    _, hs = jaxrnn.unroll(jaxrnn.rnn_step, p, h0, xs)
    return linear, tanh, jnp.mean(jnp.abs(hs) > 0.99)


@jax.jit
def _lstm_measure(params, carry, xs):
    """Cell-path Jacobians ``(B, T, H, H)``, forget-gate products ``(B, T, H)``, full ``||dc_T/dc_t||`` by lag."""
    J = jax.vmap(
        lambda c, x: gradflow.final_state_jacobians(gradflow.lstm_cell_path_step, params, c, x, part="c"),
        in_axes=(0, 1),
    )(carry, xs)
    P = jnp.swapaxes(gradflow.forget_gate_products(gradflow.forget_gates(params, carry, xs)), 0, 1)
    return J, P, gradflow.lag_norms(jaxrnn.lstm_step, params, carry, xs, part="c")


def _rnn_with_scale(key, cfg, s):
    p = jaxrnn.init_rnn(key, 1, cfg.hidden_size, 1, dtype=jnp.float64)
    return p._replace(Whh=gradflow.scaled_orthogonal(jax.random.fold_in(key, 1), cfg.hidden_size, s, jnp.float64))


def _slope(lags, norms):
    """Least-squares slope of ln(norm) against the lag, in float64 NumPy."""
    return float(np.polyfit(lags, np.log(norms), 1)[0])


def linear_and_tanh(cfg: Config, key) -> dict:
    """Both RNNs with ``Whh = s Q`` on the same random inputs ``x_t ~ N(0, 1)``, float64."""
    lags = np.arange(1, cfg.T + 1)
    xs = jax.random.normal(jax.random.fold_in(key, 2), (cfg.T, cfg.samples, 1), jnp.float64)
    h0 = jnp.zeros((cfg.samples, cfg.hidden_size), jnp.float64)
    out = {"lags": lags, "linear": {}, "tanh": {}}
    for s in cfg.scales:
        lin, th, saturated = map(np.asarray, _rnn_measure(_rnn_with_scale(key, cfg, s), h0, xs))
        slopes = [_slope(lags, n) for n in lin]
        out["linear"][str(s)] = {
            "norm_by_lag": lin[0],
            "slope": slopes[0],
            "ln_s": math.log(s),
            "max_abs_slope_error": max(abs(v - math.log(s)) for v in slopes),
        }
        bound = s**lags
        out["tanh"][str(s)] = {
            "median_norm_by_lag": np.median(th, axis=0),
            "max_norm_by_lag": th.max(axis=0),
            "bound_holds_every_sample_and_lag": bool(np.all(th <= bound * (1 + 1e-12))),
            "max_ratio_to_bound": float(np.max(th / bound)),
            "saturated_fraction": float(saturated),
            "grows_anywhere": bool(np.any(th > 1.0)),
        }
    return out


def lstm_cell_path(cfg: Config, key) -> dict:
    """Cell-path Jacobian against the forget-gate product; the cell's memory with f = 1, i = 0; the forget-bias
    sweep of ``||dc_T/dc_t||`` (all paths) against the tanh RNN's ``||dh_T/dh_t||`` at the default init."""
    H = cfg.hidden_size
    xs = jax.random.normal(jax.random.fold_in(key, 3), (cfg.T, cfg.samples, 1), jnp.float64)
    carry = jaxrnn.initial_carry(jaxrnn.init_lstm(key, 1, H, 1, dtype=jnp.float64), (cfg.samples,))
    out = {"sweep": {}}
    worst = 0.0
    for b in cfg.forget_biases:
        p = jaxrnn.init_lstm(key, 1, H, 1, forget_bias=b, dtype=jnp.float64)
        J, P, full = map(np.asarray, _lstm_measure(p, carry, xs))
        diag = np.diagonal(J, axis1=-2, axis2=-1)  # (B, T, H), like P
        off = J * (1 - np.eye(H))
        err = np.abs(diag - P) / np.maximum(np.abs(diag) + np.abs(P), 1e-300)
        worst = max(worst, float(err.max()), float(np.abs(off).max()))
        path = np.flip(np.abs(diag).max(axis=-1), axis=-1)  # by lag
        out["sweep"][str(b)] = {
            "forget_gate_sigmoid": 1 / (1 + math.exp(-b)),
            "median_full_dc_norm_by_lag": np.median(full, axis=0),
            "median_cell_path_norm_by_lag": np.median(path, axis=0),
        }
    out["cell_path_vs_forget_product_max_rel_error"] = worst
    rnn = jaxrnn.init_rnn(key, 1, H, 1, dtype=jnp.float64)
    h0 = jnp.zeros((cfg.samples, H), jnp.float64)
    out["rnn_default_init_median_norm_by_lag"] = np.median(np.asarray(_rnn_measure(rnn, h0, xs)[1]), 0)

    # f = 1, i = 0: saturate the gates through their biases; the cell must come out exactly as it went in.
    p = jaxrnn.init_lstm(key, 1, H, 1, dtype=jnp.float64)
    gate = lambda name: slice(jaxrnn.LSTM_GATE_ORDER.index(name) * H, (jaxrnn.LSTM_GATE_ORDER.index(name) + 1) * H)
    p = p._replace(bh=p.bh.at[gate("f")].set(60.0).at[gate("i")].set(-60.0))
    c0 = jax.random.normal(jax.random.fold_in(key, 4), (cfg.samples, H), jnp.float64)
    start = jaxrnn.LSTMCarry(jnp.zeros_like(c0), c0)
    xs_keep = jax.random.normal(jax.random.fold_in(key, 5), (cfg.keep_steps, cfg.samples, 1), jnp.float64)
    end, _ = jax.jit(functools.partial(jaxrnn.unroll, jaxrnn.lstm_step))(p, start, xs_keep)
    out["keep_steps"] = cfg.keep_steps
    out["keep_max_abs_change"] = float(jnp.max(jnp.abs(end.c - c0)))
    return out


def before_and_after_training(cfg: Config, key) -> dict:
    """``||dL/d state_t||`` by lag on the adding problem, RNN and LSTM, at initialisation and after training, for
    each of ``cfg.train_seeds`` (initialisation and training batches; the test batch is the same for all)."""
    make_batch = lambda k: tasks.adding_batch(k, cfg.train_T, cfg.batch)
    loss_fn = lambda p, batch: jnp.mean((tasks.final_readout(p, batch[0])[:, 0] - batch[1]) ** 2)
    xs, ys = tasks.adding_batch(jax.random.fold_in(key, 6), cfg.train_T, 256)
    out = {}

    @jax.jit
    def norms_by_lag(params):
        carry = jaxrnn.initial_carry(params, (xs.shape[1],))
        loss = lambda hs, carry_T: jnp.sum((jaxrnn.readout(params, tasks.hidden(carry_T))[:, 0] - ys) ** 2)
        g = gradflow.state_gradients(jaxrnn.step_for(params), params, carry, xs, loss)
        sq = sum(jnp.sum(leaf**2, axis=-1) for leaf in jax.tree.leaves(g))  # (T, B)
        return gradflow.by_lag(jnp.median(jnp.sqrt(sq), axis=1))

    chunk = min(100, cfg.train_steps)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.learning_rate))
    for kind in ("rnn", "lstm"):
        run = common.make_trainer(loss_fn, opt, make_batch, chunk)  # compiled once for every seed
        per_seed = []
        for seed in cfg.train_seeds:
            seed_key = jax.random.PRNGKey(seed)
            params = tasks.init_model(kind, jax.random.fold_in(seed_key, 7), 2, cfg.hidden_size, 1)
            before = norms_by_lag(params)
            opt_state, train_key = opt.init(params), jax.random.fold_in(seed_key, 8)
            for _ in range(cfg.train_steps // chunk):
                train_key, k = jax.random.split(train_key)
                params, opt_state, _, _ = run(params, opt_state, k)
            per_seed.append(
                {
                    "seed": seed,
                    "median_norm_by_lag_init": before,
                    "median_norm_by_lag_trained": norms_by_lag(params),
                    "test_mse": float(loss_fn(params, (xs, ys))),
                }
            )
        out[kind] = {
            "seeds": per_seed,
            "test_mse": common.spread([r["test_mse"] for r in per_seed]),
            "baseline_mse": tasks.ADDING_BASELINE_MSE,
        }
        for w in ("init", "trained"):
            out[kind][f"norm_at_lag{cfg.train_T}_{w}"] = common.spread(
                [float(r[f"median_norm_by_lag_{w}"][-1]) for r in per_seed]
            )
    if len(out) == 2:
        values = lambda kind, key: [r[key] if key == "test_mse" else float(r[key][-1]) for r in out[kind]["seeds"]]
        out["comparisons"] = stats.decide(
            {
                "test MSE after training": stats.compare(
                    values("lstm", "test_mse"), values("rnn", "test_mse"), ("lstm", "rnn")
                ),
                **{
                    f"gradient norm at lag {cfg.train_T}, {w}": stats.compare(
                        values("lstm", f"median_norm_by_lag_{w}"),
                        values("rnn", f"median_norm_by_lag_{w}"),
                        ("lstm", "rnn"),
                        lower_is_better=False,
                    )
                    for w in ("init", "trained")
                },
            }
        )
    return out


def main(cfg: Config) -> dict:
    key = jax.random.PRNGKey(cfg.seed)
    with jax.enable_x64(True):
        rnns = linear_and_tanh(cfg, key)
        lstm = lstm_cell_path(cfg, key)
    trained = before_and_after_training(cfg, key) if cfg.train_steps else {}
    T = cfg.T
    summary = {
        "linear_slope_max_abs_error": max(v["max_abs_slope_error"] for v in rnns["linear"].values()),
        "tanh_bound_holds_for_s_below_1": all(
            v["bound_holds_every_sample_and_lag"] for s, v in rnns["tanh"].items() if float(s) < 1
        ),
        **{f"tanh_s{s}_median_norm_lag{T}": float(v["median_norm_by_lag"][-1]) for s, v in rnns["tanh"].items()},
        **{f"tanh_s{s}_max_norm_any_lag": float(v["max_norm_by_lag"].max()) for s, v in rnns["tanh"].items()},
        "cell_path_vs_forget_product_max_rel_error": lstm["cell_path_vs_forget_product_max_rel_error"],
        "keep_max_abs_change": lstm["keep_max_abs_change"],
        f"rnn_default_init_median_norm_lag{T}": float(lstm["rnn_default_init_median_norm_by_lag"][-1]),
        **{
            f"lstm_bias{b}_median_dc_norm_lag{T}": float(v["median_full_dc_norm_by_lag"][-1])
            for b, v in lstm["sweep"].items()
        },
        **{f"{k}_trained_test_mse_mean": v["test_mse"]["mean"] for k, v in trained.items() if k in ("rnn", "lstm")},
        **{f"{k}_trained_test_mse_std": v["test_mse"]["std"] for k, v in trained.items() if k in ("rnn", "lstm")},
        **{
            f"{k}_dL_norm_lag{cfg.train_T}_{w}_mean": v[f"norm_at_lag{cfg.train_T}_{w}"]["mean"]
            for k, v in trained.items()
            if k in ("rnn", "lstm")
            for w in ("init", "trained")
        },
        **({"comparisons": trained["comparisons"]} if "comparisons" in trained else {}),
    }
    return {"config": cfg, "summary": summary, "rnn": rnns, "lstm": lstm, "trained": trained}
