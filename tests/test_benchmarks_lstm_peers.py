"""``benchmarks.lstm_peers``: the same model and weights in jaxrnn, Flax and PyTorch, in float32 and bfloat16; the
matmul rates it is measured against; its table."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmark_scripts import run_all
from benchmarks import lstm_peers, lstm_table, matmul_rate, peers, report


@pytest.fixture(scope="module")
def tiny():
    p, carry, xs, ys = lstm_peers.problem(2, 5, 3, 4, 7)
    return p, carry, xs, ys, optax.adam(1e-3)


@pytest.mark.slow
def test_peers_compute_the_same_loss_as_jaxrnn_in_both_precisions(tiny):
    """The weights reach Flax and PyTorch through ``jaxrnn.convert`` (gate orders, layouts) and give jaxrnn's loss;
    in bfloat16 each library stays within bfloat16's rounding of it."""
    p, carry, xs, ys, optimizer = tiny
    f32 = float(lstm_peers.jaxrnn_step(optimizer, lstm_peers.F32)(p, optimizer.init(p), carry, xs, ys)[3])
    assert f32 > 1.0  # cross-entropy near log(7) at random weights, not a degenerate zero
    bf16 = float(lstm_peers.jaxrnn_step(optimizer, lstm_peers.BF16)(p, optimizer.init(p), carry, xs, ys)[3])
    variables, _, linen_loss = peers.flax_linen_impl(p, optimizer)
    bf16_variables, _, bf16_linen_loss = peers.flax_linen_impl(p, optimizer, dtype=jnp.bfloat16)
    model, _, _, nnx_loss = peers.flax_nnx_impl(p, optimizer)
    same = [float(linen_loss(variables, xs, ys)), float(nnx_loss(model, xs, ys))]
    close = [bf16, float(bf16_linen_loss(bf16_variables, xs, ys))]
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        _, loss_of, to_ids = peers.torch_impl(p, 1e-3, "cpu")
        same.append(loss_of(to_ids(xs), to_ids(ys)).item())
    np.testing.assert_allclose(same, f32, rtol=1e-5)
    np.testing.assert_allclose(close, f32, rtol=2e-2)
    assert bf16 != f32  # the policy did compute in bfloat16


@pytest.mark.slow
def test_a_loop_of_updates_is_checked_against_calls_of_its_step(tiny):
    p, carry, xs, ys, optimizer = tiny
    k, V = 3, 7
    chunks = lstm_peers.update_chunks(xs, ys, k, V, seed=1)
    assert chunks[0].shape == (k, *xs.shape) and (chunks[0][0] == xs).all() and (chunks[1][0] == ys).all()
    assert not (chunks[0][1] == chunks[0][2]).all() and int(chunks[0].max()) < V
    step = lstm_peers.jaxrnn_step(optimizer, lstm_peers.F32)
    loop = lstm_peers.jaxrnn_step(optimizer, lstm_peers.F32, k)
    state = (p, optimizer.init(p), carry)
    call, _, first = lstm_peers.checked_loop("jaxrnn", loop, state, step, chunks, 1e-5)
    assert first == pytest.approx(float(step(*state, xs, ys)[3]), rel=1e-6) and np.asarray(call()[-1]).shape == (k,)

    def reset_step(params, opt_state, carry, xs, ys):  # drops the carry: not what the loop does
        params, opt_state, _, loss = step(params, opt_state, carry, xs, ys)
        return params, opt_state, jax.tree.map(jnp.zeros_like, carry), loss

    with pytest.raises(AssertionError, match="jaxrnn: its losses against calls of its step"):
        lstm_peers.checked_loop("jaxrnn", loop, state, reset_step, chunks, 1e-5)


def test_flops_count_forward_and_twice_the_forward_for_backward():
    flops = lstm_peers.flops_per_update(B=2, T=5, H=3, E=4, V=7)
    assert flops == {
        "input projection": 3 * 2 * 2 * 5 * 12 * 4,
        "recurrent": 3 * 2 * 2 * 5 * 12 * 3,
        "readout": 3 * 2 * 2 * 5 * 7 * 3,
    }


def test_the_fraction_of_the_matmul_rate_weights_each_part_by_its_flops():
    flops = {"input projection": 1e9, "recurrent": 2e9, "readout": 1e9}
    rates = [{"part": "input projection", "gflops": 10.0}, {"part": "recurrent", "gflops": 20.0}]
    rates += [{"part": "readout", "gflops": 5.0}, {"part": "large", "gflops": 40.0}]
    out = matmul_rate.fractions(flops, [1.0, 1.0, 2.0], rates)
    at_sizes = 4e9 / (1e9 / 10 + 2e9 / 20 + 1e9 / 5)  # GFLOP / (GFLOP/s): 4 GFLOP in 0.4 s, 10 GFLOP/s
    assert out["gflops"] == pytest.approx(4.0) and out["gflops_q25"] == pytest.approx(3.0)
    assert out["matmul_rate_gflops"] == pytest.approx(at_sizes) and out["fraction_of_matmul_rate"] == pytest.approx(0.4)
    assert out["fraction_of_large_matmul"] == pytest.approx(0.1)


def _row(impl, precision, seconds, k=1):
    rounds = [seconds, seconds, 2 * seconds]
    row = dict(B=1, T=2, H=3, impl=impl, precision=precision, updates_per_call=k, compile_s=1.0, round_s=rounds)
    row |= lstm_table.quartiles("tokens_per_s", [2 / t for t in rounds])
    row |= matmul_rate.fractions({p: 1e9 for p in matmul_rate.PARTS}, rounds, [RATE | {"part": p} for p in PARTS])
    return row | {"paired_speedup_vs_jaxrnn_float32": {"median": 4.0 / seconds, "q25": 1.0, "q75": 9.0}}


RATE, PARTS = {"gflops": 10.0, "gflops_q25": 9.0, "gflops_q75": 11.0}, (*matmul_rate.PARTS, "large")


def test_the_table_gives_each_row_its_precision_quartiles_and_fractions_and_lists_what_did_not_run(tmp_path):
    rows = [
        _row("jaxrnn", "float32", 4.0),
        _row("jaxrnn", "bfloat16", 8.0),
        _row("jaxrnn, 8 updates/call", "float32", 2.0, 8),
    ]
    matmul = [RATE | dict(B=1, T=2, H=3, part=p, precision="float32", shape=(1, 3, 12)) for p in PARTS]
    skipped = [dict(B=1, T=2, H=3, impl="pytorch nn.LSTM (2 threads), autocast", precision="bfloat16", reason="no")]
    results = {"rows": rows, "matmul": matmul, "skipped": skipped}
    table = lstm_table.markdown(results)
    assert "| 1, 2, 3 | jaxrnn | float32 | 0 [0-0] | 0.8 | 8% | 8% | 1.00 [1.00-9.00] | 1.00 |" in table
    assert "| 1, 2, 3 | jaxrnn | bfloat16 |" in table and "| 0.50 [1.00-9.00] |" in table
    assert "| 1, 2, 3 | recurrent | (1, 3, 12) | float32 | 10.0 [9.0-11.0] |" in table
    assert "- 1, 2, 3 pytorch nn.LSTM (2 threads), autocast (bfloat16): not run here: no" in table
    environment = {"command": "c", "device": "cpu", "nproc": 2, "cpu_model": "m", "date": "d"}
    environment["versions"] = dict.fromkeys(("jax", "flax", "optax", "numpy", "torch"), "0")
    (tmp_path / "lstm_peers.json").write_text(json.dumps(results | {"environment": environment}))
    assert report.lstm_peers(report.load(tmp_path, "lstm_peers")).endswith(table)


@pytest.mark.slow
def test_quick_run_writes_every_row_in_both_precisions_and_its_table(tmp_path):
    run_all(tmp_path, "lstm_peers")
    result = json.loads((tmp_path / "lstm_peers.json").read_text())
    rows = {(row["impl"].split(" (")[0], row["precision"]) for row in result["rows"]}
    ran = rows | {(s["impl"].split(" (")[0], s["precision"]) for s in result["skipped"]}
    linen = "flax linen nn.RNN(OptimizedLSTMCell)"
    for precision in ("float32", "bfloat16"):
        assert {("jaxrnn", precision), ("jaxrnn, 2 updates/call", precision), (linen, precision)} <= rows
        assert (f"{linen}, 2 updates/call", precision) in rows and ("pytorch nn.LSTM", precision) in ran
    assert ("flax nnx RNN(OptimizedLSTMCell)", "float32") in rows
    assert {(m["part"], m["precision"]) for m in result["matmul"]} == {
        (p, q) for p in PARTS for q in ("float32", "bfloat16")
    }
    for row in result["rows"]:
        assert row["tokens_per_s_q25"] <= row["tokens_per_s"] <= row["tokens_per_s_q75"]
        assert row["fraction_of_matmul_rate"] == pytest.approx(row["gflops"] / row["matmul_rate_gflops"])
    assert (tmp_path / "lstm_peers.md").read_text() == lstm_table.markdown(result) + "\n"
