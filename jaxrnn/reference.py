"""An independent float64 NumPy reference with hand-written backward passes.

Written apart from the JAX code on purpose (loops, dictionaries and all, in the style of min-char-rnn's
``lossFun``) so that it can vouch for ``jax.grad``; it is itself checked against finite differences
(``gradient_check``). Parameters are NumPy arrays in the lecture's orientation, as in ``jaxrnn.cells``:
``Wxh (H, D)``, ``Whh (H, H)``, ``Why (V, H)``, ``bh (H,)``, ``by (V,)`` (LSTM: ``4H`` rows, gates i, f, o, g).
Inputs are token ids (one-hot vectors of size ``D``); targets are ids in ``0..V-1``.
"""
from __future__ import annotations

import numpy as np

PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by")


def _one_hot(k: int, size: int) -> np.ndarray:
    x = np.zeros(size)
    x[k] = 1.0
    return x


def _softmax(y: np.ndarray) -> np.ndarray:
    e = np.exp(y - y.max())
    return e / e.sum()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def rnn_loss_fun(inputs, targets, hprev, params):
    """min-char-rnn's ``lossFun``: forward over the chunk, then backpropagation through time by hand.

    Args: ``inputs``, ``targets``: sequences of T ids; ``hprev (H,)``; ``params``: the five arrays in
      ``PARAM_NAMES`` order (any object with those attributes, or a tuple).
    Returns: ``loss, dWxh, dWhh, dWhy, dbh, dby, h_last`` (gradients before clipping).
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


def lstm_loss_fun(inputs, targets, hprev, cprev, params):
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
        i, f, o, g = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), _sigmoid(z[2 * H:3 * H]), np.tanh(z[3 * H:])
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


def adagrad_update(params, grads, mem, learning_rate=0.1, clip=5.0):
    """min-char-rnn's parameter update, in place: clip, ``mem += g*g``, ``p -= lr * g / sqrt(mem + 1e-8)``."""
    for p, g, m in zip(params, grads, mem):
        np.clip(g, -clip, clip, out=g)
        m += g * g
        p += -learning_rate * g / np.sqrt(m + 1e-8)


def relative_error(a, b, tiny: float = 1e-300):
    """The course's relative error ``|a - b| / max(|a| + |b|, tiny)``, elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)


def gradient_check(loss, params, grads, *, num_checks: int = 10, delta: float = 1e-5, seed: int = 0):
    """Compare analytic ``grads`` with central differences ``(L(p + d) - L(p - d)) / 2d`` at random entries.

    Args: ``loss(params) -> float``; ``params`` and ``grads``: sequences of float64 arrays (perturbed in place
      and restored).
    Returns: the relative errors, one array of ``num_checks`` per parameter.
    """
    rng = np.random.default_rng(seed)
    errors = []
    for p, g in zip(params, grads):
        errs = np.empty(num_checks)
        for n in range(num_checks):
            ix = tuple(int(rng.integers(s)) for s in p.shape)
            old = p[ix]
            p[ix] = old + delta
            plus = loss(params)
            p[ix] = old - delta
            minus = loss(params)
            p[ix] = old
            errs[n] = relative_error(g[ix], (plus - minus) / (2 * delta))
        errors.append(errs)
    return errors


def sample(hprev, seed_ix: int, n: int, params, rng: np.random.Generator):
    """min-char-rnn's sampler: feed ``seed_ix``, draw from the softmax, feed the draw back, ``n`` times."""
    Wxh, Whh, Why, bh, by = params
    h, x, ixes = np.array(hprev, np.float64), seed_ix, []
    for _ in range(n):
        h = np.tanh(Wxh[:, x] + Whh @ h + bh)
        x = int(rng.choice(Why.shape[0], p=_softmax(Why @ h + by)))
        ixes.append(x)
    return ixes
