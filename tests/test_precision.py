"""The precision policy: bfloat16 products, float32 everything else; float32 unchanged; gradients in float32.

Bounds. bfloat16 keeps 8 significant bits, so rounding an operand costs a relative error of at most u = 2^-8. A
product ``sum_k w_k x_k`` of rounded operands is off by at most ``2u sum_k |w_k x_k|`` (plus ``u`` of the result
when it is rounded to bfloat16 before the float32 cast), about 3u = 1.2% of the sum of magnitudes. Through
``tanh``/``sigmoid`` (slopes at most 1) and ``T`` steps whose errors do not compound (the recurrences here
contract), the loss and the gradients then stay within a few times 3u of float32, and differ from it by far more
than float32 rounding (2^-24). The tests assert both sides.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import precision

D, H, V, T, B = 6, 32, 11, 8, 4
U = 2.0**-8  # bfloat16's unit roundoff
INITS = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}
DEFAULT_CASES = {("rnn", "scan"), ("lstm", "fused"), ("gru", "newton"), ("lstm", "loop")}


def _cases(methods):
    """Every (cell, method); the default run compiles a few, ``-m slow`` all of them."""
    return [
        pytest.param(cell, method, marks=() if (cell, method) in DEFAULT_CASES else pytest.mark.slow)
        for cell in INITS
        for method in methods
    ]


def _problem(cell, ids=True, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    params = INITS[cell](k[0], V if ids else D, H, V)
    carry = jaxrnn.initial_carry(params, (B,))
    xs = jax.random.randint(k[1], (T, B), 0, V) if ids else jax.random.normal(k[1], (T, B, D))
    ys = jax.random.randint(k[2], (T, B), 0, V)
    return params, carry, xs, ys


def _loss_and_grads(params, carry, xs, ys, **kw):
    f = lambda p: jaxrnn.sequence_loss(p, carry, xs, ys, reduction="mean", **kw)
    return jax.jit(jax.value_and_grad(f, has_aux=True))(params)


def _rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


@pytest.mark.parametrize("cell, method", _cases(["scan", "fused"]))
def test_float32_policy_is_the_plain_path_to_the_bit(cell, method):
    params, carry, xs, ys = _problem(cell, ids=cell != "rnn")
    plain = _loss_and_grads(params, carry, xs, ys, method=method)
    policy = _loss_and_grads(params, carry, xs, ys, method=method, compute_dtype=jnp.float32)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(policy)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell, method", _cases(["scan", "loop", "fused", "newton"]))
def test_bfloat16_is_within_the_derived_bound_and_not_float32(cell, method):
    params, carry, xs, ys = _problem(cell, ids=cell == "lstm")
    (loss32, carry32), grads32 = _loss_and_grads(params, carry, xs, ys, method=method)
    (loss16, carry16), grads16 = _loss_and_grads(params, carry, xs, ys, method=method, compute_dtype=jnp.bfloat16)
    assert loss16.dtype == jnp.float32 and all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(carry16))
    assert all(g.dtype == p.dtype == jnp.float32 for g, p in zip(jax.tree.leaves(grads16), jax.tree.leaves(params)))
    loss_error = abs(float(loss16 - loss32)) / float(loss32)
    assert 2.0**-20 < loss_error < 3 * U, loss_error  # bfloat16 did round, and no more than one product's worth
    for name, g16, g32 in zip(params._fields, grads16, grads32):
        error = _rel(g16, g32)
        assert 2.0**-20 < error < 8 * 3 * U, (name, error)  # the gradient passes T = 8 steps of products
    for a, b in zip(jax.tree.leaves(carry16), jax.tree.leaves(carry32)):
        assert _rel(a, b) < 8 * 3 * U


@pytest.mark.parametrize("method", ["scan", "fused"])
def test_the_matmuls_of_the_bfloat16_train_step_run_in_bfloat16(method):
    params, carry, xs, ys = _problem("lstm", ids=False)
    optimizer = optax.adam(1e-3)
    args = (params, optimizer.init(params), carry, xs, ys)
    text = {
        dtype: jaxrnn.make_train_step(optimizer, method=method, compute_dtype=dtype).lower(*args).as_text()
        for dtype in (None, jnp.bfloat16)
    }
    dots = {dtype: [line for line in t.splitlines() if "dot_general" in line] for dtype, t in text.items()}
    assert dots[None] and not any("bf16" in line for line in dots[None])
    in_bf16 = [line for line in dots[jnp.bfloat16] if "tensor<" in line and "xbf16>" in line.split("->")[0]]
    assert len(in_bf16) == len(dots[jnp.bfloat16]), "every product of the bf16 policy reads bf16 operands"
    # the parameters and the optimiser state stay float32: the step's signature is the float32 one
    signature = lambda t: next(line for line in t.splitlines() if "func.func public @main" in line)
    assert signature(text[None]) == signature(text[jnp.bfloat16])


def test_a_bfloat16_training_step_keeps_float32_parameters_and_optimiser_state():
    params, carry, xs, ys = _problem("lstm")
    optimizer = optax.adam(1e-2)
    step = jaxrnn.make_train_step(optimizer, method="fused", compute_dtype=jnp.bfloat16)
    new_params, opt_state, carry_T, loss = step(params, optimizer.init(params), carry, xs, ys)
    for tree in (new_params, opt_state, carry_T, loss):
        assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in jax.tree.leaves(tree))
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, new_params))


def test_bfloat16_parameters_keep_a_float32_state():
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), _problem("lstm")[0])
    carry = jaxrnn.initial_carry(params, (B,))
    assert carry.h.dtype == carry.c.dtype == jnp.float32
    carry_T, hs = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, _problem("lstm")[2], method="fused")
    assert hs.dtype == carry_T.c.dtype == jnp.float32


def test_sampling_follows_the_policy():
    params, carry, _, _ = _problem("gru")
    ids32, c32 = jaxrnn.sample(jax.random.key(0), params, carry, jnp.zeros(B, int), 5, temperature=0.0)
    ids16, c16 = jaxrnn.sample(
        jax.random.key(0), params, carry, jnp.zeros(B, int), 5, temperature=0.0, compute_dtype=jnp.bfloat16
    )
    assert c16.dtype == jnp.float32 and ids16.shape == ids32.shape
    assert 0 < _rel(c16, c32) < 5 * 3 * U


def test_cast_weights_casts_matrices_only_and_refuses_non_floats():
    params = jaxrnn.init_stack(jax.random.key(0), V, (H, H), V, embed_size=5)
    cast = precision.cast_weights(params, jnp.bfloat16)
    for leaf, orig in zip(jax.tree.leaves(cast), jax.tree.leaves(params)):
        assert leaf.dtype == (jnp.bfloat16 if orig.ndim >= 2 else jnp.float32)
    with pytest.raises(ValueError, match="make_train_step: compute_dtype must be None or a floating dtype"):
        jaxrnn.make_train_step(optax.sgd(0.1), compute_dtype=jnp.int8)
    with pytest.raises(ValueError, match="sequence_loss: compute_dtype"):
        jaxrnn.sequence_loss(*_problem("rnn"), compute_dtype="bf16")


def test_the_bfloat16_train_step_lowers_for_gpu_and_tpu():
    params, carry, xs, ys = _problem("lstm")
    optimizer = optax.adam(1e-3)
    step = jaxrnn.make_train_step(optimizer, method="fused", compute_dtype=jnp.bfloat16)
    exported = jax.export.export(step.jitted, platforms=["cuda", "tpu"])(params, optimizer.init(params), carry, xs, ys)
    assert exported.platforms == ("cuda", "tpu")
    assert "bf16" in exported.mlir_module()


@pytest.mark.long
def test_the_character_model_trained_in_bfloat16_ends_within_one_percent_of_float32(tmp_path):
    """The default ``jaxrnn train`` (2000 updates on the built-in corpus) with ``--precision bf16`` ends within 1%
    of the float32 run's validation loss. Minutes per run: ``python -m pytest -m long tests/test_precision.py``."""
    from jaxrnn.lm import RunConfig, run_training

    val = {}
    for policy in ("f32", "bf16"):
        summary = run_training(RunConfig(precision=policy, sample_length=0), str(tmp_path / policy), progress=False)
        val[policy] = summary["val_loss"]
    assert abs(val["bf16"] - val["f32"]) / val["f32"] < 0.01, val


def test_the_flax_modules_take_flax_s_dtype_as_the_compute_dtype():
    from flax import nnx

    from jaxrnn.flax_modules import LinenCell, NnxCell, linen_variables

    xs = jax.random.normal(jax.random.key(1), (B, D))
    cell32 = NnxCell(D, H, cell="lstm", rngs=nnx.Rngs(0))
    cell16 = NnxCell(D, H, cell="lstm", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert cell16.Whh[...].dtype == jnp.float32  # param_dtype
    carry = cell32.initialize_carry((B, D))
    (_, h32), (_, h16) = cell32(carry, xs), cell16(carry, xs)
    assert h16.dtype == jnp.float32 and 0 < _rel(h16, h32) < 3 * U
    params = cell32.cell_params()
    linen = {d: LinenCell(H, cell="lstm", dtype=d) for d in (None, jnp.bfloat16)}
    outs = {d: m.apply(linen_variables(params), carry, xs)[1] for d, m in linen.items()}
    np.testing.assert_array_equal(outs[None], h32)
    np.testing.assert_array_equal(outs[jnp.bfloat16], h16)
