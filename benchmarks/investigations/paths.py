"""jaxrnn's named paths through ``lstm_peers``' model, which the investigations compare.

*scan*: ``sequence_loss`` with the stack's step in a ``lax.scan`` (the embedding looked up inside the loop);
*fused*: ``method="fused"`` (the embedding and ``Wxh`` applied to all T steps before the loop, hand-written BPTT);
*fused, folded*: the embedding folded into ``Wxh``, one ``(4H, V)`` table looked up inside the loop.
"""

from __future__ import annotations

SCAN, FUSED, FOLDED = "jaxrnn scan", "jaxrnn fused", "jaxrnn fused, folded"


def folded(p):
    """A one-layer ``StackParams`` with its embedding folded into layer 0: ``Wxh (Wemb x) = (Wxh Wemb) x``."""
    layer = p.layers[0]
    return p._replace(layers=(layer._replace(Wxh=layer.Wxh @ p.embedding),), embedding=None)


def losses() -> dict:
    """``{name: loss(p, carry, xs, ys, mask=None) -> (loss, carry_T)}``, mean cross-entropy, for each path."""
    import jaxrnn

    def scan_loss(p, carry, xs, ys, mask=None):
        return jaxrnn.sequence_loss(p, carry, xs, ys, mask=mask, reduction="mean", method="scan")

    def fused_loss(p, carry, xs, ys, mask=None):
        return jaxrnn.sequence_loss(p, carry, xs, ys, mask=mask, reduction="mean", method="fused")

    def folded_loss(p, carry, xs, ys, mask=None):
        return jaxrnn.sequence_loss(folded(p), carry, xs, ys, mask=mask, reduction="mean", method="fused")

    return {SCAN: scan_loss, FUSED: fused_loss, FOLDED: folded_loss}


def steps(optimizer) -> dict:
    """``{name: train_step(p, opt_state, carry, xs, ys)}`` for each path."""
    import jaxrnn

    return {name: jaxrnn.make_train_step(optimizer, loss_fn=loss) for name, loss in losses().items()}
