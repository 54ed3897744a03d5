"""Newton's method over time (DEER / quasi-DEER): states and implicit gradients equal the scan's."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.gradflow import scaled_orthogonal
from jaxrnn.newton import NewtonSolver, default_tolerance, linear_recurrence, newton_unroll

# jitted (eager dispatch of the while loop, vmaps and custom VJP costs seconds per call): step and options static
_newton = jax.jit(
    newton_unroll, static_argnums=0, static_argnames=("jacobian", "damping", "tol", "max_iter", "adjoint", "batch_ndim")
)
INITS = {"rnn": jaxrnn.init_rnn, "gru": jaxrnn.init_gru, "lstm": jaxrnn.init_lstm}
D, H = 3, 6


def _rel(a, b) -> float:
    """Largest relative difference over the leaves: ``max|a - b| / max|a|``."""
    return max(
        float(
            np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
            / max(float(np.max(np.abs(np.asarray(x, np.float64)))), 1e-30)
        )
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _problem(kind, T, batch, dtype):
    params = INITS[kind](jax.random.PRNGKey(0), D, H, 2, dtype=dtype)
    params = params._replace(bh=params.bh + 0.3)  # non-zero biases: a non-trivial fixed point
    xs = jax.random.normal(jax.random.PRNGKey(T), (T, *batch, D), dtype)
    carry = jax.tree.map(lambda a: a + 0.2, jaxrnn.initial_carry(params, batch))
    return jaxrnn.step_for(params), params, carry, xs


def _loss(unroll_fn):
    """A loss reading every output and the final carry, so that every cotangent path is exercised; the unroll's
    full result comes back as the auxiliary value."""

    def loss(params, carry, xs):
        result = unroll_fn(params, carry, xs)
        carry_T, hs = result[:2]
        return jnp.sum(jnp.sin(3 * hs)) + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(carry_T)), result

    return loss


def _compare(step, params, carry, xs, argnums=(0, 1, 2), scan=None, **options):
    """``(scan's (carry_T, hs), its gradients, NewtonResult, Newton's gradients)`` in one compiled call."""
    scan = scan or (lambda p, c, x: jaxrnn.unroll(step, p, c, x, method="scan"))
    newton = lambda p, c, x: newton_unroll(step, p, c, x, **options)
    grad = lambda fn: jax.grad(_loss(fn), argnums=argnums, has_aux=True)

    @jax.jit
    def both(p, c, x):
        ref_grads, ref = grad(scan)(p, c, x)
        grads, result = grad(newton)(p, c, x)
        return ref, ref_grads, result, grads

    return both(params, carry, xs)


slow = pytest.mark.slow
CASES = [
    ("rnn", 1, (), "full"),
    pytest.param("rnn", 64, (3,), "diagonal", marks=slow),
    pytest.param("rnn", 7, (2,), "full", marks=slow),
    pytest.param("gru", 7, (3,), "full", marks=slow),
    ("gru", 64, (), "diagonal"),
    pytest.param("gru", 1, (2,), "diagonal", marks=slow),
    ("lstm", 7, (), "diagonal"),
    ("lstm", 64, (2,), "full"),
    pytest.param("lstm", 64, (), "diagonal", marks=slow),
]


@pytest.mark.parametrize("kind,T,batch,jacobian", CASES)
def test_states_and_gradients_equal_the_scan_float32(kind, T, batch, jacobian):
    step, params, carry, xs = _problem(kind, T, batch, jnp.float32)
    ref, ref_grads, result, grads = _compare(step, params, carry, xs, jacobian=jacobian)
    assert bool(jnp.all(result.converged))
    assert np.asarray(result.iterations).max() <= T
    assert _rel(ref, (result.carry, result.hs)) <= 1e-5
    for g_ref, g in zip(ref_grads, grads):  # params, initial carry, float inputs
        assert _rel(g_ref, g) <= 1e-5


@pytest.mark.parametrize(
    "kind,jacobian",
    [
        ("rnn", "full"),
        pytest.param("gru", "diagonal", marks=slow),
        pytest.param("lstm", "full", marks=slow),
        ("lstm", "diagonal"),
    ],
)
def test_states_and_gradients_equal_the_scan_float64(x64, kind, jacobian):
    step, params, carry, xs = _problem(kind, 64, (2,), jnp.float64)
    ref, ref_grads, result, grads = _compare(step, params, carry, xs, jacobian=jacobian)
    assert result.hs.dtype == jnp.float64
    assert bool(jnp.all(result.converged))
    assert float(jnp.max(result.residual)) <= default_tolerance(jnp.float64) * 10
    assert _rel(ref, (result.carry, result.hs)) <= 1e-10
    for g_ref, g in zip(ref_grads, grads):
        assert _rel(g_ref, g) <= 1e-10


def test_full_newton_converges_in_few_iterations_diagonal_in_more_on_a_contracting_rnn():
    step, params, carry, xs = _problem("rnn", 64, (), jnp.float32)
    full = _newton(step, params, carry, xs, jacobian="full")
    diagonal = _newton(step, params, carry, xs, jacobian="diagonal")
    assert int(full.iterations) <= 8 < int(diagonal.iterations) <= 64


def test_token_ids_and_the_sequential_adjoint(x64):
    """The GRU in float64 (with token ids): both adjoints give the scan's gradient to 1e-10."""
    params = jaxrnn.init_gru(jax.random.PRNGKey(1), 11, H, 11, dtype=jnp.float64)
    xs = jax.random.randint(jax.random.PRNGKey(2), (20, 3), 0, 11)
    carry = jaxrnn.initial_carry(params, (3,))
    step = jaxrnn.gru_step
    loss = lambda fn: lambda p: jnp.sum(jnp.tanh(fn(p)[1]))
    ref = jax.jit(jax.grad(loss(lambda p: jaxrnn.unroll(step, p, carry, xs))))(params)
    grads = jax.jit(
        lambda p: [
            jax.grad(loss(lambda p: newton_unroll(step, p, carry, xs, adjoint=adjoint)[:2]))(p)
            for adjoint in ("parallel", "sequential")
        ]
    )(params)
    for g in grads:
        assert _rel(ref, g) <= 1e-10


def test_a_user_defined_cell_with_a_dict_carry(x64):
    """Any step works: a two-part carry of different sizes, an output of another shape, no registration."""

    def step(p, carry, x):
        a = jnp.tanh(p["A"] @ carry["a"] + p["B"] @ carry["b"] + x)
        b = 0.5 * carry["b"] + jnp.sin(p["C"] @ a)
        return {"a": a, "b": b}, jnp.concatenate([a, b]).sum(keepdims=True)

    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    p = {
        "A": 0.5 * jax.random.normal(keys[0], (2, 2), jnp.float64),
        "B": 0.5 * jax.random.normal(keys[1], (2, 3), jnp.float64),
        "C": 0.5 * jax.random.normal(keys[2], (3, 2), jnp.float64),
    }
    xs = jax.random.normal(keys[3], (30, 2), jnp.float64)
    carry = {"a": jnp.zeros(2, jnp.float64), "b": jnp.ones(3, jnp.float64)}
    ref, g_ref, result, g = _compare(step, p, carry, xs)
    diagonal = _newton(step, p, carry, xs, jacobian="diagonal")
    for result in (result, diagonal):
        assert result.hs.shape == (30, 1) and bool(result.converged)
        assert _rel(ref, (result.carry, result.hs)) <= 1e-10
    assert _rel(g_ref, g) <= 1e-10


def _chaotic_rnn(T, scale=4.0):
    params = jaxrnn.init_rnn(jax.random.PRNGKey(0), 2, 8, 1)
    params = params._replace(Whh=scaled_orthogonal(jax.random.PRNGKey(1), 8, scale, jnp.float32))
    return params, jnp.zeros(8), jax.random.normal(jax.random.PRNGKey(2), (T, 2))


def test_chaotic_rnn_undamped_newton_overflows_and_damped_converges():
    """Whh = 4 Q: products of Jacobians overflow float32 within T = 200 steps, so undamped DEER's first update is
    inf/nan and the loop stops unconverged; J / (1 + 1) keeps every iterate bounded and, a prefix per iteration,
    reaches the exact solution within T iterations."""
    T = 200
    params, carry, xs = _chaotic_rnn(T)
    undamped = _newton(jaxrnn.rnn_step, params, carry, xs, damping=0.0)
    damped = _newton(jaxrnn.rnn_step, params, carry, xs, damping=1.0)
    assert not bool(undamped.converged) and not np.isfinite(float(undamped.residual))
    assert int(undamped.iterations) <= 2  # stopped as soon as the iterate was non-finite, not after T
    assert bool(damped.converged) and int(damped.iterations) <= T
    assert float(damped.residual) <= default_tolerance(jnp.float32)
    # bounded on the way: a damped iterate cut short is finite (|h| <= 1 for tanh, updates contracted)
    short = _newton(jaxrnn.rnn_step, params, carry, xs, damping=1.0, max_iter=5)
    assert bool(jnp.all(jnp.isfinite(short.hs))) and float(jnp.max(jnp.abs(short.hs))) <= 1.0


def test_not_converged_is_flagged_and_the_solved_prefix_is_exact():
    step, params, carry, xs = _problem("lstm", 64, (2,), jnp.float32)
    result = _newton(step, params, carry, xs, jacobian="diagonal", max_iter=3)
    _, hs = jaxrnn.unroll(step, params, carry, xs)
    assert not bool(jnp.any(result.converged))
    assert np.all(np.asarray(result.iterations) == 3)
    assert float(jnp.min(result.residual)) > default_tolerance(jnp.float32)
    assert _rel(hs[:3], result.hs[:3]) <= 1e-6  # k iterations solve the first k steps


def test_warm_start_from_the_solution_takes_at_most_one_iteration():
    step, params, carry, xs = _problem("gru", 64, (3,), jnp.float32)
    first = _newton(step, params, carry, xs, jacobian="diagonal")
    again = _newton(step, params, carry, xs, jacobian="diagonal", init=first.states)
    assert int(jnp.min(first.iterations)) > 5
    assert int(jnp.max(again.iterations)) <= 1 and bool(jnp.all(again.converged))
    # a warm start from a slightly different problem (one training step later) is still cheaper than zeros
    nudged = jax.tree.map(lambda w: w * 1.01, params)
    warm = _newton(step, nudged, carry, xs, jacobian="diagonal", init=first.states)
    cold = _newton(step, nudged, carry, xs, jacobian="diagonal")
    assert int(jnp.max(warm.iterations)) < int(jnp.min(cold.iterations))


def test_solver_object_is_a_static_argument_and_jit_does_not_retrace():
    step, params, carry, xs = _problem("rnn", 16, (2,), jnp.float32)
    solver = NewtonSolver(jacobian="diagonal", damping=0.5)
    assert hash(solver) == hash(NewtonSolver(jacobian="diagonal", damping=0.5))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, carry, xs):
        return solver.unroll(step, params, carry, xs)

    first = run(params, carry, xs)
    second = run(jax.tree.map(lambda w: w * 0.9, params), carry + 0.1, xs * 2)
    ref = jaxrnn.unroll(step, jax.tree.map(lambda w: w * 0.9, params), carry + 0.1, xs * 2)
    assert _rel(ref, second) <= 1e-5 and _rel(first, second) > 1e-3


def test_linear_recurrence_matches_a_loop_both_ways():
    rng = np.random.default_rng(0)
    A, b, a = rng.normal(size=(9, 3, 3)) * 0.5, rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    forward, backward, d = [], [None] * 9, np.zeros(3)
    for t in range(9):
        d = A[t] @ d + b[t]
        forward.append(d)
    d = np.zeros(3)
    for t in reversed(range(9)):
        d = A[t] @ d + b[t]
        backward[t] = d
    assert _rel(np.array(forward), linear_recurrence(jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32))) <= 1e-5
    assert (
        _rel(
            np.array(backward),
            linear_recurrence(jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32), reverse=True),
        )
        <= 1e-5
    )
    diag = linear_recurrence(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    d = np.zeros(3)
    for t in range(9):
        d = a[t] * d + b[t]
    assert _rel(d, diag[-1]) <= 1e-5


def test_bad_options_fail_with_a_message():
    step, params, carry, xs = _problem("rnn", 4, (), jnp.float32)
    with pytest.raises(ValueError, match="jacobian"):
        newton_unroll(step, params, carry, xs, jacobian="lower")
    with pytest.raises(ValueError, match="damping"):
        NewtonSolver(damping=-1.0)
    with pytest.raises(ValueError, match="xs"):
        newton_unroll(step, params, jnp.zeros((2, H)), xs)


@pytest.mark.slow
def test_experiment_tiny_newton_training_follows_the_scan_and_warm_starts_save_iterations():
    from experiments import parallel_in_time

    results = parallel_in_time.main(parallel_in_time.PRESETS["tiny"])
    summary, curves = results["summary"], results["curves"]
    assert summary["every_step_converged"]
    # the control moved the weights by one bit: a different run, as close to the scan as Newton is here
    assert curves["scan_one_bit_loss"] != curves["scan_loss"] and summary["loss_max_rel_diff_scan_one_bit"] <= 1e-5
    assert summary["loss_max_rel_diff"] <= 1e-5 and summary["final_param_rel_diff"] <= 1e-5
    assert summary["warm_iterations_mean_over_training"] < summary["cold_iterations_mean_over_training"]


@slow
def test_variable_lengths_through_mask_step():
    """``unroll``'s ``lengths=`` is ``mask_step`` with ``xs = (xs, mask)``: Newton takes it like any step."""
    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), D, H, 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (12, 4, D))
    lengths = jnp.array([12, 5, 0, 9])
    mask, carry = jaxrnn.length_mask(lengths, 12), jaxrnn.initial_carry(params, (4,))
    scan = lambda p, c, x: jaxrnn.unroll(jaxrnn.lstm_step, p, c, x[0], lengths=lengths)
    ref, ref_grads, result, grads = _compare(
        jaxrnn.mask_step(jaxrnn.lstm_step), params, carry, (xs, mask), argnums=(0, 1), scan=scan
    )
    assert int(result.iterations[2]) == 0  # an empty sequence keeps its zero state: solved by the initial guess
    assert _rel(ref, (result.carry, result.hs)) <= 1e-5
    assert _rel(ref_grads, grads) <= 1e-5


def test_method_newton_of_sequence_loss_equals_scan_and_flags_no_convergence_with_nan(x64):
    """``method="newton"`` through the library's one loss entry point (a GRU): values and gradients equal the
    scan's; an example whose solve did not converge gets NaN carries and outputs from ``unroll``."""
    key = jax.random.PRNGKey(4)
    params = jaxrnn.init_gru(key, 6, 5, 6, dtype=jnp.float64)
    carry = jaxrnn.initial_carry(params, (3,))
    xs = jax.random.randint(key, (5, 3), 0, 6)
    grad = jax.jit(jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True), static_argnames="method")
    (l_scan, c_scan), g_scan = grad(params, carry, xs, xs)
    (l_newton, c_newton), g_newton = grad(params, carry, xs, xs, method="newton")
    assert abs(float(l_newton - l_scan)) <= 1e-10 * abs(float(l_scan))
    for a, b in zip(jax.tree.leaves((c_newton, g_newton)), jax.tree.leaves((c_scan, g_scan))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    carry_T, hs = jaxrnn.unroll(jaxrnn.gru_step, params, carry, xs, method="newton", newton=NewtonSolver(max_iter=2))
    assert bool(jnp.isnan(hs).all()) and bool(jnp.isnan(carry_T).all())
    with pytest.raises(ValueError, match="remat does not apply"):
        jaxrnn.unroll(jaxrnn.gru_step, params, carry, xs, method="newton", remat=True)


@pytest.mark.slow
def test_method_newton_of_a_stack_with_lengths_and_reverse_equals_scan(x64):
    key = jax.random.PRNGKey(4)
    params = jaxrnn.init_stack(key, 6, (5, 4), 6, cell=("gru", "lstm"), dtype=jnp.float64)
    carry = jaxrnn.initial_carry(params, (3,))
    xs = jax.random.randint(key, (5, 3), 0, 6)
    step = jaxrnn.step_for(params)
    for kw in ({}, {"lengths": jnp.array([5, 2, 0])}, {"reverse": True}):
        newton_out = jaxrnn.unroll(step, params, carry, xs, method="newton", **kw)
        for a, b in zip(jax.tree.leaves(newton_out), jax.tree.leaves(jaxrnn.unroll(step, params, carry, xs, **kw))):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
