"""Particle flows driven by sliced optimal transport: the users of the estimator that move clouds.

Every flow takes any slicing scheme (a registered name or an instance, whose state, such as the
``"reservoir"``'s, is kept from step to step), a ``seed`` or ``generator``, records its trajectory at
chosen steps, and returns a :class:`FlowResult`. An optional ``callback(step, particles, value)``
runs after every step (a tool's progress bar and checkpoints); returning ``False`` stops the flow
cleanly at that step.

* :func:`sw_flow`, the SW gradient flow (the point-cloud interpolation experiment of the
  quasi-Monte Carlo and control-variate sliced Wasserstein papers): particles follow
  ``-grad SW_p^p(mu_x, nu)`` by Adam or SGD. The source weights stay fixed.
* :func:`swf`, the Sliced-Wasserstein Flow of *Sliced-Wasserstein Flows: Nonparametric Generative
  Modeling via Optimal Transport and Diffusions*, Antoine Liutkus, Umut Simsekli, Szymon Majewski,
  Alain Durmus and Fabian-Robert Stoter (ICML 2019): at each step, on fresh directions, every
  particle's projection is sent through the 1-D optimal transport map to the target's projection
  (the target quantile function composed with the particles' CDF); the displacements, averaged
  over the directions, move the particles, plus optional Gaussian noise (entropic regularisation).
* :func:`conditional_swf`, from *Nonparametric Generative Modeling with Conditional
  Sliced-Wasserstein Flows*, Chao Du, Tianbo Li, Tianyu Pang, Shuicheng Yan and Min Lin (ICML
  2023): the SWF on joint vectors ``[x, label_scale * onehot(label)]`` whose label block never
  moves (class-conditional sampling), with masked coordinates held fixed (inpainting).

Step sizes know the target's scale: ``lr`` of :func:`sw_flow` and :func:`mmd_flow` defaults to a
fraction (:data:`DEFAULT_STEP`) of :func:`target_scale`, the target's RMS radius about its mean, and
the SWF's ``step_size`` is a fraction of the transport displacement; a flow onto a target 100 times
larger converges in as many steps with the default settings.

Recorded values (``FlowResult.values``) are ``SW_p`` to the target on ``eval_projections`` uniform
directions drawn once at the start from the flow's generator (common random numbers: the curve is
smooth and comparable across schemes); the ``value`` given to the callback is the flow's own
estimate on the slices of that step, at the positions the step started from.
"""

from .. import _ot1d
from ._base import DEFAULT_STEP, FlowDiverged, FlowResult, target_scale
from .mmd import mmd_flow
from .sw import sw_flow
from .swf import conditional_swf, swf

__all__ = ["DEFAULT_STEP", "FlowDiverged", "FlowResult", "conditional_swf", "mmd_flow", "sw_flow", "swf", "target_scale",
           "transport_targets"]

transport_targets = _ot1d.transport_map  # the name of the first release
