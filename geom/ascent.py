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

    def state_dict(self) -> dict:
        """``{"t": steps taken, "m": [...], "v": [...]}`` (copies), for a checkpoint."""
        return dict(t=self.t, m=[m.detach().clone() for m in self.m], v=[v.detach().clone() for v in self.v])

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` of an ascent on parameters of the same shapes (ValueError otherwise)."""
        if not isinstance(state, dict) or set(state) != {"t", "m", "v"}:
            raise ValueError(f"optimizer_state: expected a dict with keys t, m, v, got {state!r:.80}")
        m, v = list(state["m"]), list(state["v"])
        pairs = list(zip(self.m + self.v, m + v))
        if len(m) != len(self.m) or len(v) != len(self.v) or any(
                not isinstance(saved, torch.Tensor) or mine.shape != saved.shape for mine, saved in pairs):
            raise ValueError("optimizer_state: its moments do not fit the parameters (another model or method?)")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"optimizer_state: t: expected a step count >= 0, got {t!r}")
        self.t = t
        with torch.no_grad():
            for mine, saved in pairs:
                mine.copy_(saved)

    @torch.no_grad()
    def step(self, lr, grads: Iterable[torch.Tensor] | None = None) -> None:
        """One step of size ``lr`` up the gradients (``grads``, or each tensor's ``.grad``, cleared);
        ``lr`` a number, or a tensor that broadcasts against every parameter (a size per entry)."""
        self.t += 1
        b1, b2 = self.betas
        grads = [q.grad for q in self.params] if grads is None else list(grads)
        for q, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            if self.method == "sgd":
                q.add_(g * lr if isinstance(lr, torch.Tensor) else g, alpha=1 if isinstance(lr, torch.Tensor) else lr)
            else:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                if isinstance(lr, torch.Tensor):
                    q.add_(m / denom * (lr / (1 - b1**self.t)))
                else:
                    q.addcdiv_(m, denom, value=lr / (1 - b1**self.t))
            q.grad = None
        if self.project is not None:
            self.project()
