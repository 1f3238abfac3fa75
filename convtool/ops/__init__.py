"""The public array API: convolution, ReLU and pooling, each beside its backward.

Layout is torch's: images (N, C, H, W), kernels (C_out, C_in, kH, kW), bias
(C_out,). A 2-D (H, W) image with a 2-D (kH, kW) kernel gives a 2-D result, and a
(C, H, W) image gives (C_out, H', W').

dtype policy, stated once (:mod:`convtool.ops._checks`): float32 and float64 are
kept (the result has the image's float type, the kernel is cast to it); float16
becomes float32; anything else (integers, bools) becomes float64.

"Convolution" means cross-correlation, as in the chapter and in torch;
``flip=True`` rotates the kernel 180 degrees first, giving the mathematical
convolution. Padding here is zero padding.

Every function validates and normalises its arguments, then hands contiguous
arrays to the jitted kernels of :mod:`convtool.core` through an engine: the
keyword-only ``engine`` (None: numba's JIT; see :mod:`convtool.core.engine`).
The kernels are imported on first use, so that importing this package stays cheap.

Modules: :mod:`~convtool.ops.conv` (conv2d, conv2d_backward),
:mod:`~convtool.ops.activation` (relu, relu_backward), :mod:`~convtool.ops.pool`
(max_pool2d, avg_pool2d and their backwards).
"""

from __future__ import annotations

from convtool.ops.activation import relu, relu_backward
from convtool.ops.conv import conv2d, conv2d_backward
from convtool.ops.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
]
