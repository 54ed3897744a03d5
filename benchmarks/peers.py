"""The character LSTM of ``lstm_peers`` in Flax (linen, nnx) and PyTorch, loaded with jaxrnn's weights.

Model everywhere: embedding ``E`` -> one LSTM layer ``H`` -> linear readout ``V``; mean cross-entropy. The weights
come from one ``jaxrnn.StackParams`` (``init_stack(..., embed_size=E)``) through ``jaxrnn.convert``, which states
the gate orders and layouts of each library once. Each builder returns a training step of one update and a loss
function, so that ``lstm_peers`` can check the losses agree before anything is timed.

Precision: ``dtype=jnp.bfloat16`` builds the Flax model with ``dtype=bfloat16, param_dtype=float32`` (Flax's
policy: its layers compute, and its cell keeps its state, in ``dtype``); ``autocast=True`` runs PyTorch's forward
pass under ``torch.autocast(..., dtype=torch.bfloat16)`` (the ops on autocast's lower-precision list run in
bfloat16, the loss in float32).
"""

from __future__ import annotations

import os


def sizes(p) -> tuple[int, int, int]:
    """``(V, E, H)`` of a one-layer ``StackParams`` with an embedding ``(E, V)``."""
    E, V = p.embedding.shape
    return V, E, p.layers[0].Whh.shape[1]


def flax_linen_impl(p, optimizer, dtype=None):
    """``(variables, train_step(variables, opt_state, xs, ys) -> (variables, opt_state, loss), loss_fn)``; ids
    ``(T, B)`` time-major as jaxrnn's (Flax's ``nn.RNN`` is batch-major: transposed inside)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from jaxrnn import convert

    V, E, H = sizes(p)
    kw = dict(dtype=dtype, param_dtype=jnp.float32)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):  # (B, T)
            return nn.Dense(V, **kw)(nn.RNN(nn.OptimizedLSTMCell(H, **kw))(nn.Embed(V, E, **kw)(ids)))

    model = Model()
    variables = {
        "params": {
            "Embed_0": {"embedding": p.embedding.T},
            "OptimizedLSTMCell_0": convert.to_flax(p.layers[0]),
            "Dense_0": {"kernel": p.Why.T, "bias": p.by},
        }
    }
    variables = jax.tree.map(jnp.asarray, variables)
    expected = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), int))
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, expected), "Flax parameter layout changed"

    def loss_fn(variables, xs, ys):
        logits = model.apply(variables, xs.T).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys.T).mean()

    @jax.jit
    def train_step(variables, opt_state, xs, ys):
        loss, grads = jax.value_and_grad(loss_fn)(variables, xs, ys)
        updates, opt_state = optimizer.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss

    return variables, train_step, loss_fn


def flax_nnx_impl(p, optimizer):
    """``(model, opt, train_step(model, opt, xs, ys) -> loss, loss_fn(model, xs, ys))``, float32."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxrnn import convert

    V, E, H = sizes(p)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(V, E, rngs=rngs)
            self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(E, H, rngs=rngs))
            self.out = nnx.Linear(H, V, rngs=rngs)

        def __call__(self, ids):
            return self.out(self.rnn(self.embed(ids)))

    model = Model(nnx.Rngs(0))
    nnx.update(model.rnn.cell, jax.tree.map(jnp.asarray, convert.to_nnx(p.layers[0], model.rnn.cell)))
    model.embed.embedding.set_value(p.embedding.T)  # flax deprecates assigning to .value
    model.out.kernel.set_value(p.Why.T)
    model.out.bias.set_value(p.by)
    opt = nnx.Optimizer(model, optimizer, wrt=nnx.Param)

    def loss_fn(model, xs, ys):
        return optax.softmax_cross_entropy_with_integer_labels(model(xs.T), ys.T).mean()

    @nnx.jit
    def train_step(model, opt, xs, ys):
        loss, grads = nnx.value_and_grad(loss_fn)(model, xs, ys)
        opt.update(model, grads)
        return loss

    return model, opt, train_step, loss_fn


def torch_impl(p, lr: float, device: str, *, autocast: bool = False):
    """``(train_step(xs, ys) -> loss, loss_of(xs, ys), to_ids)`` for ``torch.nn.LSTM`` (time-major) with Adam;
    ``autocast``: the forward pass under ``torch.autocast`` in bfloat16."""
    import numpy as np
    import torch

    from jaxrnn import convert

    V, E, H = sizes(p)
    torch.set_num_threads(os.cpu_count())
    dev = "cuda" if device == "gpu" or (device == "auto" and torch.cuda.is_available()) else "cpu"

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.lstm = torch.nn.LSTM(E, H)
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids):
            return self.out(self.lstm(self.embed(ids))[0])

    model = Model().to(dev)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device=dev)
    with torch.no_grad():
        model.embed.weight.copy_(t(np.asarray(p.embedding).T))
        for name, value in convert.to_torch(p.layers[0]).items():
            getattr(model.lstm, name).copy_(t(value))
        model.out.weight.copy_(t(p.Why))
        model.out.bias.copy_(t(p.by))
    model.lstm.bias_hh_l0.requires_grad_(False)  # one bias vector, as in jaxrnn and Flax (Adam would move both)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr)

    def loss_of(xs, ys):
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
            logits = model(xs)
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, V), ys.reshape(-1))

    def train_step(xs, ys):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(xs, ys)
        loss.backward()
        opt.step()
        return loss.item()  # .item() waits for the step to finish

    to_ids = lambda a: torch.tensor(np.asarray(a), dtype=torch.long, device=dev)
    return train_step, loss_of, to_ids
