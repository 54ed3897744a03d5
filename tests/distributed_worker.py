"""One process of a multi-process data-parallel run of the core training step, for ``test_distributed.py``.

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT DEVICES_PER_PROCESS

Prints the losses of 6 updates of an LSTM (global batch 8 split over every process's devices) as JSON on the
last line of stdout (process 0 only).
"""

import json
import os
import sys

process_id, num_processes, port, devices = map(int, sys.argv[1:5])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"

import jax  # noqa: E402

if num_processes > 1:
    from jaxrnn import distributed

    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id, heartbeat_timeout=20)

import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxrnn  # noqa: E402
from jaxrnn import parallel  # noqa: E402

T, B, D, H, V = 12, 8, 5, 16, 7
mesh = parallel.make_mesh(jax.devices())
params = jaxrnn.init_lstm(jax.random.PRNGKey(0), D, H, V)
optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
step = jax.jit(jaxrnn.make_train_step(optimizer, reduction="mean"))
rng = np.random.default_rng(0)  # every process draws the same global batches and keeps its own slice
opt_state, carry = optimizer.init(params), jaxrnn.initial_carry(params, (B,))
losses = []
for _ in range(6):
    xs = rng.normal(size=(T, B, D)).astype(np.float32)
    ys = rng.integers(0, V, (T, B))
    args = parallel.shard_train_inputs(mesh, params, opt_state, carry, xs, ys)
    params, opt_state, carry, loss = step(*args[:5])
    losses.append(float(np.asarray(loss.addressable_data(0))))
if jax.process_index() == 0:
    print(json.dumps({"losses": losses, "devices": jax.device_count(), "processes": jax.process_count()}))
