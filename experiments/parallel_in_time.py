"""Training a GRU with Newton's method over time (DEER): the scan's learning curve, warm starts cut the iterations.

A GRU reads the adding problem and is trained twice from the same initialisation on the same fixed training set
(full batch, Adam): once unrolled by ``lax.scan``, once by ``jaxrnn.newton.newton_unroll`` with implicit
gradients. Both are float32: their losses agree to 1e-4 until training reaches a sensitive phase, where the
last-bit differences of two correct computations grow. A control measures how much: a third run, ``lax.scan``
again from the initial weights moved by one float32 rounding (``(1 + 2^-23)``, one bit), drifts from the first
scan as far as Newton does; the difference is the training's, not Newton's. Each
Newton solve starts from the previous step's states (a warm start: the weights moved a little, the
sequences are the same), and the iterations are compared with a cold start from zeros at the same weights.

    python -m experiments.parallel_in_time --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import sys


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, tasks
from jaxrnn.newton import newton_unroll


@dataclasses.dataclass(frozen=True)
class Config:
    hidden_size: int = 32
    T: int = 100
    batch: int = 128  # the fixed training set, one full batch
    steps: int = 400
    learning_rate: float = 3e-3
    jacobian: str = "full"  # "full" (DEER) or "diagonal" (quasi-DEER)
    max_iter: int = 100
    test_batch: int = 512
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(hidden_size=8, T=20, batch=16, steps=12, max_iter=20, test_batch=32),
}


def main(cfg: Config) -> dict:
    key = jax.random.PRNGKey(cfg.seed)
    params0 = jaxrnn.init_gru(jax.random.fold_in(key, 0), 2, cfg.hidden_size, 1)
    xs, ys = tasks.adding_batch(jax.random.fold_in(key, 1), cfg.T, cfg.batch)
    xs_test, ys_test = tasks.adding_batch(jax.random.fold_in(key, 2), cfg.T, cfg.test_batch)
    carry = jaxrnn.initial_carry(params0, (cfg.batch,))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.learning_rate))
    solve = lambda params, xs, init: newton_unroll(
        jaxrnn.gru_step, params, carry, xs, jacobian=cfg.jacobian, max_iter=cfg.max_iter, init=init
    )
    mse = lambda params, h_T, ys: jnp.mean((jaxrnn.readout(params, h_T)[:, 0] - ys) ** 2)

    def scan_loss(params, carry, xs, ys, mask=None):
        return mse(params, jaxrnn.unroll(jaxrnn.gru_step, params, carry, xs)[0], ys), carry

    def newton_loss(params, previous, xs, ys, mask=None):
        """The carry slot holds the previous step's states (the warm start) and, out, this step's iteration
        counts, with those of a cold solve from zeros at the same weights: what the warm start saves."""
        result = solve(params, xs, previous[0])
        cold = solve(jax.lax.stop_gradient(params), xs, None)
        counts = (result.iterations, cold.iterations, result.converged, result.residual)
        return mse(params, result.carry, ys), (result.states, counts)

    scan_update = jaxrnn.make_train_step(optimizer, loss_fn=scan_loss)
    newton_update = jaxrnn.make_train_step(optimizer, loss_fn=newton_loss)

    test_mse = jax.jit(
        lambda p: mse(
            p, jaxrnn.unroll(jaxrnn.gru_step, p, jaxrnn.initial_carry(p, (cfg.test_batch,)), xs_test)[0], ys_test
        )
    )

    p_scan, s_scan = params0, optimizer.init(params0)
    p_bit = jax.tree.map(lambda a: a * (1 + 2.0**-23), params0)  # the control: one float32 rounding away
    s_bit = optimizer.init(p_bit)
    p_newton, s_newton = params0, optimizer.init(params0)
    states = jax.tree.map(lambda c: jnp.zeros((cfg.T, *c.shape), c.dtype), carry)  # step 1 starts cold
    zero_counts = (
        jnp.zeros((cfg.batch,), jnp.int32),
        jnp.zeros((cfg.batch,), jnp.int32),
        jnp.zeros((cfg.batch,), bool),
        jnp.zeros((cfg.batch,), carry.dtype),
    )
    previous = (states, zero_counts)
    curves = {
        k: []
        for k in (
            "scan_loss",
            "newton_loss",
            "scan_one_bit_loss",
            "warm_iterations_max",
            "warm_iterations_mean",
            "cold_iterations_max",
            "cold_iterations_mean",
            "all_converged",
            "residual_max",
            "param_rel_diff",
        )
    }
    for _ in range(cfg.steps):
        p_scan, s_scan, _, loss_scan = scan_update(p_scan, s_scan, carry, xs, ys)
        p_newton, s_newton, previous, loss_newton = newton_update(p_newton, s_newton, previous, xs, ys)
        p_bit, s_bit, _, loss_bit = scan_update(p_bit, s_bit, carry, xs, ys)
        curves["scan_one_bit_loss"].append(float(loss_bit))
        warm, cold, converged, residual = previous[1]
        warm, cold = np.asarray(warm), np.asarray(cold)
        curves["scan_loss"].append(float(loss_scan))
        curves["newton_loss"].append(float(loss_newton))
        curves["warm_iterations_max"].append(int(warm.max()))
        curves["warm_iterations_mean"].append(float(warm.mean()))
        curves["cold_iterations_max"].append(int(cold.max()))
        curves["cold_iterations_mean"].append(float(cold.mean()))
        curves["all_converged"].append(bool(np.all(np.asarray(converged))))
        curves["residual_max"].append(float(np.max(np.asarray(residual))))
        curves["param_rel_diff"].append(
            max(
                float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
                for a, b in zip(jax.tree.leaves(p_scan), jax.tree.leaves(p_newton))
            )
        )
    scan_l, newton_l = np.asarray(curves["scan_loss"]), np.asarray(curves["newton_loss"])
    bit_l = np.asarray(curves["scan_one_bit_loss"])
    summary = {
        "steps": cfg.steps,
        # both at most: two float32 runs of the same maths part where the training is sensitive
        "loss_max_rel_diff": float(np.max(np.abs(scan_l - newton_l) / np.abs(scan_l))),
        "loss_max_rel_diff_step": int(np.argmax(np.abs(scan_l - newton_l) / np.abs(scan_l))) + 1,
        "loss_max_rel_diff_scan_one_bit": float(np.max(np.abs(scan_l - bit_l) / np.abs(scan_l))),
        "steps_with_one_bit_losses_within_1e-4": int(
            np.argmax(np.append(np.abs(scan_l - bit_l) / np.abs(scan_l), 1) > 1e-4)
        ),
        # two float32 trajectories: equal gradients to ~1e-7 drift apart where training is sensitive
        "steps_with_losses_within_1e-4": int(
            np.argmax(np.append(np.abs(scan_l - newton_l) / np.abs(scan_l), 1) > 1e-4)
        ),
        "final_param_rel_diff": curves["param_rel_diff"][-1],
        "scan_final_train_mse": float(scan_l[-1]),
        "newton_final_train_mse": float(newton_l[-1]),
        "scan_test_mse": float(test_mse(p_scan)),
        "newton_test_mse": float(test_mse(p_newton)),
        "baseline_mse": tasks.ADDING_BASELINE_MSE,
        "every_step_converged": all(curves["all_converged"]),
        "warm_iterations_mean_over_training": float(np.mean(curves["warm_iterations_mean"])),
        "cold_iterations_mean_over_training": float(np.mean(curves["cold_iterations_mean"])),
        "warm_iterations_max_over_training": int(np.max(curves["warm_iterations_max"])),
        "cold_iterations_max_over_training": int(np.max(curves["cold_iterations_max"])),
    }
    return {"config": cfg, "summary": summary, "curves": curves}


def make_figure(results: dict):
    fig, ax = common.new_figure(1, 3, size=(4.6, 3.6))
    c = results["curves"]
    steps = np.arange(1, len(c["scan_loss"]) + 1)
    scan = np.asarray(c["scan_loss"])
    ax[0, 0].semilogy(steps, scan, lw=2.5, alpha=0.5, label="lax.scan")
    ax[0, 0].semilogy(steps, c["newton_loss"], "--", label="Newton (DEER), implicit gradients")
    ax[0, 0].axhline(results["summary"]["baseline_mse"], color="k", lw=0.8, ls=":", label="predict 1")
    ax[0, 0].set(title="adding problem, GRU: training MSE", xlabel="step")
    for other, label in (
        ("newton_loss", "Newton vs scan"),
        ("scan_one_bit_loss", "scan from weights 1 bit away vs scan"),
    ):
        ax[0, 1].semilogy(steps, np.abs(np.asarray(c[other]) - scan) / scan, label=label)
    ax[0, 1].set(title="relative difference of the training losses", xlabel="step", ylim=(1e-9, 10))
    ax[0, 2].plot(steps, c["cold_iterations_mean"], label="cold start (zeros), mean over sequences")
    ax[0, 2].plot(steps, c["warm_iterations_mean"], label="warm start (previous step), mean")
    ax[0, 2].plot(steps, c["warm_iterations_max"], ":", label="warm start, max")
    T = results["config"]["T"] if isinstance(results["config"], dict) else results["config"].T
    ax[0, 2].set(title=f"Newton iterations per solve (T = {T})", xlabel="step", ylim=(0, None))
    for a in ax.flat:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("parallel_in_time", PRESETS, main, make_figure))
