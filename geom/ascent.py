"""One projected gradient-ascent optimiser for schemes that learn (directions, liftings, locations)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["ProjectedAscent"]

METHODS = ("adam", "sgd")


class ProjectedAscent:
    """Gradient *ascent* on tensors, in place: Adam (Kingma & Ba, 2015; torch's defaults) or plain steps,
    each step followed by ``project()`` (for example renormalising a direction onto the sphere).

    Written out rather than taken from ``torch.optim``, whose first use imports ``torch._dynamo``
    (seconds); Adam's updates are the same::

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  q <- q + lr m_hat / (sqrt(v_hat) + eps)

    Args:
        params: tensors with ``requires_grad``, updated in place from their ``.grad``.
        method: ``"adam"`` or ``"sgd"``.
        project: called with no argument after every step (inside ``torch.no_grad``), or None.
    """

    def __init__(self, params: Iterable[torch.Tensor], method: str = "adam", *, betas=(0.9, 0.999), eps=1e-8,
                 project: Callable[[], None] | None = None):
        if method not in METHODS:
            raise ValueError(f"optimizer: expected one of {list(METHODS)}, got {method!r}")
        self.params, self.method, self.betas, self.eps, self.t = list(params), method, betas, eps, 0
        self.project = project
        self.m = [torch.zeros_like(q) for q in self.params]
        self.v = [torch.zeros_like(q) for q in self.params]

    @torch.no_grad()
    def step(self, lr: float, grads: Iterable[torch.Tensor] | None = None) -> None:
        """One step of size ``lr`` up the gradients (``grads``, or each tensor's ``.grad``, cleared)."""
        self.t += 1
        b1, b2 = self.betas
        grads = [q.grad for q in self.params] if grads is None else list(grads)
        for q, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            if self.method == "sgd":
                q.add_(g, alpha=lr)
            else:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                q.addcdiv_(m, denom, value=lr / (1 - b1**self.t))
            q.grad = None
        if self.project is not None:
            self.project()
