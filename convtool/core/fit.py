"""The kernel fit's kernels: its statistics gathered in one pass, and its iterations.

Used by :mod:`convtool.fit`. The fit's loss is quadratic in the kernel, so everything
it needs from the pictures is gathered once, in float64: per picture plane n, the Gram
matrix of the patches gram[n] (taps x taps, upper triangle), and moments[n] =
[sum m x y (taps), sum m x (taps), sum m y, sum m y^2, sum m], m being the 0/1 weight of
each target pixel. Output pixel (i, j) sees x[n, i*sh + a, j*sw + b] through tap (a, b),
tap index a*kw + b.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.fastmath import ENTRY, FASTMATH, INNER, _share

# Compiled once each and called (numba's compile time grows with every copy it inlines):
# the helpers that run once per row of the direct path or once per chunk, and the
# one-line _fit_row, which LLVM inlines. Inlined by numba: the loops that run per tap or
# per pixel (a call would cost as much as their work), the row moments beside the ym
# they fill (compiled apart, LLVM vectorises their sums with other partial sums and the
# statistics change in the last bit), and the Toeplitz path (see _fit_lags).


@njit(inline="always")
def _fit_dot(u, v):
    acc = 0.0
    for k in range(u.shape[0]):
        acc += u[k] * v[k]
    return acc


@njit(inline="always")
def _fit_dots2(u, v0, v1):
    a0 = a1 = 0.0
    for k in range(u.shape[0]):
        a0 += u[k] * v0[k]
        a1 += u[k] * v1[k]
    return a0, a1


@njit(inline="always")
def _fit_dots4(u, v0, v1, v2, v3):
    """Four dot products sharing one operand: each load of u feeds four FMAs."""
    a0 = a1 = a2 = a3 = 0.0
    for k in range(u.shape[0]):
        uk = u[k]
        a0 += uk * v0[k]
        a1 += uk * v1[k]
        a2 += uk * v2[k]
        a3 += uk * v3[k]
    return a0, a1, a2, a3


@njit(**INNER)
def _fit_row(src, b, sw, w_out):
    """The w_out pixels that column tap b sees along one input row."""
    return src[b : b + (w_out - 1) * sw + 1 : sw]


@njit(inline="always")
def _fit_dots_row(g, t1, u, src, base, kw, b0, sw, w_out):
    """g[t1, base + b] += u . (row seen through column tap b), for b in [b0, kw)."""
    if sw == 1:
        b = b0
        while b + 3 < kw:
            d0, d1, d2, d3 = _fit_dots4(
                u, src[b : b + w_out], src[b + 1 : b + 1 + w_out],
                src[b + 2 : b + 2 + w_out], src[b + 3 : b + 3 + w_out],
            )  # fmt: skip
            g[t1, base + b] += d0
            g[t1, base + b + 1] += d1
            g[t1, base + b + 2] += d2
            g[t1, base + b + 3] += d3
            b += 4
        for rest in range(b, kw):
            g[t1, base + rest] += _fit_dot(u, src[rest : rest + w_out])
    else:
        for b in range(b0, kw):
            g[t1, base + b] += _fit_dot(u, _fit_row(src, b, sw, w_out))


@njit(inline="always")
def _fit_row_moments(mo, x, n, i, yrow, mrow, ym, sh, sw, kh, kw):
    """Add output row (n, i)'s moments (target yrow, weights mrow) to mo; ym = mrow * yrow."""
    w_out = ym.shape[0]
    taps = kh * kw
    sy = 0.0
    syy = 0.0
    sm = 0.0
    for j in range(w_out):
        v = mrow[j] * yrow[j]
        ym[j] = v
        sy += v
        syy += v * yrow[j]
        sm += mrow[j]
    mo[2 * taps] += sy
    mo[2 * taps + 1] += syy
    mo[2 * taps + 2] += sm
    for a in range(kh):
        src = x[n, i * sh + a]
        # x.y and x.m for each column tap: two dot products per loaded row
        for b in range(kw):
            if sw == 1:
                acc_y, acc_m = _fit_dots2(src[b : b + w_out], ym, mrow)
            else:
                acc_y, acc_m = _fit_dots2(_fit_row(src, b, sw, w_out), ym, mrow)
            mo[a * kw + b] += acc_y
            mo[taps + a * kw + b] += acc_m


@njit(fastmath=FASTMATH, **INNER)
def _fit_row_gram(g, x, n, i, mrow, u, sh, sw, kh, kw):
    """Add output row (n, i)'s patch products, weighted by mrow, to g's upper triangle."""
    w_out = u.shape[0]
    for t1 in range(kh * kw):
        a1 = t1 // kw
        b1 = t1 % kw
        s1 = _fit_row(x[n, i * sh + a1], b1, sw, w_out)
        for j in range(w_out):
            u[j] = mrow[j] * s1[j]
        for a2 in range(a1, kh):
            _fit_dots_row(g, t1, u, x[n, i * sh + a2], a2 * kw, kw,
                          b1 if a2 == a1 else 0, sw, w_out)  # fmt: skip


@njit(inline="always")
def _fit_lag_sums(part, edge, src1, src2, db, b_lo, b_hi, kw, w_out):
    """part[b1] = src1[b1 : b1 + w_out] . src2[b1 + db : ...] for b1 in [b_lo, b_hi].

    The windows share their middle, columns [kw - 1, w_out): that dot product is taken
    once, and each window adds its own ends, running sums from the left and the right.
    """
    core0 = kw - 1  # columns [kw - 1, w_out) lie in every column window
    if w_out > core0:
        core = _fit_dot(src1[core0:w_out], src2[core0 + db : w_out + db])
        # windows [b1, b1 + w_out): core plus [b1, core0) plus [w_out, w_out + b1)
        left = 0.0
        for b1 in range(core0 - 1, b_hi, -1):
            left += src1[b1] * src2[b1 + db]
        for b1 in range(b_hi, b_lo - 1, -1):
            if b1 < core0:
                left += src1[b1] * src2[b1 + db]
            edge[b1] = left
        right = 0.0
        for b1 in range(b_lo):
            c = w_out + b1
            right += src1[c] * src2[c + db]
        for b1 in range(b_lo, b_hi + 1):
            part[b1] = core + edge[b1] + right
            c = w_out + b1
            if b1 < b_hi:
                right += src1[c] * src2[c + db]
    else:
        for b1 in range(b_lo, b_hi + 1):
            part[b1] = _fit_dot(src1[b1 : b1 + w_out], src2[b1 + db : b1 + db + w_out])


@njit(inline="always")
def _fit_row_lags(g, inner_n, part, edge, x, n, r, h_out, w_out, kh, kw):
    """Input row (n, r)'s lagged products with the rows below it, for every lag.

    Rows in [kh - 1, h_out) lie in every row window: their sums go to ``inner_n``
    (lag by column offset) and reach every row pair of their lag at the end; edge
    rows add theirs to the row pairs they belong to directly.
    """
    height = x.shape[1]
    src1 = x[n, r]
    a_lo = max(0, r - h_out + 1)
    is_inner = kh - 1 <= r < h_out
    for da in range(min(kh, height - r)):
        a_hi = min(kh - 1 - da, r)
        if a_lo > a_hi:
            continue
        src2 = x[n, r + da]
        for db in range(-(kw - 1) if da > 0 else 0, kw):
            b_lo = max(0, -db)
            b_hi = kw - 1 - max(0, db)
            _fit_lag_sums(part, edge, src1, src2, db, b_lo, b_hi, kw, w_out)
            if is_inner:
                acc = inner_n[da * (2 * kw - 1) + db + kw - 1]
                for b1 in range(b_lo, b_hi + 1):
                    acc[b1] += part[b1]
            else:
                for a1 in range(a_lo, a_hi + 1):
                    for b1 in range(b_lo, b_hi + 1):
                        g[a1 * kw + b1, (a1 + da) * kw + b1 + db] += part[b1]


@njit(fastmath=FASTMATH, **INNER)
def _fit_inner_to_gram(g, inner_n, kh, kw):
    """Add the inner rows' sums of each lag to every row pair of that lag."""
    for da in range(kh):
        for db in range(-(kw - 1) if da > 0 else 0, kw):
            acc = inner_n[da * (2 * kw - 1) + db + kw - 1]
            for a1 in range(kh - da):
                for b1 in range(max(0, -db), kw - max(0, db)):
                    g[a1 * kw + b1, (a1 + da) * kw + b1 + db] += acc[b1]


@njit(inline="always")
def _fit_take_out(g, p, x, n, i, j, kh, kw):
    """Subtract the patch of output pixel (n, i, j) (stride 1) from g's upper triangle."""
    taps = kh * kw
    for a in range(kh):
        for b in range(kw):
            p[a * kw + b] = x[n, i + a, j + b]
    for t1 in range(taps):
        for t2 in range(t1, taps):
            g[t1, t2] -= p[t1] * p[t2]


@njit(fastmath=FASTMATH, **ENTRY)
def fit_gather(x, y, mask, drop, sh, sw, kh, kw, toeplitz, gram, moments, part, parts):
    """Accumulate the fit's statistics into per-chunk partial sums (the caller adds them up).

    x (N, Hx, Wx), y and mask (N, Ho, Wo), all float64; gram (T, N, K, K) and moments
    (T, N, 2K + 3) zeroed float64, K = kh * kw. Only the upper triangle of gram is filled.

    With ``toeplitz`` (stride 1 only) the Gram matrix is built from the picture's lagged
    products: entry (a1, b1), (a1 + da, b1 + db) is the sum of x[r, q] * x[r + da, q + db]
    over a rectangle, and the rectangles of one lag differ only near the picture's edges. So
    each input row costs one dot product per lag, (2 kw - 1) kh - kw + 1 of them, instead of
    K (K + 1) / 2 per output row; it counts every pixel, and the pixels listed in ``drop``
    (rows of n, i, j: weight 0) are then taken out again one by one. Otherwise the patches'
    products are summed directly, weighted by ``mask``, for any stride.
    """
    h_out, w_out = y.shape[1], y.shape[2]
    n_chunks = gram.shape[0]
    # each chunk sums its own share of rows into its own gram[t], moments[t]: no races
    start, stop = _share(n_chunks, part, parts)
    for t in range(start, stop):
        g, m = gram[t], moments[t]
        _fit_rows(t, n_chunks, x, y, mask, sh, sw, kh, kw, toeplitz, g, m)
        if toeplitz:
            _fit_lags(t, n_chunks, x, drop, h_out, w_out, kh, kw, g)


@njit(fastmath=FASTMATH, **INNER)
def _fit_rows(t, n_chunks, x, y, mask, sh, sw, kh, kw, toeplitz, gram, moments):
    """Chunk t of the output rows: their moments, and their patches' products unless
    ``toeplitz``. Compiled on its own, once, and called: the fit's entry kernel is
    kept short, for a short compile."""
    n_img = x.shape[0]
    h_out, w_out = y.shape[1], y.shape[2]
    rows = n_img * h_out
    u = np.empty(w_out)
    ym = np.empty(w_out)
    for q in range(t * rows // n_chunks, (t + 1) * rows // n_chunks):
        n = q // h_out
        i = q % h_out
        mrow = mask[n, i]
        _fit_row_moments(moments[n], x, n, i, y[n, i], mrow, ym, sh, sw, kh, kw)
        if not toeplitz:
            _fit_row_gram(gram[n], x, n, i, mrow, u, sh, sw, kh, kw)


@njit(inline="always")
def _fit_lags(t, n_chunks, x, drop, h_out, w_out, kh, kw, gram):
    """Chunk t of the Toeplitz path: every input row's lagged products with the rows
    below it, then the dropped pixels taken out again (they were counted).

    Inlined into :func:`fit_gather`, which numba compiles knowing its arrays apart
    (LLVM's noalias): compiled as a function of its own it ran 10-15% slower."""
    n_img, height, _ = x.shape
    in_rows = n_img * height
    inner = np.zeros((n_img, kh * (2 * kw - 1), kw))
    edge = np.empty(kw)
    part = np.empty(kw)
    for q in range(t * in_rows // n_chunks, (t + 1) * in_rows // n_chunks):
        n = q // height
        r = q % height
        _fit_row_lags(gram[n], inner[n], part, edge, x, n, r, h_out, w_out, kh, kw)
    for n in range(n_img):
        _fit_inner_to_gram(gram[n], inner[n], kh, kw)
    n_drop = drop.shape[0]
    p = np.empty(kh * kw)
    for k in range(t * n_drop // n_chunks, (t + 1) * n_drop // n_chunks):
        _fit_take_out(gram[drop[k, 0]], p, x, drop[k, 0], drop[k, 1], drop[k, 2], kh, kw)


# The iterations' arithmetic, one loop each, in the original order of operations. Each
# helper takes only arrays it uses unconditionally: numba counts references to the arrays
# a helper is given, and where it cannot pair an increment with its decrement (an array
# used under a branch or across two loops) two atomic operations stay in every call,
# which costs more than a whole step of a small fit (measured: 2x for a 3x3 kernel).
# So fit_iterate keeps the control flow of both methods, branches and all.


@njit(inline="always")
def _fit_error(w, w_best, e):
    """e = w - w*."""
    for k in range(w.shape[0]):
        e[k] = w[k] - w_best[k]


@njit(inline="always")
def _fit_gradient(gram, e, w, grad):
    """grad = G e; return e' G e, |grad|^2 and |w|^2 (one pass, as the stop test needs)."""
    n = e.shape[0]
    quad = 0.0
    gn = 0.0
    wn = 0.0
    for k in range(n):
        acc = 0.0
        for j in range(n):
            acc += gram[k, j] * e[j]
        grad[k] = acc
        quad += e[k] * acc
        gn += acc * acc
        wn += w[k] * w[k]
    return quad, gn, wn


@njit(inline="always")
def _fit_pr_beta(grad, g_prev):
    """Polak-Ribiere's beta (clipped at 0: a restart when the gradient turns back)."""
    num = 0.0
    den = 0.0
    for k in range(grad.shape[0]):
        num += grad[k] * (grad[k] - g_prev[k])
        den += g_prev[k] * g_prev[k]
    return max(0.0, num / den) if den > 0.0 else 0.0


@njit(inline="always")
def _fit_direction(grad, d, beta):
    """d = beta d - grad; return the slope grad . d."""
    slope = 0.0
    for k in range(grad.shape[0]):
        d[k] = beta * d[k] - grad[k]
        slope += grad[k] * d[k]
    return slope


@njit(inline="always")
def _fit_steepest(grad, d):
    """d = -grad, the restart's direction; return the slope -|grad|^2."""
    slope = 0.0
    for k in range(grad.shape[0]):
        d[k] = -grad[k]
        slope -= grad[k] * grad[k]
    return slope


@njit(inline="always")
def _fit_curvature(gram, d):
    """d' G d: the loss's curvature along d, for the exact line search."""
    n = d.shape[0]
    curv = 0.0
    for k in range(n):
        acc = 0.0
        for j in range(n):
            acc += gram[k, j] * d[j]
        curv += d[k] * acc
    return curv


@njit(cache=True)
def fit_iterate(method, gram, w, w_best, r_best, scalars, it, stop, max_iter, state, history):
    """Run the fit's iterations ``it`` .. ``stop - 1`` on its statistics; return (it, code).

    scalars = (loss_min, lr, tol, floor_w, floor_c). The loss of w is
    loss_min + (w - w*)' G (w - w*) / 2, with w* the least-squares kernel and G the
    patches' Gram matrix over m: in exact arithmetic the chapter's sum((z - y)^2) / 2 / m,
    but free of the cancellation that (w'Gw - 2c'w + s) / 2 suffers near the minimum. The
    gradient G (w - w*) + r_best, with r_best = G w* - c, is G w - c: the chapter's dw / m.

    Each iteration first records and checks the loss, then updates w, as the chapter does.
    Codes: 1, loss < tol; 2, at the minimum (|G (w - w*)| <= floor_w |w| + floor_c: what
    is left is rounding); 3, it == max_iter; 4, the loss is not finite; 0, reached ``stop``.
    method 0 is gradient descent with step lr; 1 is conjugate gradient: Polak-Ribiere with
    the exact line search, which on a quadratic is linear CG, restarted with the steepest
    descent every n steps and whenever rounding spoils the direction. ``state`` carries
    CG's direction, last gradient and steps since the last restart between calls (2n + 1).
    """
    n = w.shape[0]
    loss_min, lr, tol, floor_w, floor_c = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4]
    d = state[:n]
    g_prev = state[n : 2 * n]
    e = np.empty(n)
    grad = np.empty(n)
    it0 = it
    while it < stop:
        _fit_error(w, w_best, e)
        quad, gn, wn = _fit_gradient(gram, e, w, grad)
        loss = loss_min + 0.5 * quad
        history[it - it0] = loss
        if not np.isfinite(loss):
            return it, 4
        if loss < tol:
            return it, 1
        if np.sqrt(gn) <= floor_w * np.sqrt(wn) + floor_c:
            return it, 2
        if it >= max_iter:
            return it, 3
        for k in range(n):
            grad[k] += r_best[k]
        if method == 0:  # gradient descent
            for k in range(n):
                w[k] -= lr * grad[k]
            it += 1
            continue
        # conjugate gradient
        beta = _fit_pr_beta(grad, g_prev) if state[2 * n] > 0 else 0.0
        slope = _fit_direction(grad, d, beta)
        if slope >= 0.0:  # rounding has spoilt the direction: restart
            slope = _fit_steepest(grad, d)
            state[2 * n] = 0
        curv = _fit_curvature(gram, d)
        if curv <= 0.0:  # no curvature left along d: nothing more to gain
            return it, 2
        alpha = -slope / curv
        for k in range(n):
            w[k] += alpha * d[k]
            g_prev[k] = grad[k]
        state[2 * n] += 1
        if state[2 * n] >= n:
            state[2 * n] = 0
        it += 1
    return it, 0
