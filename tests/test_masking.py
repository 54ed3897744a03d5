"""Variable-length unrolls: a masked batch equals running each sequence alone (values, final carries, gradients),
with right or left padding, forwards, backwards and both ways."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import cells
from jaxrnn.unrolling import length_mask, mask_step, unroll, unroll_bidirectional

V, H, T = 7, 5, 6
LENGTHS = np.array([0, T, 3, 1, T - 1])  # includes the empty and the full sequence
INIT = {"rnn": cells.init_rnn, "lstm": cells.init_lstm, "gru": cells.init_gru}


def _problem(kind, seed=0):
    k_p, k_x, k_y, k_h = jax.random.split(jax.random.key(seed), 4)
    params = INIT[kind](k_p, V, H, V, dtype=jnp.result_type(float))  # float64 under x64
    # non-zero biases and initial carry, so that "kept at the initial carry" is visible
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(k_h, a.shape, a.dtype), params)
    B = len(LENGTHS)
    carry = jax.tree.map(lambda z: 0.5 * jax.random.normal(k_h, z.shape, z.dtype), jaxrnn.initial_carry(params, (B,)))
    xs = jax.random.randint(k_x, (T, B), 0, V)
    targets = jax.random.randint(k_y, (T, B), 0, V)
    return params, carry, xs, targets


def _valid(padding, L):
    return slice(0, L) if padding == "right" else slice(T - L, T)


def _per_sequence(kind, params, carry, xs, targets, padding, reverse):
    """Each sequence alone: its valid steps only, unbatched; returns hs (zeros at padding), carries, loss."""
    step = jaxrnn.step_for(params)
    hs, carries, loss = jnp.zeros((T, len(LENGTHS), H)), [], 0.0
    for b, L in enumerate(LENGTHS):
        sl = _valid(padding, int(L))
        carry_b = jax.tree.map(lambda c: c[b], carry)
        carry_T, hs_b = unroll(step, params, carry_b, xs[sl, b], reverse=reverse)
        hs = hs.at[sl, b].set(hs_b)
        carries.append(carry_T)
        loss = loss + jaxrnn.softmax_cross_entropy(jaxrnn.readout(params, hs_b), targets[sl, b])
    return hs, jax.tree.map(lambda *cs: jnp.stack(cs), *carries), loss


# the default run covers each cell, each padding and each direction once; -m slow runs the whole matrix
DEFAULT_CASES = {("lstm", "right", False), ("gru", "left", True), ("rnn", "left", False), ("lstm", "right", True)}
VALUE_CASES = [
    pytest.param(k, p, r, marks=() if (k, p, r) in DEFAULT_CASES else pytest.mark.slow)
    for k in ("rnn", "lstm", "gru")
    for p in ("right", "left")
    for r in (False, True)
]
GRADIENT_CASES = [
    pytest.param(k, p, marks=() if (k, p) in {("lstm", "left"), ("gru", "right")} else pytest.mark.slow)
    for k in ("rnn", "lstm", "gru")
    for p in ("right", "left")
]


@pytest.mark.parametrize("kind, padding, reverse", VALUE_CASES)
def test_masked_unroll_equals_per_sequence_unroll(x64, kind, padding, reverse):
    params, carry, xs, targets = _problem(kind)
    step = jaxrnn.step_for(params)
    carry_T, hs = unroll(step, params, carry, xs, lengths=jnp.asarray(LENGTHS), padding=padding, reverse=reverse)
    hs_ref, carry_ref, _ = _per_sequence(kind, params, carry, xs, targets, padding, reverse)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-13, atol=1e-15)
    for got, want, start in zip(jax.tree.leaves(carry_T), jax.tree.leaves(carry_ref), jax.tree.leaves(carry)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(got[0], start[0])  # length 0: the initial carry, untouched
    mask = length_mask(jnp.asarray(LENGTHS), T, padding=padding)
    assert int(mask.sum()) == LENGTHS.sum()
    assert float(jnp.abs(jnp.where(mask[..., None], 0.0, hs)).max()) == 0.0  # outputs zero at padding


@pytest.mark.parametrize("kind, padding", GRADIENT_CASES)
def test_masked_loss_gradients_equal_per_sequence_gradients(x64, kind, padding):
    params, carry, xs, targets = _problem(kind, seed=1)
    mask = length_mask(jnp.asarray(LENGTHS), T, padding=padding)
    step = mask_step(jaxrnn.step_for(params))

    def batched(params, carry):
        loss, carry_T = jaxrnn.sequence_loss(params, carry, (xs, mask), targets, step=step, mask=mask)
        return loss + 0.1 * sum(jnp.sum(c**2) for c in jax.tree.leaves(carry_T))

    def alone(params, carry):
        _, carry_T, loss = _per_sequence(kind, params, carry, xs, targets, padding, reverse=False)
        return loss + 0.1 * sum(jnp.sum(c**2) for c in jax.tree.leaves(carry_T))

    (l1, g1), (l2, g2) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(params, carry) for f in (batched, alone))
    assert abs(float(l1 - l2)) <= 1e-12 * abs(float(l2))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert float(jnp.abs(g1[0].Whh).max()) > 1e-3  # the gradient is not trivially zero


def test_mask_and_lengths_and_loop_agree():
    params, carry, xs, _ = _problem("lstm", seed=2)
    mask = length_mask(jnp.asarray(LENGTHS), T)
    by_lengths = unroll(cells.lstm_step, params, carry, xs, lengths=jnp.asarray(LENGTHS))
    by_mask = unroll(cells.lstm_step, params, carry, xs, mask=mask)
    by_loop = unroll(cells.lstm_step, params, carry, xs, mask=mask, method="loop")
    jitted = jax.jit(lambda L: unroll(cells.lstm_step, params, carry, xs, lengths=L))(jnp.asarray(LENGTHS))
    for other in (by_mask, by_loop, jitted):
        for a, b in zip(jax.tree.leaves(by_lengths), jax.tree.leaves(other)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_full_lengths_change_nothing():
    params, carry, xs, _ = _problem("gru", seed=3)
    plain = unroll(cells.gru_step, params, carry, xs)
    full = unroll(cells.gru_step, params, carry, xs, lengths=jnp.full(len(LENGTHS), T))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(full)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_bidirectional_equals_forward_and_flipped_forward(x64, padding):
    pf, carry, xs, _ = _problem("lstm", seed=4)
    pb, hb, _, _ = _problem("gru", seed=5)
    (cf, cb), hs = unroll_bidirectional(
        (cells.lstm_step, cells.gru_step), (pf, pb), (carry, hb), xs, lengths=jnp.asarray(LENGTHS), padding=padding
    )
    assert hs.shape == (T, len(LENGTHS), 2 * H)
    for b, L in enumerate(LENGTHS):
        sl = _valid(padding, int(L))
        cf_b, hf_b = unroll(cells.lstm_step, pf, jax.tree.map(lambda c: c[b], carry), xs[sl, b])
        cb_b, hb_b = unroll(cells.gru_step, pb, hb[b], xs[sl, b][::-1])  # backward = forward over the flip
        np.testing.assert_allclose(hs[sl, b, :H], hf_b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(hs[sl, b, H:], hb_b[::-1], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(cb[b], cb_b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(cf.c[b], cf_b.c, rtol=1e-13, atol=1e-15)


def test_bad_masks_fail_with_one_clear_line():
    params, carry, xs, _ = _problem("rnn")
    with pytest.raises(ValueError, match="not both"):
        unroll(cells.rnn_step, params, carry, xs, mask=jnp.ones((T, 5), bool), lengths=jnp.ones(5, int))
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.6"):
        unroll(cells.rnn_step, params, carry, xs, lengths=jnp.asarray([0, 7, 1, 1, 1]))
    with pytest.raises(ValueError, match="batch shape"):
        unroll(cells.rnn_step, params, carry, xs, lengths=jnp.ones(4, int))
    with pytest.raises(ValueError, match=r"expected \(T=6"):
        unroll(cells.rnn_step, params, carry, xs, mask=jnp.ones((5, 5), bool))
    with pytest.raises(ValueError, match="padding"):
        unroll(cells.rnn_step, params, carry, xs, lengths=jnp.ones(5, int), padding="middle")


def test_length_mask_accepts_known_lengths_closed_over_under_jit():
    lengths = np.array([0, 2, 4])
    mask = jax.jit(lambda: length_mask(lengths, 4))()
    np.testing.assert_array_equal(mask, np.arange(4)[:, None] < lengths)
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.4"):
        jax.jit(lambda: length_mask(np.array([5]), 4))()
