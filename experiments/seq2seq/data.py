"""The addition problems: operands, the held-out 2% of pairs (split into validation and test), questions and answers
as ids (time-major), text."""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np


PLUS, EQUALS, GO, END = 10, 11, 12, 13  # ids 0..9 are the digits; END also pads
VOCAB = 14
CHARS = "0123456789+=^$"  # how the ids print (^ GO, $ END)
HELD_OUT_EVERY = 50  # (a + 7 b) % 50 == 0: the held-out 2% of problems


def num_digits(n):
    """Decimal digits of ``n >= 0`` (``0`` has one)."""
    return 1 + sum((n >= 10**k).astype(jnp.int32) for k in range(1, 5))


def digit_at(n, n_digits, p):
    """The ``p``-th digit of ``n`` counting from the most significant (``p < n_digits``)."""
    return (n // 10 ** jnp.clip(n_digits - 1 - p, 0, 5)) % 10


def is_held_out(a, b):
    return (a + 7 * b) % HELD_OUT_EVERY == 0


@functools.partial(jax.jit, static_argnames=("digits", "n"))
def draw_operands(key, digits: int, n: int):
    """``n`` pairs ``(a, b)``: digit count uniform in ``1..digits``, then the value uniform among those."""
    k_na, k_nb, k_a, k_b = jax.random.split(key, 4)

    def one(k_n, k_v):
        nd = jax.random.randint(k_n, (n,), 1, digits + 1)
        low = jnp.where(nd == 1, 0, 10 ** (nd - 1))
        return jax.random.randint(k_v, (n,), low, 10**nd)

    return one(k_na, k_a), one(k_nb, k_b)


@functools.partial(jax.jit, static_argnames=("digits", "reverse"))
def encode(a, b, digits: int, *, reverse: bool = False):
    """Question and answer ids, time-major.

    Returns: ``question (2 digits + 2, B)`` right-padded with ``END``, ``lengths (B,)``; decoder ``inputs``
    ``(digits + 2, B)`` = GO, digits of ``a + b``; ``targets`` the same digits then END (then END padding);
    ``mask`` true up to and including the first END.
    """
    na, nb, s = num_digits(a), num_digits(b), a + b
    ns = num_digits(s)
    p = jnp.arange(2 * digits + 2)[:, None]
    q = jnp.where(
        p < na,
        digit_at(a, na, p),
        jnp.where(
            p == na,
            PLUS,
            jnp.where(p <= na + nb, digit_at(b, nb, p - na - 1), jnp.where(p == na + nb + 1, EQUALS, END)),
        ),
    )
    lengths = na + nb + 2
    if reverse:  # read back to front within each question's own length; padding stays at the end
        q = jnp.take_along_axis(q, jnp.where(p < lengths, lengths - 1 - p, p), axis=0)
    t = jnp.arange(digits + 2)[:, None]
    targets = jnp.where(t < ns, digit_at(s, ns, t), END)
    inputs = jnp.concatenate([jnp.full((1, a.shape[0]), GO, targets.dtype), targets[:-1]])
    return q, lengths, inputs, targets, t <= ns


@functools.partial(jax.jit, static_argnames=("digits", "B", "reverse"))
def training_batch(key, digits: int, B: int, *, reverse: bool = False):
    """``B`` random problems, none of them held out: a held-out ``(a, b)`` becomes ``(a, b + 1)`` (or ``(a, b - 1)``
    when ``b + 1`` would have too many digits), which is never held out."""
    a, b = draw_operands(key, digits, B)
    return encode(a, training_operand(a, b, digits), digits, reverse=reverse)


def training_operand(a, b, digits: int):
    """``b``, or its neighbour where ``(a, b)`` is held out (``(a + 7 (b +- 1)) % 50`` is 7 or 43, never 0)."""
    return jnp.where(is_held_out(a, b), jnp.where(b + 1 < 10**digits, b + 1, b - 1), b)


def held_out_set(key, digits: int, n: int, *, reverse: bool = False):
    """``n`` distinct held-out problems (fewer if there are not that many): ``(a, b)`` and their encoding."""
    a, b = draw_operands(key, digits, 200 * max(n, 1000))  # enough draws to find nearly every pair when n is small
    a, b = np.asarray(a), np.asarray(b)
    keep = is_held_out(a, b)
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
    pairs = pairs[np.random.default_rng(0).permutation(len(pairs))[:n]]
    a, b = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    return (a, b), encode(a, b, digits, reverse=reverse)


def held_out_split(key, digits: int, n: int, *, reverse: bool = False):
    """Two disjoint sets of ``n`` held-out problems, ``(validation, test)``, each ``((a, b), encoding)`` as
    ``held_out_set`` gives: runs stop and are compared on the first, the second is read once at the end."""
    (a, b), _ = held_out_set(key, digits, 2 * n, reverse=reverse)
    if a.shape[0] < 2 * n:
        raise ValueError(f"only {a.shape[0]} held-out problems with {digits} digits; eval_size {n} needs {2 * n}")
    halves = (slice(0, n), slice(n, 2 * n))
    return tuple(((a[h], b[h]), encode(a[h], b[h], digits, reverse=reverse)) for h in halves)


def to_text(ids) -> str:
    return "".join(CHARS[int(i)] for i in ids)
