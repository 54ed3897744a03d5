"""Properties over random shapes, batch axes, input kinds, cells and methods (hypothesis).

scan, loop, fused and newton agree in values and gradients in float64 to 1e-9 relative; every bad input listed in
the docstrings raises its named error. The default run tries a few examples (each new shape compiles); the slow
run (``-m slow``) many more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import reference

METHODS = ("scan", "loop", "fused", "newton")
INITS = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}

problems = st.fixed_dictionaries(
    {
        "cell": st.sampled_from(sorted(INITS)),
        "batch": st.sampled_from([(), (2,), (1, 3)]),
        "T": st.integers(1, 5),
        "D": st.integers(1, 4),
        "H": st.integers(1, 5),
        "V": st.integers(2, 6),
        "ids": st.booleans(),
        "time_major": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)

FEW = settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _setup(p, dtype=jnp.float64):
    k = jax.random.split(jax.random.key(p["seed"]), 4)
    D = p["V"] if p["ids"] else p["D"]
    params = INITS[p["cell"]](k[0], D, p["H"], p["V"], dtype=dtype)
    carry = jax.tree.map(lambda a: a + 0.1, jaxrnn.initial_carry(params, p["batch"]))
    shape = (p["T"], *p["batch"])
    xs = jax.random.randint(k[1], shape, 0, D) if p["ids"] else jax.random.normal(k[1], (*shape, D), dtype)
    ys = jax.random.randint(k[2], shape, 0, p["V"])
    if not p["time_major"]:
        n = len(p["batch"])
        xs, ys = jnp.moveaxis(xs, 0, n), jnp.moveaxis(ys, 0, n)
    return params, carry, xs, ys


def _loss_and_grads(p, method):
    params, carry, xs, ys = _setup(p)

    def f(params, carry):
        loss, carry_T = jaxrnn.sequence_loss(params, carry, xs, ys, method=method, time_major=p["time_major"])
        return loss + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry_T)), loss

    (_, loss), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, carry)
    return loss, grads  # the outputs hs through the loss and its gradient, carry_T through sin(carry_T)


def _methods_agree(p):
    with jax.enable_x64(True):
        base = _loss_and_grads(p, "scan")
        for method in METHODS[1:]:
            other = _loss_and_grads(p, method)
            for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(other)):
                assert a.shape == b.shape
                err = float(np.max(reference.relative_error(np.asarray(a), np.asarray(b)), initial=0.0))
                assert err < 1e-9, (method, p, err)


@FEW
@given(problems)
def test_every_method_gives_the_same_values_and_gradients(p):
    _methods_agree(p)


@pytest.mark.slow
@MANY
@given(problems)
def test_every_method_gives_the_same_values_and_gradients_many(p):
    _methods_agree(p)


def _bad_inputs_are_refused(p, offset, where, method):
    params, carry, xs, ys = _setup(p, jnp.float32)
    V_in = params.Wxh.shape[1]
    if where == "xs" and not p["ids"]:
        where = "targets"
    bad = lambda a, V: a.at[(0,) * a.ndim].set(V + offset if offset >= 0 else offset)
    xs, ys = (bad(xs, V_in), ys) if where == "xs" else (xs, bad(ys, p["V"]))
    with pytest.raises(ValueError, match=rf"sequence_loss: {where}: token ids must lie in \[0, "):
        jaxrnn.sequence_loss(params, carry, xs, ys, method=method, time_major=p["time_major"])
    loss, grads = jax.jit(
        jax.value_and_grad(
            lambda q, x, y: jaxrnn.sequence_loss(q, carry, x, y, method=method, time_major=p["time_major"])[0]
        )
    )(params, xs, ys)
    assert bool(jnp.isnan(loss))
    assert all(bool(jnp.isnan(g).all()) for g in jax.tree.leaves(grads))


bad_cases = st.tuples(
    problems,
    st.integers(-3, 3),  # the bad id: V + k for k >= 0, k itself when negative
    st.sampled_from(["xs", "targets"]),
    st.sampled_from(METHODS),
)


@FEW
@given(bad_cases)
def test_bad_token_ids_are_refused_by_name_or_poison_everything(case):
    _bad_inputs_are_refused(*case)


@pytest.mark.slow
@MANY
@given(bad_cases)
def test_bad_token_ids_are_refused_by_name_or_poison_everything_many(case):
    _bad_inputs_are_refused(*case)


shape_mistakes = st.tuples(problems, st.integers(1, 3))


def _wrong_batch_is_named(p, extra):
    if not p["batch"]:  # batch-major without batch axes is time-major: a carry of batch (T,) would fit it
        p = {**p, "time_major": True}
    params, carry, xs, ys = _setup(p, jnp.float32)
    wrong = jaxrnn.initial_carry(params, (*p["batch"][:-1], p["batch"][-1] + extra) if p["batch"] else (extra,))
    with pytest.raises(ValueError, match=r"do not fit the carry's batch shape"):
        jaxrnn.unroll(jaxrnn.step_for(params), params, wrong, xs, time_major=p["time_major"])


@FEW
@given(shape_mistakes)
def test_a_carry_of_another_batch_shape_is_named(case):
    _wrong_batch_is_named(*case)


@pytest.mark.slow
@MANY
@given(shape_mistakes)
def test_a_carry_of_another_batch_shape_is_named_many(case):
    _wrong_batch_is_named(*case)
