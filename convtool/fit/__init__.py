"""Kernel recovery: find the kernel (and bias) that turns one picture into another.

The chapter's experiment 17.3.7 made into a tool. The loss is the chapter's,
``loss = sum((z - y)^2) / 2 / m`` with ``z = x (*) w (+ b)`` over the m target pixels
fitted, and three methods minimise it:

- ``'gd'``: gradient descent exactly as the chapter runs it: the loss is checked
  before each update (stop when it is below ``tol``), ``w <- w - lr * dw / m``, at most
  ``max_iter`` updates, from a start drawn from normal(0, 0.1) with a fixed seed (1
  unless ``seed``). ``lr='auto'`` takes the largest safe step the data allow (see
  :func:`convtool.fit.solve.auto_step`).
- ``'cg'`` (the default): conjugate gradient on the same loss from zero, the chapter's
  descent along conjugate directions, finished with the direct solve: the kernel is the
  least-squares optimum to float precision.
- ``'lstsq'``: the least-squares problem solved directly, in one step.

All three stop when the loss is below ``tol``, or when it has reached its minimum to
rounding (a target with noise, such as any 8-bit picture, has a loss floor above the
default ``tol``): both count as converged, and :attr:`FitResult.stopped` says which.
A run that stops at ``max_iter`` short of both is reported as not converged. Every run
is deterministic, and :attr:`FitResult.stderr` gives each entry's standard error.

Each iteration costs the same whatever the pictures' size: the pictures are read once,
in one jitted pass that gathers the patches' Gram matrix and their correlation with the
target (see :mod:`convtool.fit.solve`), and the methods iterate on those.

Arrays use convtool's layout: a picture is (H, W) or (C, H, W). A target of the same
size as the input means 'same' padding; by default only the target pixels whose whole
window lies inside the picture are fitted, so that however the target's maker treated
the border cannot bias the answer (``border=`` models the border instead).

Modules: ``kernel_fit`` (:func:`fit_kernel`, in steps), ``prep`` (shapes, strides, sizes,
borders, masks), ``solve`` (the statistics, the exact solution, the iterations), ``result``
(:class:`FitResult`), ``match`` (naming a fitted kernel), ``pairs`` (two decoded pictures
made into a fit's input and target, and fitted: colour modes, lossy targets), ``lossy``
(JPEG and WebP targets: what the file kept, clipping as censoring), ``through``
(:func:`fit_through`: the kernel through relu and pooling, by back-propagation),
``figure`` (what ``--report`` draws) and ``report`` (the text and JSON of a fit).
"""

from __future__ import annotations

from convtool.fit.kernel_fit import METHODS, fit_kernel
from convtool.fit.match import KernelMatch, describe_match, match_kernel
from convtool.fit.prep import BORDERS, DivergenceError, FitError, ShapeError
from convtool.fit.result import FitResult
from convtool.fit.through import fit_through

__all__ = [
    "BORDERS",
    "METHODS",
    "DivergenceError",
    "FitError",
    "FitResult",
    "KernelMatch",
    "ShapeError",
    "describe_match",
    "fit_kernel",
    "fit_through",
    "match_kernel",
]

for _public in (FitError, ShapeError, DivergenceError, FitResult, KernelMatch):
    _public.__module__ = __name__  # defined beside the code that uses them; public here
del _public
