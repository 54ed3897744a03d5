"""The jitted min-char-rnn update against the NumPy one, the lecture optimiser, tracing once, the "hello" toy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import reference
from jaxrnn.data import Vocabulary, load_corpus
from jaxrnn.optim import LectureAdagradState


def test_jitted_update_follows_numpy_min_char_rnn_for_300_iterations(x64):
    """Each iteration starts the JAX step from the NumPy run's parameters, memory and hidden state.

    (Run freely the two would part: min-char-rnn's training is chaotic, see the README.)
    """
    text = load_corpus()[:2000]  # short, so the walk wraps (and resets the state) several times
    vocab = Vocabulary.from_text(text)
    data, V, H, T = vocab.encode(text), vocab.size, 100, 25
    rng = np.random.default_rng(0)
    params = [
        rng.standard_normal((H, V)) * 0.01,
        rng.standard_normal((H, H)) * 0.01,
        rng.standard_normal((V, H)) * 0.01,
        np.zeros(H),
        np.zeros(V),
    ]
    mem = [np.zeros_like(p) for p in params]
    optimizer = jaxrnn.lecture_optimizer(0.1, 5.0)
    train_step = jaxrnn.make_train_step(optimizer)
    p, worst, resets = 0, 0.0, 0
    for n in range(300):
        if p + T + 1 >= len(data) or n == 0:
            hprev, p, resets = np.zeros(H), 0, resets + 1
        inputs, targets = data[p : p + T], data[p + 1 : p + T + 1]
        j_params = jaxrnn.RNNParams(*map(jnp.asarray, params))
        opt_state = optimizer.init(j_params)
        opt_state = (opt_state[0], LectureAdagradState(jaxrnn.RNNParams(*map(jnp.asarray, mem))), opt_state[2])
        new_params, _, h_next, loss = train_step(j_params, opt_state, jnp.asarray(hprev), inputs, targets)
        # the reference updates its NumPy arrays in place: the step must be done reading them first
        jax.block_until_ready((new_params, h_next, loss))

        ref_loss, *grads, ref_h = reference.rnn_loss_fun(inputs, targets, hprev, params)
        reference.adagrad_update(params, grads, mem)  # in place: clip, mem += g*g, p -= lr g / sqrt(mem + 1e-8)
        diffs = [abs(float(loss) - ref_loss), np.abs(np.asarray(h_next) - ref_h).max()]
        diffs += [np.abs(np.asarray(a) - b).max() for a, b in zip(new_params, params)]
        worst = max(worst, *diffs)
        assert max(diffs) <= 1e-10, f"iteration {n}: max abs difference {max(diffs):.2e}"
        hprev, p = ref_h, p + T
    assert resets == 4 and new_params.Wxh.dtype == jnp.float64
    assert ref_loss < 0.8 * np.log(V) * T  # it learned something, so the comparison covered real updates


def test_lecture_optimizer_is_min_char_rnn_adagrad_not_optax_defaults(x64):
    grads = {"w": jnp.array([-7.0, 0.3, 0.0, 2.0])}
    params = {"w": jnp.array([1.0, 1.0, 1.0, 1.0])}
    optimizer = jaxrnn.lecture_optimizer(0.1, 5.0)
    state = optimizer.init(params)
    expected = np.array([1.0, 1.0, 1.0, 1.0])
    mem = np.zeros(4)
    for _ in range(3):
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        g = np.clip(np.array([-7.0, 0.3, 0.0, 2.0]), -5, 5)
        mem += g * g
        expected -= 0.1 * g / np.sqrt(mem + 1e-8)
    np.testing.assert_allclose(params["w"], expected, rtol=1e-15)
    np.testing.assert_allclose(params["w"][0], 1 + 0.1 * (1 + 1 / np.sqrt(2) + 1 / np.sqrt(3)), rtol=1e-9)
    # optax's own adagrad starts its accumulator at 0.1 and differs from the lecture's first step
    optax_updates, _ = optax.chain(optax.clip(5.0), optax.adagrad(0.1)).update(
        grads, optax.chain(optax.clip(5.0), optax.adagrad(0.1)).init(params), params
    )
    assert abs(float(optax_updates["w"][1]) - (-0.1)) > 1e-2


def test_global_norm_variant_keeps_direction_and_bounds_norm():
    grads = {"a": jnp.array([30.0, -40.0]), "b": jnp.array([0.0])}  # global norm 50
    clipped, _ = jaxrnn.optim.clipping(5.0, "global_norm").update(grads, None)
    np.testing.assert_allclose(optax.tree.norm(clipped), 5.0, rtol=1e-6)
    np.testing.assert_allclose(clipped["a"], [3.0, -4.0], rtol=1e-6)
    opt = jaxrnn.lecture_optimizer(0.1, 5.0, clip_mode="global_norm")
    updates, _ = opt.update(grads, opt.init(grads))
    np.testing.assert_allclose(updates["a"], [-0.1, 0.1], rtol=1e-5)  # g / sqrt(g*g) = sign(g) on step one
    with pytest.raises(ValueError, match="unknown clip mode"):
        jaxrnn.lecture_optimizer(clip_mode="norm")
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        jaxrnn.make_optimizer("adamw", 1e-3)
    # One step of each, clipped to global norm 1: g = (0.6, -0.8). Adam and the lecture's Adagrad move by
    # lr * sign(g) on step one, RMSprop (decay 0.9, accumulator from 0) by lr * sign(g) / sqrt(0.1), SGD by lr * g.
    expected = {
        "adam": [-1e-3, 1e-3],
        "adagrad": [-1e-3, 1e-3],
        "rmsprop": [-1e-3 / 0.1**0.5, 1e-3 / 0.1**0.5],
        "sgd": [-6e-4, 8e-4],
    }
    for name, step_one in expected.items():
        opt = jaxrnn.make_optimizer(name, 1e-3, clip=1.0)
        updates, _ = opt.update(grads, opt.init(grads), grads)
        np.testing.assert_allclose(updates["a"], step_one, rtol=1e-5)
        np.testing.assert_allclose(updates["b"], [0.0], atol=1e-12)


def test_train_step_is_traced_once():
    @chex.assert_max_traces(n=1)  # raises on a second trace
    def loss_fn(params, h, xs, targets, mask=None):
        return jaxrnn.sequence_loss(params, h, xs, targets, mask=mask)

    params = jaxrnn.init_rnn(jax.random.PRNGKey(0), 10, 16, 10)
    optimizer = jaxrnn.lecture_optimizer()
    opt_state, h = optimizer.init(params), jaxrnn.initial_carry(params, (4,))
    train_step = jaxrnn.make_train_step(optimizer, loss_fn=loss_fn)
    ids = np.random.default_rng(0).integers(10, size=(25, 4)).astype(np.int32)
    _, _, _, first = train_step(params, opt_state, h, ids, ids)
    for _ in range(20):
        params, opt_state, h, loss = train_step(params, opt_state, h, ids, ids)
    np.testing.assert_allclose(first, 25 * 4 * np.log(10), rtol=0.05)  # near-uniform scores at init: T B ln V
    assert float(loss) < 0.5 * float(first)


def test_hello_toy_spells_hello():
    from experiments import hello

    result = hello.main()
    assert result["text"] == "hello"
    assert result["losses"][-1] < 0.05 < result["losses"][0]
    probs = np.array(result["probabilities"])  # rows: after h, e, l, l; columns: h, e, l, o
    assert probs[2, 2] > 0.9 and probs[3, 3] > 0.9  # first "l" -> "l", second "l" -> "o"


def test_min_char_rnn_tiny_preset_learns(capsys):
    from experiments import min_char_rnn

    result = min_char_rnn.main(min_char_rnn.PRESETS["tiny"])
    first, last = result["smooth_loss"][0][1], result["final_smooth_loss"]
    assert last < first  # smoothed loss falls from its iteration-0 value -ln(1/V) * 25
    assert len(result["samples"][0]) == 50 and "iter 0, loss" in capsys.readouterr().out


@pytest.mark.parametrize("padding", ["right", "left"])
def test_sequence_loss_with_lengths_equals_each_sequence_alone(x64, padding):
    V, H, T = 6, 8, 7
    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), V, H, V, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    lengths = np.array([0, 3, 7, 5])
    ids, targets = rng.integers(V, size=(T, 4)), rng.integers(V, size=(T, 4))
    carry = jaxrnn.initial_carry(params, (4,))
    loss_fn = jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True)
    (loss, carry_T), grads = loss_fn(params, carry, ids, targets, lengths=lengths, padding=padding)
    total, total_grads = 0.0, jax.tree.map(jnp.zeros_like, params)
    for b, n in enumerate(lengths):
        steps = slice(0, n) if padding == "right" else slice(T - n, T)
        (l, c), g = loss_fn(params, jaxrnn.initial_carry(params), ids[steps, b], targets[steps, b])
        total, total_grads = total + l, jax.tree.map(jnp.add, total_grads, g)
        np.testing.assert_allclose(carry_T.h[b], c.h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, total, rtol=1e-12)
    for a, e in zip(grads, total_grads):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-13)
