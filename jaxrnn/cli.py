"""Command line: ``jaxrnn train`` and ``jaxrnn sample`` (also ``python -m jaxrnn``), and the functions behind them.

``run_training(config, out)`` and ``generate_text(out, ...)`` are the importable API; ``main(argv)`` parses flags,
prints one-line errors and returns the exit status: 0 done, 2 bad input (a file, a flag, a checkpoint, a NaN
loss), 130 interrupted by Ctrl-C after saving a checkpoint.

An output directory holds ``checkpoints/<step>/`` (see ``jaxrnn.checkpoint``), ``metrics.jsonl`` and
``curves.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from jaxrnn.data import DEFAULT_CORPUS, CORPORA, DataError, Vocabulary, load_corpus, load_text, split_ids
from jaxrnn.lm import CELLS, ConfigError, ModelConfig
from jaxrnn.optim import CLIP_MODES, OPTIMIZERS

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
SCHEDULES = ("constant", "cosine")
DEFAULT_LEARNING_RATES = {"adagrad": 0.1, "adam": 2e-3, "rmsprop": 2e-3, "sgd": 1.0}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run. ``None`` means "the default for the other choices": the optimiser is
    Adam for both cells (the lecture's clipped Adagrad, ``--optimizer adagrad``, was chaotic for the batched
    vanilla RNN: ``experiments/char_lm_quality.py``); the learning rate is
    ``DEFAULT_LEARNING_RATES[optimizer]``; clipping is elementwise for Adagrad (the lecture's) and by global
    norm otherwise; a cosine schedule decays over ``steps``."""

    corpus: str = DEFAULT_CORPUS
    data: str | None = None
    cell: str = "lstm"
    hidden_size: int = 256
    layers: int = 1
    embed_size: int = 0
    dropout: float = 0.0
    seq_length: int = 64
    batch_size: int = 32
    optimizer: str | None = None
    learning_rate: float | None = None
    lr_schedule: str = "constant"
    decay_steps: int | None = None
    clip: float = 5.0
    clip_mode: str | None = None
    seed: int = 0
    steps: int = 2000
    eval_every: int = 100
    steps_per_call: int = 10
    keep: int = 3
    sample_length: int = 300

    def resolved(self) -> "RunConfig":
        """The same run with every ``None`` filled in and every value checked (``ConfigError`` names the flag)."""
        for name in ("hidden_size", "layers", "seq_length", "batch_size", "steps", "eval_every",
                     "steps_per_call", "keep"):
            _positive_int(name, getattr(self, name))
        for name in ("embed_size", "sample_length", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{_flag(name)} must be a non-negative integer, got {value!r}")
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        optimizer = self.optimizer or "adam"
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.lr_schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        clip_mode = self.clip_mode or ("value" if optimizer == "adagrad" else "global_norm")
        if clip_mode not in CLIP_MODES:
            raise ConfigError(f"unknown clip mode {clip_mode!r}; choose one of: {', '.join(CLIP_MODES)}")
        learning_rate = DEFAULT_LEARNING_RATES[optimizer] if self.learning_rate is None else self.learning_rate
        if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
            raise ConfigError(f"--learning-rate must be a positive number, got {learning_rate!r}")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise ConfigError(f"--clip must be >= 0 (0: no clipping), got {self.clip!r}")
        decay_steps = self.steps if self.decay_steps is None else _positive_int("decay_steps", self.decay_steps)
        if self.data is None and self.corpus not in CORPORA:
            raise DataError(f"unknown corpus {self.corpus!r}; choose one of: {', '.join(sorted(CORPORA))}")
        out = dataclasses.replace(self, optimizer=optimizer, clip_mode=clip_mode, learning_rate=float(learning_rate),
                                  decay_steps=decay_steps)
        out.model(1)  # checks cell, dropout and sizes
        return out

    def model(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size, cell=self.cell, hidden_size=self.hidden_size, layers=self.layers,
                           embed_size=self.embed_size, dropout=self.dropout)

    def make_optimizer(self):
        import optax

        from jaxrnn.optim import make_optimizer

        lr = self.learning_rate
        if self.lr_schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.learning_rate, self.decay_steps, alpha=0.1)
        return make_optimizer(self.optimizer, lr, clip=self.clip or None, clip_mode=self.clip_mode)


RESUME_MAY_CHANGE = ("corpus", "data", "steps", "eval_every", "steps_per_call", "keep", "sample_length")
"""Settings a resumed run may change; all others (model shape, batching, optimiser, seed) must match."""


def _flag(name: str) -> str:
    return {"hidden_size": "--hidden", "batch_size": "--batch-size", "seq_length": "--seq-length"}.get(
        name, "--" + name.replace("_", "-"))


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{_flag(name)} must be a positive integer, got {value!r}")
    return value


def load_training_text(config: RunConfig) -> tuple[str, str]:
    """The text and a description of where it came from (stored in checkpoints)."""
    if config.data is not None:
        return load_text(config.data), os.path.abspath(config.data)
    return load_corpus(config.corpus), f"corpus:{config.corpus}"


@dataclass
class _Interrupt:
    """Ctrl-C while training: the first press asks the loop to stop after the current call and save; a second
    press stops at once (without saving)."""

    requested: bool = False

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _checkpoint_dir(out: str) -> str:
    return os.path.join(out, "checkpoints")


def _resume_config(config: RunConfig, explicit: set[str], meta: dict) -> RunConfig:
    saved = meta["config"]
    for name in explicit - set(RESUME_MAY_CHANGE):
        value = getattr(config, name)
        if name in saved and value is not None and value != saved[name]:
            raise ConfigError(f"cannot resume: {_flag(name)} {value} differs from the checkpoint's {saved[name]}; "
                              "a resumed run keeps the model shape, batching, optimiser and seed")
    changes = {name: getattr(config, name) for name in RESUME_MAY_CHANGE if name in explicit}
    if "data" in changes and "corpus" not in changes:
        changes["corpus"] = DEFAULT_CORPUS
    if "corpus" in changes and "data" not in changes:
        changes["data"] = None
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return dataclasses.replace(RunConfig(**{k: v for k, v in saved.items() if k in fields}), **changes).resolved()


def run_training(config: RunConfig, out: str, *, resume: bool = False, explicit: set[str] | None = None,
                 progress: bool = True, log=None, mesh=None, max_seconds: float | None = None) -> dict:
    """Train (or continue training) the character model and write checkpoints, metrics and curves to ``out``.

    Args:
      config: the settings; on ``resume`` the checkpoint's settings are used except ``RESUME_MAY_CHANGE``, and
        any name in ``explicit`` (the flags a user typed) that contradicts the checkpoint is an error.
      mesh: optional ``jax.sharding.Mesh`` with a ``"batch"`` axis; batches and state pass through
        ``jaxrnn.lm.place_batch`` / ``place_state`` with it (data parallelism).
      log: ``log(text)`` for messages (default: stderr); max_seconds: stop after this much training time.
    Returns: a summary dict (``status`` is ``"done"``, ``"interrupted"`` or ``"nan"``; losses in nats/char).
    Raises: ``DataError`` / ``ConfigError`` / ``CheckpointError`` for bad input, before any file is changed.
    """
    import jax

    from jaxrnn.checkpoint import CheckpointStore
    from jaxrnn.lm import evaluate, init_train_state, make_train_chunks, place_batch, place_state
    from jaxrnn.metrics import append_metrics, plot_curves, truncate_after
    from jaxrnn.streams import Streams, evaluation_streams

    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    explicit = set(explicit or ())
    config = config.resolved()
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"--out {out} exists and is not a directory")
    if not resume:
        text, source = load_training_text(config)  # bad data is refused before anything is written
    store = CheckpointStore(_checkpoint_dir(out), keep_last=config.keep)
    latest = store.latest_step()
    meta = None
    if resume:
        if latest is None:
            raise DataError(f"nothing to resume: no checkpoint in {store.directory}")
        meta = store.read_meta(latest)
        config = _resume_config(config, explicit, meta)
        store.close()
        store = CheckpointStore(_checkpoint_dir(out), keep_last=config.keep)
        text, source = load_training_text(config)
        if "".join(Vocabulary.from_text(text).chars) != meta["vocabulary"]:
            raise DataError(f"cannot resume: the vocabulary of {source} ({len(set(text))} characters) differs from "
                            f"the checkpoint's ({len(meta['vocabulary'])} characters)")
    elif latest is not None:
        raise DataError(f"{store.directory} already holds checkpoints (latest step {latest}); pass --resume to "
                        "continue, or choose another --out")
    vocab = Vocabulary.from_text(text)

    model_config = config.model(vocab.size)
    train_ids, val_ids, test_ids = split_ids(vocab.encode(text))
    B, T, K = config.batch_size, config.seq_length, config.steps_per_call
    train = Streams.from_ids(train_ids, B, T, what="the training text (90% of the file)")
    val = evaluation_streams(val_ids, B, T, what="the validation text (5% of the file)")
    test = evaluation_streams(test_ids, B, T, what="the test text (5% of the file)")
    optimizer = config.make_optimizer()
    state = init_train_state(jax.random.PRNGKey(config.seed), model_config, optimizer, B)
    if meta is not None:
        state = store.restore(latest, state)
    state = place_state(state, mesh)
    val_xs, val_ys = place_batch(val.epoch(), mesh)
    train_chunks = make_train_chunks(optimizer, dropout=model_config.dropout)
    metrics_path = os.path.join(out, "metrics.jsonl")
    step = int(state.step)
    train_seconds = float(meta.get("train_seconds", 0.0)) if resume else 0.0
    if resume:
        truncate_after(metrics_path, step)
    elif os.path.exists(metrics_path):  # a run without checkpoints left it; keep it aside, never overwrite
        os.replace(metrics_path, metrics_path + ".old")
    saved_step = latest if resume else None
    run_meta = {"vocabulary": "".join(vocab.chars), "data": source, "config": dataclasses.asdict(config)}

    def save(state, val_loss):
        nonlocal saved_step
        store.save(int(state.step), state, {**run_meta, "train_seconds": train_seconds}, val_loss=val_loss)
        saved_step = int(state.step)

    interrupt = _Interrupt()
    previous_handler = signal.signal(signal.SIGINT, interrupt) if _main_thread() else None
    status, val_loss, pending = "done", None, []
    log(f"training a {config.layers}-layer {config.cell.upper()} (hidden {config.hidden_size}) on {source}: "
        f"{len(train_ids)} training characters, vocabulary {vocab.size}, {B} streams x {T} characters, "
        f"{train.chunks_per_epoch} chunks per epoch; step {step} of {config.steps}")
    bar = _progress_bar(progress, config.steps, step)
    try:
        while step < config.steps and not interrupt.requested:
            if max_seconds is not None and train_seconds >= max_seconds:
                break
            next_eval = (step // config.eval_every + 1) * config.eval_every
            n = min(K, config.steps - step, next_eval - step)
            xs, ys, reset = train.chunks(step, K)
            batch = place_batch((xs, ys, reset, np.arange(K) < n), mesh)
            t0 = time.perf_counter()
            new_state, losses = train_chunks(state, *batch)
            losses = np.asarray(losses)[:n]
            dt = time.perf_counter() - t0
            if not np.all(np.isfinite(losses)):
                bad = step + int(np.argmin(np.isfinite(losses))) + 1
                if saved_step is None or saved_step < step:
                    save(state, float(evaluate(state.params, val_xs, val_ys)))
                status = "nan"
                log(f"loss became {losses[~np.isfinite(losses)][0]} at step {bad}; stopped. Last good checkpoint: "
                    f"{store.path(saved_step)} (try a smaller --learning-rate or --clip)")
                break
            state, step, train_seconds = new_state, step + n, train_seconds + dt
            pending.extend(losses.tolist())
            record = {"step": step, "train_loss": float(np.mean(losses)), "chars_per_sec": n * B * T / dt,
                      "train_seconds": train_seconds}
            if step % config.eval_every == 0 or step == config.steps:
                val_loss = float(evaluate(state.params, val_xs, val_ys))
                record.update(val_loss=val_loss, val_bpc=val_loss / math.log(2))
                save(state, val_loss)
            append_metrics(metrics_path, record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                                val="-" if val_loss is None else f"{val_loss:.3f}",
                                chars_s=f"{record['chars_per_sec']:.0f}", refresh=False)
                bar.update(n)
        if status == "done" and (saved_step != step or val_loss is None):
            val_loss = float(evaluate(state.params, val_xs, val_ys))
            if saved_step != step:
                save(state, val_loss)
                append_metrics(metrics_path, {"step": step, "val_loss": val_loss,
                                              "val_bpc": val_loss / math.log(2), "train_seconds": train_seconds})
        if interrupt.requested:
            status = "interrupted"
    finally:
        if bar is not None:
            bar.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        store.close()
    records = _safe_plot(plot_curves, metrics_path, os.path.join(out, "curves.png"), source)
    summary = {"status": status, "step": int(state.step), "saved_step": saved_step, "out": out,
               "train_seconds": train_seconds, "vocab_size": vocab.size,
               "val_loss": None if status == "nan" else val_loss, "records": records}
    if status == "done":
        test_loss = float(evaluate(state.params, *place_batch(test.epoch(), mesh)))
        summary.update(test_loss=test_loss, test_bpc=test_loss / math.log(2))
        append_metrics(metrics_path, {"step": step, "test_loss": test_loss, "test_bpc": test_loss / math.log(2)})
    if val_loss is not None:
        summary["val_bpc"] = val_loss / math.log(2)
    summary["params"], summary["vocab"] = state.params, vocab
    return summary


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)


def _safe_plot(plot, metrics_path: str, png: str, title: str) -> list[dict]:
    from jaxrnn.metrics import read_metrics

    records = read_metrics(metrics_path)
    try:
        plot(records, png, title=title)
    except ImportError:  # matplotlib is optional ("train" extra); the JSONL has the numbers
        pass
    return records


def load_model(out: str, which: str = "latest"):
    """The parameters, vocabulary and metadata of checkpoint ``which`` (``latest``, ``best`` or a step) in ``out``."""
    import jax

    from jaxrnn.checkpoint import CheckpointStore
    from jaxrnn.lm import init_train_state

    store = CheckpointStore(_checkpoint_dir(out), create=False)
    try:
        steps = store.steps()
        if not steps:
            raise DataError(f"no checkpoint in {store.directory}; train first: jaxrnn train --out {out}")
        if which == "latest":
            step = steps[-1]
        elif which == "best":
            step = store.best_step() or steps[-1]
        else:
            try:
                step = int(which)
            except ValueError:
                raise DataError(f"--checkpoint must be latest, best or a step number, got {which!r}") from None
            if step not in steps:
                raise DataError(f"no checkpoint for step {step}; available: {', '.join(map(str, steps))}")
        meta = store.read_meta(step)
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        config = RunConfig(**{k: v for k, v in meta["config"].items() if k in fields}).resolved()
        vocab = Vocabulary(tuple(meta["vocabulary"]))
        template = jax.eval_shape(lambda: init_train_state(jax.random.PRNGKey(0), config.model(vocab.size),
                                                           config.make_optimizer(), config.batch_size))
        state = store.restore(step, template)
    finally:
        store.close()
    return state.params, vocab, meta


def generate_text(params, vocab: Vocabulary, *, length: int, prime: str = "", temperature: float = 1.0,
                  top_k: int | None = None, seed: int = 0, block: int = 16):
    """Yield the sampled text in pieces of ``block`` characters (the priming text is not repeated).

    The priming text warms the state up (``jaxrnn.lm.warm_up``); with none, sampling starts after a newline
    (or the first character of the vocabulary). Piece ``b`` uses key ``fold_in(PRNGKey(seed), b)``, so the same
    seed gives the same text, and a longer sample starts with the shorter one.
    """
    import jax

    from jaxrnn.lm import warm_up
    from jaxrnn.sampling import sample

    if not isinstance(length, int) or length < 0:
        raise DataError(f"--length must be a non-negative integer, got {length!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise DataError(f"--temperature must be >= 0 (0: always the most likely character), got {temperature!r}")
    if top_k is not None and not 1 <= top_k <= vocab.size:
        raise DataError(f"--top-k must be between 1 and the vocabulary size {vocab.size}, got {top_k}")
    if not prime:
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
    carry, x = warm_up(params, vocab.encode(prime))  # DataError names characters outside the vocabulary
    key = jax.random.PRNGKey(seed)
    done = 0
    for b in range(-(-length // block)):
        ids, carry = sample(jax.random.fold_in(key, b), params, carry, x, block, temperature=temperature,
                            top_k=top_k)
        x = ids[-1]
        piece = vocab.decode(np.asarray(ids)[: length - done])
        done += len(piece)
        yield piece


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _number(kind, what):
    def parse(text):
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

    t = sub.add_parser("train", help="train a character-level model",
                       description="Train a character-level language model with truncated BPTT over parallel "
                                   "streams. Writes OUT/checkpoints, OUT/metrics.jsonl and OUT/curves.png.")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE", default=None, help="a UTF-8 text file to train on (default: none, "
                     "use --corpus)")
    src.add_argument("--corpus", choices=sorted(CORPORA), default=None,
                     help=f"a built-in corpus (default: {d.corpus})")
    t.add_argument("--out", metavar="DIR", default="runs/char_lm", help="output directory (default: runs/char_lm)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out "
                   "(default: off; without it an --out that holds checkpoints is refused)")
    t.add_argument("--steps", type=integer, default=None, help=f"total updates to reach (default: {d.steps})")
    t.add_argument("--cell", choices=CELLS, default=None, help=f"recurrent cell (default: {d.cell})")
    t.add_argument("--hidden", dest="hidden_size", type=integer, default=None,
                   help=f"hidden size H of each layer (default: {d.hidden_size})")
    t.add_argument("--layers", type=integer, default=None, help=f"recurrent layers (default: {d.layers})")
    t.add_argument("--embed-size", type=integer, default=None,
                   help="embedding size; 0 feeds one-hot characters to layer 1 (default: 0)")
    t.add_argument("--dropout", type=real, default=None,
                   help=f"dropout rate between layers, needs --layers >= 2 (default: {d.dropout})")
    t.add_argument("--seq-length", type=integer, default=None,
                   help=f"characters per chunk T, the BPTT length (default: {d.seq_length})")
    t.add_argument("--batch-size", type=integer, default=None,
                   help=f"parallel streams B (default: {d.batch_size})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="optimiser; adagrad is the lecture's (default: adam)")
    t.add_argument("--learning-rate", type=real, default=None,
                   help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in
                                                              DEFAULT_LEARNING_RATES.items()) + ")")
    t.add_argument("--lr-schedule", choices=SCHEDULES, default=None,
                   help=f"constant, or cosine decay to 0.1x over --decay-steps (default: {d.lr_schedule})")
    t.add_argument("--decay-steps", type=integer, default=None, help="cosine decay length (default: --steps)")
    t.add_argument("--clip", type=real, default=None, help=f"gradient clipping threshold, 0 for none "
                   f"(default: {d.clip:g})")
    t.add_argument("--clip-mode", choices=CLIP_MODES, default=None,
                   help="elementwise (value) or global_norm (default: value for adagrad, else global_norm)")
    t.add_argument("--seed", type=integer, default=None, help=f"PRNG seed for init and dropout (default: {d.seed})")
    t.add_argument("--eval-every", type=integer, default=None,
                   help=f"validate and checkpoint every N updates (default: {d.eval_every})")
    t.add_argument("--steps-per-call", type=integer, default=None,
                   help=f"updates per compiled call (default: {d.steps_per_call})")
    t.add_argument("--keep", type=integer, default=None,
                   help=f"keep the last N checkpoints, plus the best (default: {d.keep})")
    t.add_argument("--sample-length", type=integer, default=None,
                   help=f"characters to sample at the end, 0 for none (default: {d.sample_length})")
    t.add_argument("--data-parallel", action="store_true", help="split the streams over all local devices with "
                   "jax.sharding; --batch-size must be a multiple of the device count (default: one device)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")

    s = sub.add_parser("sample", help="sample text from a trained model",
                       description="Sample characters from a checkpoint, printing them as they come.")
    s.add_argument("--out", metavar="DIR", default="runs/char_lm", help="the training output directory "
                   "(default: runs/char_lm)")
    s.add_argument("--checkpoint", default="latest", help="latest, best or a step number (default: latest)")
    s.add_argument("--length", type=integer, default=500, help="characters to sample (default: 500)")
    s.add_argument("--temperature", type=real, default=0.8,
                   help="softmax temperature; 0 is greedy argmax (default: 0.8)")
    s.add_argument("--top-k", type=integer, default=None, help="sample only among the k likeliest (default: all)")
    s.add_argument("--prime", default="", help="text to warm the state up with, printed first (default: none)")
    s.add_argument("--seed", type=integer, default=0, help="PRNG seed (default: 0)")
    return parser


def _train_command(args) -> int:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    config = RunConfig(**given)
    mesh = None
    if args.data_parallel:
        import jax

        from jaxrnn.parallel import make_mesh

        mesh, batch = make_mesh(), config.resolved().batch_size
        if batch % mesh.devices.size:
            raise ConfigError(f"--batch-size {batch} must be a multiple of the {mesh.devices.size} devices "
                              f"({jax.default_backend()}) for --data-parallel")
    summary = run_training(config, args.out, resume=args.resume, explicit=set(given),
                           progress=not args.no_progress, mesh=mesh)
    if summary["status"] == "nan":
        return EXIT_BAD_INPUT
    out = summary["out"]
    if summary["status"] == "interrupted":
        print(f"interrupted at step {summary['step']}; checkpoint saved in {out}/checkpoints; continue with: "
              f"jaxrnn train --out {out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"step {summary['step']}: validation {summary['val_loss']:.4f} nats/char ({summary['val_bpc']:.4f} bits), "
          f"test {summary['test_loss']:.4f} nats/char ({summary['test_bpc']:.4f} bits); "
          f"{summary['train_seconds']:.0f} s of training; output in {out}", file=sys.stderr)
    if config.sample_length:
        print("--- sample (temperature 0.8) ---", file=sys.stderr)
        _stream(generate_text(summary["params"], summary["vocab"], length=config.sample_length, temperature=0.8))
    return EXIT_OK


def _stream(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _sample_command(args) -> int:
    params, vocab, _ = load_model(args.out, args.checkpoint)
    pieces = generate_text(params, vocab, length=args.length, prime=args.prime, temperature=args.temperature,
                           top_k=args.top_k, seed=args.seed)
    first = next(pieces, "")  # fail on bad priming text before printing anything
    sys.stdout.write(args.prime)
    _stream(_chain([first], pieces))
    return EXIT_OK


def _chain(*iterables):
    for it in iterables:
        yield from it


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxrnn`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _train_command(args) if args.command == "train" else _sample_command(args)
    except (DataError, ConfigError) as e:
        print(f"jaxrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"jaxrnn {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `jaxrnn sample | head`
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
