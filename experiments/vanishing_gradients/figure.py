"""The figure of the vanishing-gradients experiment: gradient norm against lag on log axes."""

from __future__ import annotations


import numpy as np

from experiments import common


def log_limits(*curves):
    """y-limits (a decade beyond the extremes) that show every positive value of ``curves``."""
    v = np.concatenate([np.ravel(np.asarray(c, float)) for c in curves])
    v = v[np.isfinite(v) & (v > 0)]
    return 10 ** (np.floor(np.log10(v.min())) - 1), 10 ** (np.ceil(np.log10(v.max())) + 1)


def log_axis(a, limits):
    """A log y-axis with at most about eight labelled decades."""
    from matplotlib.ticker import LogLocator

    a.set_yscale("log")
    a.set_ylim(*limits)
    a.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    a.yaxis.set_minor_locator(LogLocator(base=10, subs="auto", numticks=8))


def make_figure(results: dict):
    fig, ax = common.new_figure(2, 2, size=(5.6, 4.0))
    lags = np.asarray(results["rnn"]["lags"])
    linear = results["rnn"]["linear"]
    for s, v in linear.items():
        ax[0, 0].plot(lags, v["norm_by_lag"], label=f"s = {s} (fitted slope {v['slope']:.3f}, ln s = {v['ln_s']:.3f})")
    log_axis(ax[0, 0], log_limits(*[v["norm_by_lag"] for v in linear.values()]))
    ax[0, 0].set(
        title="linear RNN, Whh = sQ: ||dh_T/dh_t|| = s^(T-t)", xlabel="lag T - t (steps)", ylabel="||dh_T/dh_t||_2"
    )
    tanh = results["rnn"]["tanh"]
    for s, v in tanh.items():
        (line,) = ax[0, 1].plot(lags, v["median_norm_by_lag"], label=f"s = {s}")
        ax[0, 1].plot(lags, float(s) ** lags, "--", color=line.get_color(), lw=0.8)
    ax[0, 1].plot([], [], "k--", lw=0.8, label="bound s^(T-t)")
    log_axis(ax[0, 1], log_limits(*[v["median_norm_by_lag"] for v in tanh.values()], *[float(s) ** lags for s in tanh]))
    ax[0, 1].set(
        title="tanh RNN (median over inputs) and its bound", xlabel="lag T - t (steps)", ylabel="||dh_T/dh_t||_2"
    )
    sweep = results["lstm"]["sweep"]
    for b, v in sweep.items():
        ax[1, 0].plot(lags, v["median_full_dc_norm_by_lag"], label=f"LSTM ||dc_T/dc_t||, b_f = {b}")
    rnn_init = results["lstm"]["rnn_default_init_median_norm_by_lag"]
    ax[1, 0].plot(lags, rnn_init, "k--", label="tanh RNN ||dh_T/dh_t|| (orthogonal init)")
    log_axis(ax[1, 0], log_limits(rnn_init, *[v["median_full_dc_norm_by_lag"] for v in sweep.values()]))
    ax[1, 0].set(
        title="at initialisation: forget-bias sweep (median)",
        xlabel="lag T - t (steps)",
        ylabel="||dc_T/dc_t||_2 (LSTM), ||dh_T/dh_t||_2 (RNN)",
    )
    trained = results["trained"]
    shown = []
    for kind, color in (("rnn", "tab:red"), ("lstm", "tab:blue")):
        if kind not in trained:
            continue
        v = trained[kind]
        init = np.array([r["median_norm_by_lag_init"] for r in v["seeds"]], float)
        after = np.array([r["median_norm_by_lag_trained"] for r in v["seeds"]], float)
        x = np.arange(1, init.shape[1] + 1)
        n = v["test_mse"]["n"]
        common.band(ax[1, 1], x, init, color=color, ls="--", label=f"{kind.upper()} at init", log=True)
        common.band(
            ax[1, 1],
            x,
            after,
            color=color,
            label=f"{kind.upper()} trained (test MSE {common.pm(v['test_mse'], 4)}, {n} seeds)",
            log=True,
        )
        shown += [init, after]
    if shown:
        log_axis(ax[1, 1], log_limits(*shown))
    ax[1, 1].set(
        title=f"adding problem T = {results['config'].train_T}: gradient reaching each step\n"
        "(median over sequences; band: min to max over seeds)",
        xlabel="lag T - t (steps)",
        ylabel="||dL/d state_t||_2",
    )
    for a in ax.flat:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig
