"""An independent float64 NumPy reference with hand-written backward passes.

Written apart from the JAX code on purpose (loops, dictionaries and all, in the style of min-char-rnn's
``lossFun``) so that it can vouch for ``jax.grad``; it is itself checked against finite differences
(``gradient_check``). Parameters are NumPy arrays in the lecture's orientation, as in ``jaxrnn.cells``:
``Wxh (H, D)``, ``Whh (H, H)``, ``Why (V, H)``, ``bh (H,)``, ``by (V,)`` (LSTM: ``4H`` rows, gates i, f, o, g;
GRU: ``3H`` rows, gates r, z, n, and ``bhn (H,)``).
Inputs are token ids (one-hot vectors of size ``D``); targets are ids in ``0..V-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by")
"""The RNN's and LSTM's parameters in the order the loss functions take them and return their gradients."""

Ids: TypeAlias = Sequence[int] | np.ndarray
"""A sequence of token ids, as a list or an integer array ``(T,)``."""

_Arrays = TypeVar("_Arrays", bound=Sequence[np.ndarray])


def _one_hot(k: int, size: int) -> np.ndarray:
    x = np.zeros(size)
    x[k] = 1.0
    return x


def _softmax(y: np.ndarray) -> np.ndarray:
    e = np.exp(y - y.max())
    return e / e.sum()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def rnn_loss_fun(
    inputs: Ids, targets: Ids, hprev: npt.ArrayLike, params: Iterable[npt.ArrayLike]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """min-char-rnn's ``lossFun``: forward over the chunk, then backpropagation through time by hand.

    Args:
      inputs: a sequence of T ids.
      targets: a sequence of T ids.
      hprev: ``(H,)``.
      params: the five arrays in ``PARAM_NAMES`` order (any object with those attributes, or a tuple).

    Returns:
      ``loss, dWxh, dWhh, dWhy, dbh, dby, h_last`` (gradients before clipping).
    """
    Wxh, Whh, Why, bh, by = (np.asarray(p, np.float64) for p in params)
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.array(hprev, np.float64)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = _one_hot(inputs[t], Wxh.shape[1])
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ps[t] = _softmax(Why @ hs[t] + by)
        loss += -np.log(ps[t][targets[t]])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[-1])
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1  # d loss / d y for softmax followed by cross-entropy
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh  # back through tanh
        dbh += dhraw
        dWxh += np.outer(dhraw, xs[t])
        dWhh += np.outer(dhraw, hs[t - 1])
        dhnext = Whh.T @ dhraw
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def lstm_loss_fun(
    inputs: Ids, targets: Ids, hprev: npt.ArrayLike, cprev: npt.ArrayLike, params: Iterable[npt.ArrayLike]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The LSTM's forward pass and backpropagation through time by hand.

    Returns: ``loss, dWxh, dWhh, dWhy, dbh, dby, h_last, c_last``.
    """
    Wxh, Whh, Why, bh, by = (np.asarray(p, np.float64) for p in params)
    H = Whh.shape[1]
    xs, hs, cs, gates, ps = {}, {}, {}, {}, {}
    hs[-1], cs[-1] = np.array(hprev, np.float64), np.array(cprev, np.float64)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = _one_hot(inputs[t], Wxh.shape[1])
        z = Wxh @ xs[t] + Whh @ hs[t - 1] + bh
        i, f, o, g = _sigmoid(z[:H]), _sigmoid(z[H : 2 * H]), _sigmoid(z[2 * H : 3 * H]), np.tanh(z[3 * H :])
        gates[t] = (i, f, o, g)
        cs[t] = f * cs[t - 1] + i * g
        hs[t] = o * np.tanh(cs[t])
        ps[t] = _softmax(Why @ hs[t] + by)
        loss += -np.log(ps[t][targets[t]])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext, dcnext = np.zeros(H), np.zeros(H)
    for t in reversed(range(len(inputs))):
        i, f, o, g = gates[t]
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dh = Why.T @ dy + dhnext
        tanh_c = np.tanh(cs[t])
        do = dh * tanh_c
        dc = dcnext + dh * o * (1 - tanh_c * tanh_c)
        di, df, dg = dc * g, dc * cs[t - 1], dc * i
        dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)])
        dbh += dz
        dWxh += np.outer(dz, xs[t])
        dWhh += np.outer(dz, hs[t - 1])
        dhnext = Whh.T @ dz
        dcnext = dc * f  # the cell path: only the forget gate stands between c_t and c_{t-1}
    last = len(inputs) - 1
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[last], cs[last]


GRU_PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by", "bhn")
"""The GRU's parameters in the order ``gru_loss_fun`` takes them, ``bhn`` last."""


def gru_loss_fun(
    inputs: Ids, targets: Ids, hprev: npt.ArrayLike, params: Iterable[npt.ArrayLike]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The GRU's forward pass and backpropagation through time by hand (gates r, z, n; reset after ``Whh``).

    ``params``: the six arrays in ``GRU_PARAM_NAMES`` order, ``bhn (H,)`` being the candidate's recurrent bias::

        r = sigmoid(Wxh_r x + Whh_r h + bh_r)    z = sigmoid(Wxh_z x + Whh_z h + bh_z)
        n = tanh(Wxh_n x + bh_n + r * (Whh_n h + bhn))    h_t = (1 - z) * n + z * h

    Returns: ``loss, dWxh, dWhh, dWhy, dbh, dby, dbhn, h_last``.
    """
    Wxh, Whh, Why, bh, by, bhn = (np.asarray(p, np.float64) for p in params)
    H = Whh.shape[1]
    xs, hs, gates, ps = {}, {}, {}, {}
    hs[-1] = np.array(hprev, np.float64)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = _one_hot(inputs[t], Wxh.shape[1])
        a = Wxh @ xs[t] + bh  # input side, biases included
        b = Whh @ hs[t - 1]  # recurrent side
        r = _sigmoid(a[:H] + b[:H])
        z = _sigmoid(a[H : 2 * H] + b[H : 2 * H])
        hn = b[2 * H :] + bhn
        n = np.tanh(a[2 * H :] + r * hn)
        gates[t] = (r, z, n, hn)
        hs[t] = (1 - z) * n + z * hs[t - 1]
        ps[t] = _softmax(Why @ hs[t] + by)
        loss += -np.log(ps[t][targets[t]])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby, dbhn = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(bhn)
    dhnext = np.zeros(H)
    for t in reversed(range(len(inputs))):
        r, z, n, hn = gates[t]
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dh = Why.T @ dy + dhnext
        dn = dh * (1 - z)
        dz = dh * (hs[t - 1] - n)
        dnraw = dn * (1 - n * n)  # back through tanh
        dhn = dnraw * r  # into Whh_n h + bhn
        dr = dnraw * hn
        drraw, dzraw = dr * r * (1 - r), dz * z * (1 - z)
        da = np.concatenate([drraw, dzraw, dnraw])  # d loss / d (Wxh x + bh)
        db = np.concatenate([drraw, dzraw, dhn])  # d loss / d (Whh h)
        dbh += da
        dbhn += dhn
        dWxh += np.outer(da, xs[t])
        dWhh += np.outer(db, hs[t - 1])
        dhnext = dh * z + Whh.T @ db  # the direct path through z, plus the gates' dependence on h
    return loss, dWxh, dWhh, dWhy, dbh, dby, dbhn, hs[len(inputs) - 1]


def adagrad_update(
    params: Iterable[np.ndarray],
    grads: Iterable[np.ndarray],
    mem: Iterable[np.ndarray],
    learning_rate: float = 0.1,
    clip: float = 5.0,
    eps: float = 1e-8,
) -> None:
    """min-char-rnn's parameter update, in place: clip, ``mem += g*g``, ``p -= lr * g / sqrt(mem + eps)``."""
    for p, g, m in zip(params, grads, mem):
        np.clip(g, -clip, clip, out=g)
        m += g * g
        p += -learning_rate * g / np.sqrt(m + eps)


def relative_error(a: npt.ArrayLike, b: npt.ArrayLike, tiny: float = 1e-300) -> np.ndarray:
    """The course's relative error ``|a - b| / max(|a| + |b|, tiny)``, elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)


def gradient_check(
    loss: Callable[[_Arrays], float],
    params: _Arrays,
    grads: Sequence[np.ndarray],
    *,
    num_checks: int = 10,
    delta: float = 1e-5,
    order: int = 2,
    seed: int = 0,
) -> list[np.ndarray]:
    """Compare analytic ``grads`` with central differences at random entries.

    ``order=2`` is the classic ``(L(p + d) - L(p - d)) / 2d`` (error ``O(d^2)``); ``order=4`` is the central
    five-point stencil ``(-L(p + 2d) + 8 L(p + d) - 8 L(p - d) + L(p - 2d)) / 12d`` (error ``O(d^4)``), which
    allows a larger ``d`` and so less round-off on losses summed over many steps.

    Args:
      loss: ``loss(params) -> float``.
      params: a sequence of float64 arrays (perturbed in place and restored).
      grads: a sequence of float64 arrays, the analytic gradients.

    Returns:
      The relative errors, one array of ``num_checks`` per parameter.
    """
    stencils = {2: ((1, 1 / 2),), 4: ((1, 8 / 12), (2, -1 / 12))}  # weights of L(p + k d) - L(p - k d)
    if order not in stencils:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    rng = np.random.default_rng(seed)
    errors = []
    for p, g in zip(params, grads):
        errs = np.empty(num_checks)
        for n in range(num_checks):
            ix = tuple(int(rng.integers(s)) for s in p.shape)
            old = p[ix]
            numeric = 0.0
            for k, weight in stencils[order]:
                p[ix] = old + k * delta
                plus = loss(params)
                p[ix] = old - k * delta
                numeric += weight * (plus - loss(params))  # exactly 0 where the loss ignores the entry
            p[ix] = old
            errs[n] = relative_error(g[ix], numeric / delta)
        errors.append(errs)
    return errors


def sample(
    hprev: npt.ArrayLike, seed_ix: int, n: int, params: Sequence[np.ndarray], rng: np.random.Generator
) -> list[int]:
    """min-char-rnn's sampler: feed ``seed_ix``, draw from the softmax, feed the draw back, ``n`` times."""
    Wxh, Whh, Why, bh, by = params
    h, x, ixes = np.array(hprev, np.float64), seed_ix, []
    for _ in range(n):
        h = np.tanh(Wxh[:, x] + Whh @ h + bh)
        x = int(rng.choice(Why.shape[0], p=_softmax(Why @ h + by)))
        ixes.append(x)
    return ixes
