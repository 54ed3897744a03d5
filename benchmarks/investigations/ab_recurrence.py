"""A/B timing of versions of ``jaxrnn/recurrence.py``: the LSTM training step of ``benchmarks.lstm_peers`` built on each
version, timed in turn, round after round, in one process (optionally beside Flax linen and PyTorch).

Command: ``python -m benchmarks.investigations.ab_recurrence B T H RECURRENCE.py [RECURRENCE.py ...] [--unfolded]
[--flax] [--torch] [--flatten-adam]``
A version from history: ``git show REV:jaxrnn/recurrence.py > /tmp/recurrence_old.py``. Each file is loaded as a
module of its own; its ``fused_unroll(params, carry, xs)`` (or, in a version without one, its ``recurrence`` and
``recurrence_ids``) runs the LSTM layer, and the rest of the step is the library's: embedding, ``readout``, mean
cross-entropy, ``make_train_step`` with Adam. Before anything is timed, every version's loss, gradient and loss after
one step must agree with the library's scan path (``lstm_peers``' "jaxrnn scan"); a version that disagrees is
refused (exit 1). Run each comparison in both orders: the differences worth keeping are the ones that survive the
swap. Printed: each version's median time, its speed-up over version 0 as a ratio of medians, and by round (median
[quartiles] of each round's ratio), and the size of the block of temporaries XLA allocates for each call
(``memory_analysis().temp_size_in_bytes``). The versions of ``jaxrnn/fast.py`` before the 0.2 API need the library
of their time: run ``ab_fast.py`` from a worktree of that revision.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path


from benchmarks import common
from benchmarks import lstm_peers, peers
from benchmarks.investigations import paths


def load(path: Path):
    """``path`` as a module named after its file."""
    spec = importlib.util.spec_from_file_location(f"ab_version_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def version_unroll(module):
    """``unroll(params, carry, xs) -> (carry_T, hs)`` of a version of ``jaxrnn/recurrence.py``: its
    ``fused_unroll``, else its ``recurrence`` (float inputs, projected here) and ``recurrence_ids`` (token ids).
    Raises ``AttributeError`` for a module that has neither."""
    import jax.numpy as jnp

    if hasattr(module, "fused_unroll"):
        return module.fused_unroll
    recurrence, recurrence_ids = module.recurrence, module.recurrence_ids

    def unroll(params, carry, xs):
        if jnp.issubdtype(xs.dtype, jnp.integer):
            return recurrence_ids(params.Wxh, params.Whh, params.bh, carry, xs)
        return recurrence(params.Whh, params.bh, carry, xs @ params.Wxh.T)

    return unroll


def version_loss(unroll, *, unfolded: bool):
    """``lstm_peers``' fused loss (``"jaxrnn fused"`` with ``unfolded``, else ``"jaxrnn fused, folded"``) with the
    LSTM layer run by ``unroll``."""
    import jaxrnn

    def loss_fn(q, carry, xs, ys, mask=None):
        if unfolded:  # embedding, then Wxh for all T at once
            lstm, xs = q.layers[0], jaxrnn.embed(q.embedding, xs)
        else:  # one (4H, V) table looked up inside the loop
            lstm = paths.folded(q).layers[0]
        carry_T, hs = unroll(lstm, carry[0], xs)
        logits = jaxrnn.readout(lstm._replace(Why=q.Why, by=q.by), hs)
        return jaxrnn.softmax_cross_entropy(logits, ys, mask, reduction="mean"), (carry_T,)

    return loss_fn


def check_versions(values: dict, what: str, reference: str, tol: float) -> None:
    """Raise ``AssertionError`` naming the first version whose ``what`` (``values[name]``) differs from
    ``reference``'s by more than ``tol`` of its largest entry."""
    for name, value in values.items():
        if name != reference:
            common.check_close(f"{what}, {name} against {reference}", values[reference], value, tol)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", nargs=3, type=int, metavar=("B", "T", "H"))
    p.add_argument("versions", nargs="+", type=Path, metavar="RECURRENCE.py")
    p.add_argument(
        "--unfolded",
        action="store_true",
        help="embedding then Wxh for all T (lstm_peers' 'jaxrnn fused'); default: the folded table",
    )
    p.add_argument("--flax", action="store_true", help="also time Flax linen nn.RNN(OptimizedLSTMCell)")
    p.add_argument("--torch", action="store_true", help="also time PyTorch nn.LSTM")
    p.add_argument(
        "--flatten-adam",
        action="store_true",
        help="also time each version (and Flax) with optax.flatten(optax.adam): Adam on one flat vector",
    )
    p.add_argument("--min-seconds", type=float, default=3.0, help="time budget per implementation")
    p.add_argument("--device", choices=sorted(common.DEVICES), default="auto", help="JAX platform (default: auto)")
    args = p.parse_args(argv)
    missing = [str(v) for v in args.versions if not v.is_file()]
    if missing or min(args.shape) < 1:
        print(
            f"error: {'no such file: ' + ', '.join(missing) if missing else 'B, T, H must be positive'}",
            file=sys.stderr,
        )
        return 2
    common.select_device(args.device)
    import jax
    import optax

    import jaxrnn

    (B, T, H), E, V = args.shape, 64, 100
    optimizers = {"": optax.adam(1e-3)} | (
        {", flatten(adam)": optax.flatten(optax.adam(1e-3))} if args.flatten_adam else {}
    )
    params, carry, xs, ys = lstm_peers.problem(B, T, H, E, V)
    unrolls = {}
    for i, path in enumerate(args.versions):
        try:
            unrolls[f"{i}: {path}"] = version_unroll(load(path))
        except Exception as e:  # a broken version file: one line, not a traceback from its import
            print(
                f"error: cannot load {path} as a version of jaxrnn/recurrence.py: {type(e).__name__}: {e}",
                file=sys.stderr,
            )
            return 2
    calls, scratch = {}, {}  # scratch: XLA's temporaries per call, one block (huge_pages.py)
    reference = paths.SCAN  # checked against, not timed
    loss_fns = {reference: paths.losses()[reference]}
    loss_fns |= {name: version_loss(unroll, unfolded=args.unfolded) for name, unroll in unrolls.items()}
    try:  # the gradient first: a wrong version is refused before its training step is compiled
        check_versions(
            {name: jax.jit(jax.grad(lambda q, f=f: f(q, carry, xs, ys)[0]))(params) for name, f in loss_fns.items()},
            "gradient",
            reference,
            1e-4,
        )
        for suffix, optimizer in optimizers.items():
            opt0, losses = optimizer.init(params), {}
            for name, loss_fn in loss_fns.items():
                compiled, _, _ = common.compile_timed(
                    jaxrnn.make_train_step(optimizer, loss_fn=loss_fn), params, opt0, carry, xs, ys
                )
                p1 = compiled(params, opt0, carry, xs, ys)[0]
                losses[name] = compiled(p1, opt0, carry, xs, ys)[3]
                if name != reference:
                    calls[name + suffix] = functools.partial(compiled, params, opt0, carry, xs, ys)
                    scratch[name + suffix] = compiled.memory_analysis().temp_size_in_bytes
            check_versions(losses, "loss after one step" + suffix, reference, 2e-4)
    except AssertionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    first = next(iter(calls))
    for suffix, optimizer in optimizers.items() if args.flax else ():
        variables, step, _ = peers.flax_linen_impl(params, optimizer)
        vopt = optimizer.init(variables)
        compiled, _, _ = common.compile_timed(step, variables, vopt, xs, ys)
        calls["flax linen" + suffix] = functools.partial(compiled, variables, vopt, xs, ys)
        scratch["flax linen" + suffix] = compiled.memory_analysis().temp_size_in_bytes
    if args.torch:
        step, _, to_ids = peers.torch_impl(params, 1e-3, args.device)
        calls["pytorch"] = functools.partial(step, to_ids(xs), to_ids(ys))
    timings = common.interleaved_times(calls, min_seconds=args.min_seconds)
    base = timings[first]["median_s"]
    for name, t in timings.items():
        by_round = (
            ""
            if name == first
            else "  by round {median:.3f} [{q25:.3f}-{q75:.3f}]".format(**common.paired_speedups(timings, name)[first])
        )
        memory = f", scratch {scratch[name] / 2**20:.1f} MiB" if name in scratch else ""
        print(
            f"{name:40s} {t['median_s'] * 1e3:9.3f} ms (fastest {t['min_s'] * 1e3:9.3f})  "
            f"speed-up over 0: {base / t['median_s']:.3f}{by_round}  ({t['repeats']} calls{memory})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
