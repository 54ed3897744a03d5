"""Stop requests while training: Ctrl-C, and the signals a scheduler sends before it kills a job.

SIGINT (Ctrl-C), SIGTERM (what SLURM, Kubernetes and systemd send first) and SIGUSR1 (what SLURM's
``--signal=USR1@SECONDS`` sends ahead of the time limit) all ask the training loop to stop after the compiled
call in flight and save a checkpoint. A second Ctrl-C stops at once, without saving; a second SIGTERM or SIGUSR1
changes nothing (a scheduler may send both), so the checkpoint being written is finished.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

EXIT_PREEMPTED = 143
"""Exit status after a SIGTERM or SIGUSR1 stop, checkpoint saved: 128 + SIGTERM, what the process would have
returned had it died of the signal, so a scheduler sees a terminated job to requeue, never a finished one."""


@dataclass
class StopRequest:
    """The first stop signal received (``signum``), or ``None``; a signal handler for ``STOP_SIGNALS``."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum


def preempted(signum: int | None) -> bool:
    """Whether stop signal ``signum`` came from a scheduler (SIGTERM, SIGUSR1) rather than a person (Ctrl-C)."""
    return signum in (signal.SIGTERM, signal.SIGUSR1)


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """A ``StopRequest`` that receives ``STOP_SIGNALS`` while the block runs (in the main thread; elsewhere it
    receives nothing); the previous handlers come back afterwards."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
