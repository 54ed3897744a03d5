"""Training over several processes, on one host or many: ``jax.distributed`` and one mesh over all their devices.

Every process runs the same program. ``initialize`` connects it to the others (the coordinator is process 0);
``jaxrnn.parallel.make_mesh(jax.devices())`` then spans every process's devices, and the data-parallel training
step runs unchanged: each process computes the global batch (the streams are a deterministic function of the
text) and ``jax.device_put`` puts only its own slice of the streams on its own devices; the gradient all-reduce
crosses processes (NCCL on GPUs, the TPU interconnect, gloo over TCP on CPUs). Process 0 alone prints and writes
metrics and plots; checkpoints are written by every process together (orbax), each writing its own shards.

Decisions that depend on a process's clock or signals (a time budget spent, Ctrl-C) are taken by process 0
and broadcast (``agree``), so that every process runs the same number of compiled steps. When a process dies,
the others stop instead of waiting forever: at the next collective, whose connection to it breaks (JAX raises
``jax.errors.JaxRuntimeError``; ``jaxrnn train`` says so in one line and exits with status 3), or when its
heartbeats have been missing for ``heartbeat_timeout`` seconds, which ``jax.distributed`` ends by aborting the
process with "Terminating process because the JAX distributed service detected fatal errors ... another task
died" (it calls no Python code that could say more).
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from jaxrnn._checks import SettingError
from jaxrnn.typing import PyTree

HEARTBEAT_TIMEOUT = 100
"""Seconds without a heartbeat after which a process is declared dead (``jax.distributed``'s default)."""


class DistributedError(SettingError):
    """Impossible multi-process settings (a malformed address, a process id out of range): one line that starts
    with the name of the setting."""


def parse_coordinator(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[v6 address]:PORT`` for IPv6) as ``(host, port)``; ``DistributedError`` otherwise."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", address or "")
    if not match or not 0 < int(match.group(2)) < 65536:
        raise DistributedError(
            f"coordinator must be HOST:PORT with a port from 1 to 65535, got {address!r}", "coordinator"
        )
    return match.group(1), int(match.group(2))


def check_settings(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Either all three given (explicit launch) or none (found from SLURM, Open MPI or Cloud TPU's environment)."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        missing = [n for n, g in zip(("coordinator", "num_processes", "process_id"), given) if not g][0]
        raise DistributedError(
            f"{missing} is needed too: give coordinator, num_processes and process_id together, "
            "or none of them to read them from the cluster's environment",
            missing,
        )
    if coordinator is None:
        return
    parse_coordinator(coordinator)
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise DistributedError(f"num_processes must be a positive integer, got {num_processes!r}", "num_processes")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise DistributedError(
            f"process_id must be in 0..{num_processes - 1} for {num_processes} processes, got {process_id!r}",
            "process_id",
        )


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
) -> None:
    """Join the other processes (blocks until all ``num_processes`` have joined; call before any other JAX call).

    With no arguments the settings come from the environment (SLURM, Open MPI, Cloud TPU), as
    ``jax.distributed.initialize`` finds them. CPU devices exchange gradients through gloo.
    """
    check_settings(coordinator, num_processes, process_id)
    if not (isinstance(heartbeat_timeout, int) and heartbeat_timeout >= 1):
        raise DistributedError(
            f"heartbeat_timeout must be a positive number of seconds, got {heartbeat_timeout!r}", "heartbeat_timeout"
        )
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; GPUs and TPUs use their own
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout_seconds=heartbeat_timeout)
    except (ValueError, RuntimeError) as e:  # no cluster found, or the coordinator never answered
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise DistributedError(
            f"cannot join the other processes ({lines[0][:200]}); outside SLURM, Open MPI and "
            "Cloud TPU give --coordinator, --num-processes and --process-id"
        ) from None


def is_main_process() -> bool:
    """Whether this process prints and writes files: process 0 (also true when there is only one)."""
    import jax

    return jax.process_index() == 0


def agree(values: npt.ArrayLike) -> np.ndarray:
    """Process 0's ``values`` (a 1-D float64 vector), on every process: the decisions taken from a clock."""
    import jax

    values = np.asarray(values, np.float64)
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(values))


def to_host(tree: PyTree) -> PyTree:
    """A tree of replicated arrays as NumPy arrays on this process (each process reads its own copy)."""
    import jax

    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)) if isinstance(a, jax.Array) else a, tree)
