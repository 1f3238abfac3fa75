"""conv -> relu -> pool, stage by stage: the stage grammar and the engine that runs it.

Maps are float32 arrays in torch's layout, (C, H, W); every stage takes the
previous stage's map and records its own output, shape, range and time.

Stage grammar
-------------
One stage per string, or several in one string joined by ``->``; the one grammar of
layers and stages, :mod:`convtool.shapes.grammar`, of which the pipeline runs these::

    conv[:KERNEL[+KERNEL...]][,s=S][,p=P][,d=D][,border=B][,flip][,bias=B][,normalize]
        [,scale=F]
    conv:C@K[,s=S][,p=P][,d=D][,border=B][,nobias]
    relu
    maxpool[:K][,s=S][,p=P][,ceil]
    avgpool[:K][,s=S][,p=P][,ceil]

- ``KERNEL`` is any ``-k`` spec of ``convtool apply`` (a name with parameters or a
  rotation, inline rows, ``@FILE``); several kernels are joined by ``+`` and give
  one map each, which flow on as channels. A 2-D kernel is applied to every input
  channel and the results summed (the chapter's 3-in, 1-out filter); a
  (C_out, C_in, kH, kW) file gives C_out maps and needs C_in input channels. A
  ``conv`` without kernels (``conv`` or ``conv:p=same``) takes the kernels given
  apart (``-k`` on the command line, ``kernels=`` here).
- ``conv:C@K`` is a network's layer: C random KxK kernels over every input channel,
  drawn as torch's Conv2d starts them, from ``ConvDefaults.seed`` (see
  :func:`random_kernel`). ``d=D`` spreads a conv's taps D apart (dilation): the
  kernel runs spread out, zeros between its taps.
- ``S``, ``K`` and ``D`` are ``N`` or ``HxW``. A conv's ``P`` is ``N``, ``HxW``, ``same``
  or ``valid``; a pool's is ``N`` or ``HxW``, at most half the window. A pool's
  stride defaults to its window, its window to 2.
- ``border`` is what lies outside the picture: zero, reflect, mirror, replicate
  or wrap (see :mod:`convtool.filtering`); ``flip`` rotates the kernels 180 degrees
  (the mathematical convolution); ``bias`` is added to every map; ``normalize``
  divides each kernel by its sum and ``scale`` multiplies it.
- Options a conv stage does not give come from :class:`ConvDefaults` (the
  command's ``--padding``, ``--stride``, ...): valid padding, stride 1, zero
  border, as the chapter's figure 17-7.
- Kinds accept the aliases of ``convtool shape`` (``conv2d``, ``max_pool``,
  ``avg_pool``) and ``pool`` for ``maxpool``. Pools follow torch's
  ``max_pool2d``/``avg_pool2d`` (padding counts as zeros in an average).

Without stages, the chain is the chapter's: ``conv -> relu -> maxpool:2``.
"""

from convtool.pipeline.run import (
    StageResult,
    count_nonfinite,
    run_pipeline,
    run_stages,
    source_planes,
)
from convtool.pipeline.stages import (
    COLORS,
    DEFAULT_CHAIN,
    FORMS,
    KINDS,
    ConvDefaults,
    Stage,
    StageError,
    parse_stage,
    parse_stages,
    random_kernel,
)

__all__ = [
    "COLORS",
    "DEFAULT_CHAIN",
    "FORMS",
    "KINDS",
    "ConvDefaults",
    "Stage",
    "StageError",
    "StageResult",
    "count_nonfinite",
    "parse_stage",
    "parse_stages",
    "random_kernel",
    "run_pipeline",
    "run_stages",
    "source_planes",
]
