"""Mistakes that jaxrnn's annotations let a type checker catch before anything runs.

Each line marked ``# expect-error`` must be reported by mypy and by pyright, and no other line may be
(``tests/test_typecheck.py``). This file is only type-checked, never run.
"""

from __future__ import annotations

import jax

import jaxrnn
from jaxrnn.newton import NewtonSolver

key = jax.random.PRNGKey(0)
params = jaxrnn.init_lstm(key, 5, 8, 5)
carry = jaxrnn.initial_carry(params, (2,))
xs = jax.random.randint(key, (4, 2), 0, 5)
optimizer = jaxrnn.lecture_optimizer(0.1)

carry_T, hs = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, method="scann")  # expect-error
train_step = jaxrnn.make_train_step(optimizer, method="scann")  # expect-error
loss, _ = jaxrnn.sequence_loss(params, carry, xs, xs, reduction="avg")  # expect-error
jaxrnn.lstm_step(params, "zeros", xs[0])  # expect-error
jaxrnn.lstm_step(params, 0, xs[0])  # expect-error
seeded = jaxrnn.init_lstm(42, 5, 8, 5)  # expect-error
solver = NewtonSolver(jacobian="diag")  # expect-error
adam = jaxrnn.make_optimizer("adamw", 1e-3)  # expect-error
