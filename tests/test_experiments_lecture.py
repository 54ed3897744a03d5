"""The lecture's character-level experiments: min-char-rnn, hello, two runs that part, truncated BPTT."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn


def test_hello_tiny_writes_hello_to_its_json(tmp_path, capsys):
    import json

    from experiments import hello

    assert hello.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "hello.json").read_text())
    assert result["text"] == "hello" and "feeding 'h' gives 'hello'" in capsys.readouterr().out
    assert result["losses"][0] == pytest.approx(4 * math.log(4), rel=0.5)  # 4 characters, about uniform at init
    assert result["losses"][-1] < 0.1
    probs = np.array(result["probabilities"])  # rows: after h, e, l, l; columns: h, e, l, o
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=3e-3)
    assert probs[2, 2] > 0.8 and probs[3, 3] > 0.8  # first "l" -> "l", second "l" -> "o"


def test_min_char_rnn_tiny_falls_below_the_uniform_guess_and_writes_its_curve(tmp_path, capsys):
    import json

    from experiments import min_char_rnn

    assert min_char_rnn.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert "iter 200, loss" in capsys.readouterr().out
    result = json.loads((tmp_path / "min_char_rnn.json").read_text())
    s, T = result["summary"], result["config"]["seq_length"]
    assert s["uniform_loss_per_char"] == pytest.approx(math.log(result["vocab_size"]), rel=1e-12)
    assert result["smooth_loss"][0][1] == pytest.approx(T * s["uniform_loss_per_char"], rel=1e-3)  # iteration 0
    assert s["loss_per_char_last_100"] < 0.75 * s["uniform_loss_per_char"]  # after 300 of 25 characters each
    assert s["final_smooth_loss_per_char"] < s["uniform_loss_per_char"]
    assert np.all(np.diff(result["smooth_loss_curve"]["loss"][10:]) < 0.05)  # smoothed: no jumps
    assert (tmp_path / "min_char_rnn.png").stat().st_size > 10_000


def test_min_char_rnn_chaos_tiny_difference_grows_and_a_larger_epsilon_damps_it(tmp_path):
    import json

    from experiments import min_char_rnn_chaos

    assert min_char_rnn_chaos.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "min_char_rnn_chaos.json").read_text())
    small, large = np.array(result["gap"]["eps=1e-08"]), np.array(result["gap"]["eps=0.0001"])
    assert len(small) == len(large) == result["config"]["iterations"]
    assert small[1] < 1e-12 and small[50] > 1e3 * small[10] > 0  # 1e-14 becomes a visible loss difference
    assert small.max() > 100 * large.max()
    assert result["summary"]["eps=1e-08"]["largest"] == small.max()
    assert (tmp_path / "min_char_rnn_chaos.png").stat().st_size > 10_000


def test_truncated_gradient_is_the_sum_of_chunk_gradients_and_full_bptt_when_k_is_T(x64):
    from experiments import truncated_bptt

    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), 7, 5, 7, dtype=jnp.float64)
    carry = jaxrnn.initial_carry(params, (3,))
    xs = jax.random.randint(jax.random.PRNGKey(1), (12, 3), 0, 7)
    ys = jax.random.randint(jax.random.PRNGKey(2), (12, 3), 0, 7)
    grad = jax.jit(jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True))
    (full_loss, _), full = grad(params, carry, xs, ys)
    loss, grads = truncated_bptt.truncated_gradient(params, carry, xs, ys, 12)
    assert float(loss) == pytest.approx(float(full_loss), rel=1e-14)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), grads, full)
    (l1, c1), g1 = grad(params, carry, xs[:4], ys[:4])   # by hand: three chunks of 4, state carried
    (l2, c2), g2 = grad(params, c1, xs[4:8], ys[4:8])
    (l3, _), g3 = grad(params, c2, xs[8:], ys[8:])
    loss, grads = truncated_bptt.truncated_gradient(params, carry, xs, ys, 4)
    assert float(loss) == pytest.approx(float(l1 + l2 + l3), rel=1e-14)  # the same loss: the forward pass is whole
    jax.tree.map(lambda a, *b: np.testing.assert_allclose(a, sum(b), rtol=1e-12, atol=1e-14), grads, g1, g2, g3)
    assert float(jnp.abs(grads.Whh - full.Whh).max()) > 1e-6  # and a different gradient from full BPTT


@pytest.mark.slow
def test_truncated_bptt_tiny_preset_learns_and_only_truncation_keeps_memory_flat():
    from experiments import truncated_bptt

    cfg = truncated_bptt.PRESETS["tiny"]
    s = truncated_bptt.main(cfg)["summary"]
    for k in cfg.truncations:
        assert s[f"k{k}_validation_loss"] < 0.8 * s["uniform_loss"]
    T0, T1 = cfg.memory_lengths[0], cfg.memory_lengths[-1]
    growth = T1 / T0
    assert s[f"full_growth_T{T0}_to_T{T1}"] > 0.6 * growth         # O(T)
    assert s[f"remat_growth_T{T0}_to_T{T1}"] > 0.6 * growth
    assert s[f"truncated_growth_T{T0}_to_T{T1}"] < 1.1              # O(k): only the ids grow
    assert s[f"remat_MiB_T{T1}"] < s[f"full_MiB_T{T1}"]
