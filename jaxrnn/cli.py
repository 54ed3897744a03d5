"""Command line: ``jaxrnn train`` and ``jaxrnn sample`` (also ``python -m jaxrnn``).

This module parses flags and dispatches to ``jaxrnn.lm``; it prints one-line errors, naming the flag a setting
came from, and returns the exit status: 0 done, 2 bad input (a file, a flag, a checkpoint, a diverged loss) or a
file that could not be written, 3 another process of a ``--distributed`` run failed (restart them all with
``--resume``), 130 interrupted by Ctrl-C after saving a checkpoint, 143 stopped by SIGTERM or SIGUSR1 after saving
a checkpoint (a scheduler's "requeue me": a finished job would return 0).

Stop requests: SIGINT (Ctrl-C), SIGTERM (what SLURM, Kubernetes and systemd send first) and SIGUSR1 (what SLURM's
``--signal=USR1@SECONDS`` sends ahead of the time limit) all ask training to stop after the compiled call in
flight and save a checkpoint. A second Ctrl-C stops at once, without saving; a second SIGTERM or SIGUSR1 changes
nothing (a scheduler may send both), so the checkpoint being written is finished.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import NoReturn, TypeVar

from jaxrnn._checks import SettingError
from jaxrnn.data import CORPORA, DataError
from jaxrnn.distributed import HEARTBEAT_TIMEOUT
from jaxrnn.lm.config import BUDGET_DEFAULTS, DEFAULT_LEARNING_RATES, SCHEDULES, STEP_DEFAULTS, RunConfig
from jaxrnn.lm.model import CELLS, ConfigError
from jaxrnn.optim import CLIP_MODES, OPTIMIZERS
from jaxrnn.precision import COMPUTE_DTYPES

EXIT_OK, EXIT_BAD_INPUT, EXIT_PEER_LOST, EXIT_INTERRUPTED = 0, 2, 3, 130

EXIT_PREEMPTED = 143
"""Exit status after a SIGTERM or SIGUSR1 stop, checkpoint saved: 128 + SIGTERM, what the process would have
returned had it died of the signal, so a scheduler sees a terminated job to requeue, never a finished one."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

FLAGS = {"hidden_size": "--hidden"}
"""Flags not spelled ``--`` plus the setting's name with dashes."""


def flag(setting: str) -> str:
    """The command-line flag of a ``RunConfig`` setting."""
    return FLAGS.get(setting, "--" + setting.replace("_", "-"))


def _message(error: Exception) -> str:
    """A library error in the command line's words: a setting's name at the start becomes its flag."""
    text, setting = str(error), getattr(error, "setting", None)
    if setting and text.startswith(setting):
        return flag(setting) + text[len(setting) :]
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


_Number = TypeVar("_Number", int, float)


def _number(kind: Callable[[str], _Number], what: str) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    parser = _Parser(prog="jaxrnn", description="Character-level RNN/LSTM language models in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    integer, real = _number(int, "an integer"), _number(float, "a number")

    t = sub.add_parser(
        "train",
        help="train a character-level model",
        description="Train a character-level language model with truncated BPTT over parallel "
        "streams. Writes OUT/checkpoints, OUT/metrics.jsonl and OUT/curves.png.",
    )
    src = t.add_mutually_exclusive_group()
    src.add_argument(
        "--data", metavar="FILE", default=None, help="a UTF-8 text file to train on (default: none, use --corpus)"
    )
    src.add_argument("--corpus", choices=sorted(CORPORA), default=None, help=f"a built-in corpus (default: {d.corpus})")
    t.add_argument("--out", metavar="DIR", default="runs/char_lm", help="output directory (default: runs/char_lm)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in --out "
        "(default: off; without it an --out that holds checkpoints is refused)",
    )
    length = t.add_mutually_exclusive_group()
    length.add_argument("--steps", type=integer, default=None, help=f"total updates to reach (default: {d.steps})")
    length.add_argument(
        "--time-budget",
        type=real,
        default=None,
        metavar="MINUTES",
        help="train until this many minutes of wall-clock time (compilation and evaluation "
        "included) have passed, instead of a step count; the defaults then become a cosine "
        "schedule over the budget and 2 layers with dropout (default: none, use --steps)",
    )
    t.add_argument("--cell", choices=CELLS, default=None, help=f"recurrent cell (default: {d.cell})")
    t.add_argument(
        "--hidden",
        dest="hidden_size",
        type=integer,
        default=None,
        help=f"hidden size H of each layer (default: {d.hidden_size})",
    )
    t.add_argument(
        "--layers",
        type=integer,
        default=None,
        help=f"recurrent layers (default: {STEP_DEFAULTS['layers']}; {BUDGET_DEFAULTS['layers']} with --time-budget)",
    )
    t.add_argument(
        "--embed-size",
        type=integer,
        default=None,
        help="embedding size; 0 feeds one-hot characters to layer 1 (default: 0)",
    )
    t.add_argument(
        "--dropout",
        type=real,
        default=None,
        help=f"dropout rate between layers, needs --layers >= 2 (default: {STEP_DEFAULTS['dropout']:g}; "
        f"{BUDGET_DEFAULTS['dropout']:g} with --time-budget and 2 or more layers)",
    )
    t.add_argument(
        "--seq-length",
        type=integer,
        default=None,
        help=f"characters per chunk T, the BPTT length (default: {d.seq_length})",
    )
    t.add_argument("--batch-size", type=integer, default=None, help=f"parallel streams B (default: {d.batch_size})")
    t.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=None, help="optimiser; adagrad is the lecture's (default: adam)"
    )
    t.add_argument(
        "--learning-rate",
        type=real,
        default=None,
        help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LEARNING_RATES.items()) + ")",
    )
    t.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default=None,
        help="constant, or cosine decay to 0.1x over --decay-steps or the --time-budget (default: "
        f"{STEP_DEFAULTS['lr_schedule']}; {BUDGET_DEFAULTS['lr_schedule']} with --time-budget)",
    )
    t.add_argument(
        "--decay-steps",
        type=integer,
        default=None,
        help="cosine decay length in updates, for a --steps run (default: --steps)",
    )
    t.add_argument(
        "--clip", type=real, default=None, help=f"gradient clipping threshold, 0 for none (default: {d.clip:g})"
    )
    t.add_argument(
        "--clip-mode",
        choices=CLIP_MODES,
        default=None,
        help="elementwise (value) or global_norm (default: value for adagrad, else global_norm)",
    )
    t.add_argument("--seed", type=integer, default=None, help=f"PRNG seed for init and dropout (default: {d.seed})")
    t.add_argument(
        "--precision",
        choices=tuple(COMPUTE_DTYPES),
        default=None,
        help="bf16: the weight matrices multiply in bfloat16, parameters, state and loss stay float32 (faster "
        "where the processor multiplies bfloat16 natively: TPUs, recent GPUs); f32 everywhere (default: f32)",
    )
    t.add_argument(
        "--eval-every",
        type=integer,
        default=None,
        help=f"validate and checkpoint every N updates (default: {d.eval_every})",
    )
    t.add_argument(
        "--steps-per-call", type=integer, default=None, help=f"updates per compiled call (default: {d.steps_per_call})"
    )
    t.add_argument(
        "--checkpoint-every-minutes",
        type=real,
        default=None,
        metavar="M",
        help="also save a checkpoint (without evaluating) once M minutes have passed since the last one, bounding "
        "what a hard kill loses; SIGTERM and SIGUSR1 save one anyway (default: only every --eval-every updates)",
    )
    t.add_argument(
        "--keep", type=integer, default=None, help=f"keep the last N checkpoints, plus the best (default: {d.keep})"
    )
    t.add_argument(
        "--sample-length",
        type=integer,
        default=None,
        help=f"characters to sample at the end, 0 for none (default: {d.sample_length})",
    )
    t.add_argument(
        "--data-parallel",
        action="store_true",
        help="split the streams over all local devices with "
        "jax.sharding; --batch-size must be a multiple of the device count (default: one device)",
    )
    t.add_argument(
        "--distributed",
        action="store_true",
        help="one of several processes (hosts) training together "
        "with jax.distributed: the streams are split over every process's devices; the processes are "
        "found from SLURM, Open MPI or Cloud TPU, or given by the three flags below (default: off)",
    )
    t.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=None,
        help="address of process 0, which every process connects to; implies --distributed (default: from "
        "the cluster's environment)",
    )
    t.add_argument(
        "--num-processes",
        type=integer,
        default=None,
        metavar="N",
        help="how many processes in all (default: from the cluster's environment)",
    )
    t.add_argument(
        "--process-id",
        type=integer,
        default=None,
        metavar="I",
        help="this process's index, 0..N-1 (default: from the cluster's environment)",
    )
    t.add_argument(
        "--heartbeat-timeout",
        type=integer,
        default=None,
        metavar="SECONDS",
        help=f"declare a silent process dead after this long and stop the others (default: {HEARTBEAT_TIMEOUT})",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    t.add_argument("--no-compile-cache", action="store_true", help=_CACHE_HELP)

    s = sub.add_parser(
        "sample",
        help="sample text from a trained model",
        description="Sample characters from a checkpoint, printing them as they come.",
    )
    s.add_argument(
        "--out", metavar="DIR", default="runs/char_lm", help="the training output directory (default: runs/char_lm)"
    )
    s.add_argument(
        "--checkpoint", default="best", help="best (lowest validation loss), latest or a step number (default: best)"
    )
    s.add_argument("--length", type=integer, default=500, help="characters to sample (default: 500)")
    s.add_argument(
        "--temperature", type=real, default=0.8, help="softmax temperature; 0 is greedy argmax (default: 0.8)"
    )
    s.add_argument("--top-k", type=integer, default=None, help="sample only among the k likeliest (default: all)")
    s.add_argument("--prime", default="", help="text to warm the state up with, printed first (default: none)")
    s.add_argument("--seed", type=integer, default=0, help="PRNG seed (default: 0)")
    s.add_argument("--no-compile-cache", action="store_true", help=_CACHE_HELP)
    return parser


def _train_command(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    config = RunConfig(**given)
    config.resolved()  # bad settings are refused before joining other processes
    every = args.checkpoint_every_minutes
    if every is not None and not (every > 0 and every != float("inf")):
        raise ConfigError(f"--checkpoint-every-minutes must be a positive number of minutes, got {every:g}")
    distributed = args.distributed or any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)
    )
    mesh = None
    if distributed:
        from jaxrnn import distributed as dist

        dist.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            heartbeat_timeout=HEARTBEAT_TIMEOUT if args.heartbeat_timeout is None else args.heartbeat_timeout,
        )
    if args.data_parallel or distributed:
        import jax

        from jaxrnn.parallel import make_mesh

        mesh, batch = make_mesh(jax.devices()), config.resolved().batch_size
        if batch % mesh.devices.size:
            raise ConfigError(
                f"batch_size {batch} must be a multiple of the {mesh.devices.size} devices "
                f"({jax.default_backend()}, {jax.process_count()} process(es)) to split the streams "
                "over them",
                "batch_size",
            )
    from jaxrnn.distributed import is_main_process, to_host
    from jaxrnn.lm.loop import run_training

    with stop_requests() as should_stop:
        summary = run_training(
            config,
            args.out,
            resume=args.resume,
            explicit=set(given),
            progress=not args.no_progress,
            log=_say,
            mesh=mesh,
            should_stop=should_stop,
            checkpoint_every=None if every is None else 60.0 * every,
        )
    if summary["status"] in ("nan", "diverged"):
        return EXIT_BAD_INPUT
    stopped = EXIT_INTERRUPTED if summary["stop_signal"] == signal.SIGINT else EXIT_PREEMPTED
    if not is_main_process():
        return stopped if summary["status"] == "interrupted" else EXIT_OK
    out = summary["out"]
    if summary["status"] == "interrupted":
        print(
            f"{'interrupted' if stopped == EXIT_INTERRUPTED else signal.Signals(summary['stop_signal']).name} "
            f"at step {summary['step']}: saved checkpoint {summary['saved_step']} in {out}/checkpoints; "
            f"continue with: jaxrnn train --out {out} --resume",
            file=sys.stderr,
        )
        return stopped
    print(
        f"step {summary['step']}: validation {summary['val_loss']:.4f} nats/char ({summary['val_bpc']:.4f} bits), "
        f"test {summary['test_loss']:.4f} nats/char ({summary['test_bpc']:.4f} bits); "
        f"{summary['train_seconds']:.0f} s of training; output in {out}",
        file=sys.stderr,
    )
    if config.sample_length:
        print("--- sample (temperature 0.8) ---", file=sys.stderr)
        from jaxrnn.lm.generate import generate_text

        _stream(
            generate_text(
                to_host(summary["params"]),
                summary["vocab"],
                length=config.sample_length,
                temperature=0.8,
                precision=summary["precision"],
            )
        )
    return EXIT_OK


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], int]]:
    """``STOP_SIGNALS`` as the ``should_stop`` of ``run_training``: it returns 0, or the number of the first stop
    signal received (see the module docstring). Handlers can be installed only from the main thread; elsewhere
    nothing is requested. The previous handlers are restored on exit."""
    received: list[int] = []

    def request(signum: int, frame: FrameType | None) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not received:
            received.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield lambda: received[0] if received else 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stream(pieces: Iterable[str]) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _sample_command(args: argparse.Namespace) -> int:
    from jaxrnn.lm.generate import generate_text, load_model

    params, vocab, meta = load_model(args.out, args.checkpoint, log=_say)
    loss = meta.get("val_loss")
    print(
        f"sampling from the checkpoint of step {meta['step']} "
        + (
            "(not evaluated: saved on a stop or on the clock)" if loss is None else f"(validation {loss:.4f} nats/char)"
        ),
        file=sys.stderr,
    )
    pieces = generate_text(
        params,
        vocab,
        length=args.length,
        prime=args.prime,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        precision=meta.get("config", {}).get("precision", "f32"),
    )
    first = next(pieces, "")  # fail on bad priming text before printing anything
    sys.stdout.write(args.prime)
    _stream(itertools.chain([first], pieces))
    return EXIT_OK


_CACHE_HELP = (
    "do not keep compiled programs in JAXRNN_CACHE_DIR, as JAXRNN_NO_COMPILE_CACHE=1 does (default: kept, "
    "so that a second run of the same model skips compilation; JAXRNN_CACHE_DIR defaults to "
    "~/.cache/jaxrnn)"
)


def compile_cache_dir() -> str:
    """Where the command line keeps compiled programs: ``$JAXRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxrnn``,
    else ``~/.cache/jaxrnn``."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxrnn")
    return os.environ.get("JAXRNN_CACHE_DIR") or default


def _use_compile_cache() -> None:
    """JAX's persistent compilation cache for this process (a command line's choice, never the library's); a
    directory that cannot be written turns it off with one line instead of a warning per compiled program."""
    import jax

    directory = compile_cache_dir()
    try:
        os.makedirs(directory, exist_ok=True)
        writable = os.access(directory, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        print(f"jaxrnn: compilation cache off: cannot write {directory} (set JAXRNN_CACHE_DIR)", file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the sampler compiles in well under 1 s


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxrnn`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not (args.no_compile_cache or os.environ.get("JAXRNN_NO_COMPILE_CACHE")):
        _use_compile_cache()
    try:
        return _train_command(args) if args.command == "train" else _sample_command(args)
    except (DataError, SettingError) as e:
        print(f"jaxrnn {args.command}: error: {_message(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"jaxrnn {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `jaxrnn sample | head`
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - a collective that fails because another process died
        _exit_if_a_peer_failed(e)
        raise


def console() -> NoReturn:
    """The ``jaxrnn`` console script and ``python -m jaxrnn``: ``main()``, then exit. After a checkpoint failed to
    be written or read, orbax's abandoned threads and coroutines would report at interpreter exit (pages of
    "Exception ignored in"); the process then leaves with ``os._exit``, output flushed."""
    status = main()
    from jaxrnn.checkpoint import orbax_failed

    if orbax_failed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _exit_if_a_peer_failed(error: Exception) -> None:
    """In a run of several processes, a runtime error from JAX means that a collective lost another process."""
    import jax

    if isinstance(error, jax.errors.JaxRuntimeError) and jax.process_count() > 1:
        _exit_lost(error)


def _exit_lost(*status: object) -> NoReturn:
    """Stop this process because a collective lost another process: one line on stderr, exit status
    ``EXIT_PEER_LOST``, skipping ``jax.distributed``'s shutdown (which would wait for the lost process and then
    abort with a page of logs)."""
    import jax

    detail = " ".join(str(s).strip().splitlines()[0] for s in status if str(s).strip())[:200]
    print(
        f"jaxrnn: error: process {jax.process_index()} lost contact with the other processes ({detail}); "
        "the checkpoints are whole: restart every process with --resume",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(EXIT_PEER_LOST)


if __name__ == "__main__":
    sys.exit(main())
