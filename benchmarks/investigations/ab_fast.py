"""A/B timing of versions of ``jaxrnn/fast.py``: the LSTM training step of ``lstm_peers.py`` built on each version,
timed in turn, round after round, in one process (optionally beside Flax linen and PyTorch).

Command: ``python benchmarks/investigations/ab_fast.py B T H FAST.py [FAST.py ...] [--unfolded] [--flax] [--torch]
[--flatten-adam]``
A version from history: ``git show REV:jaxrnn/fast.py > /tmp/fast_old.py``. Each file is loaded as a module of
its own; the losses after one step must agree (to 2e-4) before anything is timed. Run each comparison in both
orders: the differences worth keeping are the ones that survive the swap. Printed: each version's median time,
its speed-up over version 0 as a ratio of medians, and by round (median [quartiles] of each round's ratio), and the
size of the block of temporaries XLA allocates for each call (``memory_analysis().temp_size_in_bytes``).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common, lstm_peers

import common  # noqa: E402
import lstm_peers  # noqa: E402


def load(path: Path):
    """``path`` as a module named after its file."""
    spec = importlib.util.spec_from_file_location(f"ab_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", nargs=3, type=int, metavar=("B", "T", "H"))
    p.add_argument("versions", nargs="+", type=Path, metavar="FAST.py")
    p.add_argument("--unfolded", action="store_true",
                   help="embedding then Wxh for all T (lstm_peers' 'jaxrnn fast'); default: the folded table")
    p.add_argument("--flax", action="store_true", help="also time Flax linen nn.RNN(OptimizedLSTMCell)")
    p.add_argument("--torch", action="store_true", help="also time PyTorch nn.LSTM")
    p.add_argument("--flatten-adam", action="store_true",
                   help="also time each version (and Flax) with optax.flatten(optax.adam): Adam on one flat vector")
    p.add_argument("--min-seconds", type=float, default=3.0, help="time budget per implementation")
    p.add_argument("--device", choices=sorted(common.DEVICES), default="auto", help="JAX platform (default: auto)")
    args = p.parse_args(argv)
    missing = [str(v) for v in args.versions if not v.is_file()]
    if missing or min(args.shape) < 1:
        print(f"error: {'no such file: ' + ', '.join(missing) if missing else 'B, T, H must be positive'}",
              file=sys.stderr)
        return 2
    common.select_device(args.device)
    import optax

    import jaxrnn

    (B, T, H), E, V = args.shape, 64, 100
    optimizers = {"": optax.adam(1e-3)} | ({", flatten(adam)": optax.flatten(optax.adam(1e-3))}
                                           if args.flatten_adam else {})
    params, carry, xs, ys = lstm_peers.problem(B, T, H, E, V)
    calls, losses, scratch = {}, {}, {}  # scratch: XLA's temporaries per call, one block (huge_pages.py)
    for i, path in enumerate(args.versions):
        try:
            module = load(path)
            module.fast_sequence_loss, module.make_fast_train_step
        except Exception as e:  # a broken version file: one line, not a traceback from its import
            print(f"error: cannot load {path} as a version of jaxrnn/fast.py: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 2

        def loss_fn(q, carry, xs, ys, mask=None, module=module):
            lstm = lstm_peers._lstm(q)
            if args.unfolded:
                return module.fast_sequence_loss(lstm, carry, jaxrnn.embed(q.Wemb, xs), ys, mask=mask,
                                                 reduction="mean")
            return module.fast_sequence_loss(lstm._replace(Wxh=q.Wxh @ q.Wemb), carry, xs, ys, mask=mask,
                                             reduction="mean")

        for suffix, optimizer in optimizers.items():
            opt0 = optimizer.init(params)
            compiled, _, _ = common.compile_timed(module.make_fast_train_step(optimizer, loss_fn=loss_fn),
                                                  params, opt0, carry, xs, ys)
            name = f"{i}: {path}{suffix}"
            p1 = compiled(params, opt0, carry, xs, ys)[0]
            losses[name] = compiled(p1, opt0, carry, xs, ys)[3]
            calls[name] = functools.partial(compiled, params, opt0, carry, xs, ys)
            scratch[name] = compiled.memory_analysis().temp_size_in_bytes
    first = next(iter(losses))
    try:
        for name, loss in losses.items():
            common.check_close(f"loss after one step, {name} against {first}", losses[first], loss, 2e-4)
    except AssertionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for suffix, optimizer in optimizers.items() if args.flax else ():
        variables, step, _ = lstm_peers.flax_linen_impl(params, V, E, H, optimizer)
        vopt = optimizer.init(variables)
        compiled, _, _ = common.compile_timed(step, variables, vopt, xs, ys)
        calls["flax linen" + suffix] = functools.partial(compiled, variables, vopt, xs, ys)
        scratch["flax linen" + suffix] = compiled.memory_analysis().temp_size_in_bytes
    if args.torch:
        step, _, to_ids = lstm_peers.torch_impl(params, V, E, H, 1e-3, args.device)
        calls["pytorch"] = functools.partial(step, to_ids(xs), to_ids(ys))
    timings = common.interleaved_times(calls, min_seconds=args.min_seconds)
    base = timings[first]["median_s"]
    for name, t in timings.items():
        by_round = "" if name == first else "  by round {median:.3f} [{q25:.3f}-{q75:.3f}]".format(
            **common.paired_speedups(timings, name)[first])
        memory = f", scratch {scratch[name] / 2 ** 20:.1f} MiB" if name in scratch else ""
        print(f"{name:40s} {t['median_s'] * 1e3:9.3f} ms (fastest {t['min_s'] * 1e3:9.3f})  "
              f"speed-up over 0: {base / t['median_s']:.3f}{by_round}  ({t['repeats']} calls{memory})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
