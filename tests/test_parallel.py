"""Data parallelism: on 4 (fake CPU) devices, the same seed and global batch give the same loss trajectory
and parameters as on one device (in float64, to rounding). Runs in a subprocess because the device count is
fixed at JAX start-up."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from jaxrnn import parallel

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    import jaxrnn
    from jaxrnn import parallel

    assert jax.device_count() == 4, jax.devices()
    jax.config.update("jax_enable_x64", True)  # this process only: float64 leaves summation order as the one difference
    V, H, T, B, STEPS = 11, 16, 8, 8, 6
    opt = jaxrnn.lecture_optimizer(0.1)
    train_step = jaxrnn.make_train_step(opt)  # the same jitted step in both runs
    key = jax.random.key(0)
    # one batch seen again and again, so the loss must fall: a trajectory worth comparing
    text = jnp.broadcast_to(jax.random.randint(jax.random.key(1), (T + 1, B), 0, V), (STEPS, T + 1, B))

    def run(mesh):
        params = jaxrnn.init_lstm(key, V, H, V, dtype=jnp.float64)
        opt_state, carry = opt.init(params), jaxrnn.initial_carry(params, (B,))
        losses = []
        for s in range(STEPS):
            xs, targets = text[s, :-1], text[s, 1:]
            args = (params, opt_state, carry, xs, targets)
            if mesh is not None:
                args = parallel.shard_train_inputs(mesh, *args)[:5]
            params, opt_state, carry, loss = train_step(*args)
            losses.append(float(loss))
        return losses, params, carry

    def rel(a, b):  # largest |a - b| over the largest |a|, leaf by leaf
        return max(float(jnp.abs(x - y).max() / jnp.abs(x).max()) for x, y in zip(jax.tree.leaves(a),
                                                                               jax.tree.leaves(b)))

    one, p1, c1 = run(None)
    mesh = parallel.make_mesh()
    four, p4, c4 = run(mesh)
    xs_sharded = parallel.shard_batch(mesh, text[0], batch_axis=1)
    try:
        parallel.shard_batch(mesh, text[0, :, :6], batch_axis=1)
        uneven = "accepted"
    except ValueError as e:
        uneven = str(e)
    print(json.dumps({
        "one": one, "four": four,
        "uneven": uneven,
        "shards": len(xs_sharded.addressable_shards),
        "shard_shape": list(xs_sharded.addressable_shards[0].data.shape),
        "loss_devices": len(p4.Whh.sharding.device_set),
        "param_diff": rel(p1, p4), "carry_diff": rel(c1, c4),
    }))
""")


def test_four_devices_follow_the_one_device_loss_trajectory():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["shards"] == 4 and r["shard_shape"] == [9, 2]  # the batch of 8 is really split 4 ways
    assert r["loss_devices"] == 4  # parameters come back replicated on all 4
    assert r["one"][-1] < 0.9 * r["one"][0]  # it trains
    assert "multiple of 4" in r["uneven"]
    for a, b in zip(r["one"], r["four"]):
        assert abs(a - b) <= 1e-12 * abs(a), (r["one"], r["four"])
    # Adagrad divides by sqrt(mem), which is small early on, so summation-order differences in the gradient
    # (~1e-16 in float64) grow by orders of magnitude in the parameters after a few steps
    assert r["param_diff"] <= 1e-12 and r["carry_diff"] <= 1e-12


def test_uneven_batch_is_one_clear_error():
    mesh = parallel.make_mesh(jax.local_devices()[:1])
    assert parallel.shard_batch(mesh, jnp.zeros((3, 5)), batch_axis=1).shape == (3, 5)  # 1 device: anything
    with pytest.raises(ValueError, match="no batch axis 2"):
        parallel.shard_batch(mesh, jnp.zeros((3, 5)), batch_axis=2)
    with pytest.raises(ValueError, match="no devices"):
        parallel.make_mesh([])


CLI_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from jaxrnn.cli import main
    from jaxrnn.metrics import read_metrics

    assert jax.device_count() == 4, jax.devices()
    text_file, out = sys.argv[1], sys.argv[2]
    tiny = ["--data", text_file, "--hidden", "8", "--batch-size", "4", "--seq-length", "4", "--steps", "6",
            "--steps-per-call", "2", "--eval-every", "3", "--no-progress", "--sample-length", "0"]
    assert main(["train", "--out", out + "/one", *tiny]) == 0
    assert main(["train", "--out", out + "/four", "--data-parallel", *tiny]) == 0
    odd_batch = ["6" if flag == "--batch-size" else a for flag, a in zip([""] + tiny, tiny)]
    rc_bad = main(["train", "--out", out + "/bad", "--data-parallel", *odd_batch])
    print(json.dumps({"one": read_metrics(out + "/one/metrics.jsonl"),
                      "four": read_metrics(out + "/four/metrics.jsonl"), "rc_bad": rc_bad}))
""")


@pytest.mark.slow
def test_cli_data_parallel_matches_one_device(tmp_path):
    """``jaxrnn train --data-parallel`` on 4 devices logs the losses of the 1-device run (float32 tolerance);
    a batch that does not split over the devices is refused with exit status 2."""
    text_file = tmp_path / "text.txt"
    text_file.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, str(text_file), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc_bad"] == 2 and "multiple of the 4 devices" in proc.stderr
    one, four = result["one"], result["four"]
    assert [r["step"] for r in one] == [r["step"] for r in four] and len(one) >= 3
    for a, b in zip(one, four):
        for key in ("train_loss", "val_loss"):
            if key in a:
                assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (key, a, b)
