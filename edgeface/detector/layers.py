"""The few layers MTCNN needs, in NumPy, float32.

Convolutions are im2col + one BLAS matmul per layer: the window view is free, and the one
copy into a contiguous (positions x kh*kw*C) matrix is the only data movement. That is what
makes a NumPy-only cascade fast enough on a Pi. The matmul runs on one BLAS thread: the other
cores run helper processes (:mod:`edgeface.detector.helper`, :mod:`edgeface.blas_threads`).

Two layouts, because NumPy is fast over long contiguous runs and slow over short ones:

* **NHWC** (channels last) for R-Net and O-Net: their crops are small (24 or 48 px), so a
  row of a feature map is short, and the channels (28-128) are the longest run.
* **Planar** (channel-first, ``(C, N, H, W)``) for P-Net: its pyramid levels are wide (up to
  ~190 px at 640x480) and have only 10-32 channels. Planar convolutions work at "full-width"
  positions: output ``(y, x)`` sits where input ``(y, x)`` is, the last ``kw - 1`` columns
  and ``kh - 1`` rows of each image are unused, and so every im2col row is one strided copy
  of whole images (:func:`im2col_planar`). The bias rides in the matmul as a row of ones.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid, stride-1 convolution. ``x`` (N,H,W,C); ``weight`` (kh,kw,C,K) as Keras stores it."""
    kh, kw, c, k = weight.shape
    n, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    # (N, Ho, Wo, C, kh, kw) view -> (N, Ho, Wo, kh, kw, C) -> rows of kh*kw*C
    win = sliding_window_view(x, (kh, kw), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    cols = win.reshape(n * ho * wo, kh * kw * c)
    out = cols @ weight.reshape(kh * kw * c, k)
    out += bias
    return out.reshape(n, ho, wo, k)


def to_planar(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> contiguous (C, N, H, W)."""
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2), dtype=np.float32)


def planar_weights(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, C, K) weights + bias -> (K, C*kh*kw + 1) rows for :func:`conv2d_planar`."""
    kh, kw, c, k = weight.shape
    rows = weight.transpose(3, 2, 0, 1).reshape(k, c * kh * kw)
    return np.ascontiguousarray(np.concatenate([rows, bias.reshape(k, 1)], axis=1), np.float32)


def conv2d_planar(x: np.ndarray, rows: np.ndarray, kernel: int) -> np.ndarray:
    """Valid, stride-1 ``kernel`` x ``kernel`` convolution of planar ``x`` (C, N, H, W).

    ``rows`` from :func:`planar_weights`. Returns (K, N, H, W) at full-width positions: the
    valid outputs are ``[:, :, :H - kernel + 1, :W - kernel + 1]``; the rest is finite filler.
    """
    _, n, h, w = x.shape
    out = rows @ im2col_planar(x, kernel, kernel)
    return out.reshape(len(rows), n, h, w)


def im2col_planar(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(C*kh*kw + 1, N*H*W) im2col of planar ``x`` (C, N, H, W), plus a row of ones.

    Row (c, dy, dx) at position (n, y*W + x) holds ``x[c, n, y + dy, x + dx]``. Positions
    whose window would leave the image (the last ``(kh-1)*W + kw-1`` of each) are zero.
    """
    c, n, h, w = x.shape
    hw = h * w
    valid = hw - (kh - 1) * w - (kw - 1)
    if h < kh or w < kw:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} input")
    x = np.ascontiguousarray(x, dtype=np.float32)
    cols = np.empty((c * kh * kw + 1, n, hw), np.float32)
    s = x.itemsize
    windows = as_strided(x, (c, kh, kw, n, valid), (n * hw * s, w * s, s, hw * s, s))
    rows = cols[:-1].reshape(c, kh, kw, n, hw)  # a view: cols is contiguous
    rows[..., :valid] = windows
    rows[..., valid:] = 0.0
    cols[-1] = 1.0
    return cols.reshape(c * kh * kw + 1, n * hw)


def conv2d_image(x: np.ndarray, rows: np.ndarray, kernel: int) -> np.ndarray:
    """:func:`conv2d` for an image-like NHWC input (R-Net's and O-Net's 3-channel crops).

    NHWC im2col would copy runs of 3 floats, and a bias pass over (positions x K) is slow for
    a narrow K; the planar im2col avoids both, and the transposed matmul still writes NHWC.
    Returns the contiguous (N, H, W, K) result at full-width positions (see
    :func:`conv2d_planar`): the valid outputs are ``[:, :H - kernel + 1, :W - kernel + 1]``.
    Cut after the activation: PReLU on the contiguous array is faster than on the cut view.
    ``rows`` from :func:`planar_weights`.
    """
    n, h, w, _ = x.shape
    out = im2col_planar(to_planar(x), kernel, kernel).T @ rows.T
    return out.reshape(n, h, w, len(rows))


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = x @ weight
    out += bias
    return out


def prelu(x: np.ndarray, alpha: np.ndarray, axis: int = -1) -> np.ndarray:
    """PReLU with one slope per channel (``axis``: -1 for NHWC, 0 for planar), in place.

    With every slope <= 1 (most MTCNN layers) PReLU is ``max(x, a * x)``: one temporary and
    two passes. Otherwise ``x + (a - 1) * min(x, 0)``: three passes. This layer follows every
    convolution, so the pass count shows in the frame time.

    Channels last, NumPy would run its inner loop over one pixel's 28-128 channels at a time;
    on a contiguous array the slopes are tiled along a whole row of pixels instead, so each
    inner loop is a row long (measured 0.6x the time on R-Net's first layer).
    """
    alpha = alpha.reshape(-1)
    if axis in (-1, x.ndim - 1) and x.ndim > 2 and x.flags.c_contiguous:
        row = x.shape[-2]
        x2 = x.reshape(-1, row * x.shape[-1])
        a = np.tile(alpha, row)
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        x2, a = x, alpha.reshape(shape)
    if alpha.max() <= 1.0:
        np.maximum(x2, np.multiply(x2, a), out=x2)
        return x
    neg = np.minimum(x2, 0.0)
    neg *= a - 1.0
    x2 += neg
    return x


def max_pool(
    x: np.ndarray, size: int, stride: int, padding: str, axes: tuple[int, int] = (1, 2)
) -> np.ndarray:
    """Max pooling with TensorFlow's 'same' or 'valid' padding (Caffe ceil mode == 'same' here).

    Pools over ``axes`` (rows, columns): (1, 2) for NHWC, (2, 3) for channel-first data.
    Separable: the max over rows, then over columns of that (2 * size passes, not size**2).
    'same' pads at the bottom/right only in MTCNN; those windows simply take the max of the
    rows/columns that exist, so no padded copy of the tensor is made. A top/left pad (not
    met in MTCNN) falls back to an explicit -inf border.
    """
    row_axis, col_axis = axes
    h, w = x.shape[row_axis], x.shape[col_axis]
    if padding == "same":
        ho, wo = math.ceil(h / stride), math.ceil(w / stride)
        pad_h = max((ho - 1) * stride + size - h, 0)
        pad_w = max((wo - 1) * stride + size - w, 0)
        if pad_h > 1 or pad_w > 1:
            top, left = pad_h // 2, pad_w // 2
            shape = list(x.shape)
            shape[row_axis] += pad_h
            shape[col_axis] += pad_w
            padded = np.full(shape, -np.inf, x.dtype)
            inside = [slice(None)] * x.ndim
            inside[row_axis] = slice(top, top + h)
            inside[col_axis] = slice(left, left + w)
            padded[tuple(inside)] = x
            return max_pool(padded, size, stride, "valid", axes)
    elif padding == "valid":
        ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    else:
        raise ValueError(f"unknown padding {padding!r}")
    rows = _max_along(x, row_axis, size, stride, ho)
    return _max_along(rows, col_axis, size, stride, wo)


def _max_along(x: np.ndarray, axis: int, size: int, stride: int, n_out: int) -> np.ndarray:
    """Max over windows ``[i*stride, i*stride + size)`` of ``axis``, cut at the array's end."""
    n_in = x.shape[axis]

    def taps(offset: int) -> tuple[np.ndarray, int]:
        count = min(n_out, len(range(offset, n_in, stride)))
        index = [slice(None)] * x.ndim
        index[axis] = slice(offset, offset + (count - 1) * stride + 1, stride)
        return x[tuple(index)], count

    first, _ = taps(0)
    second, n = taps(1)
    if n == n_out:
        out = np.maximum(first, second)
    else:
        out = first.copy()
        _head(out, axis, n)[...] = np.maximum(_head(first, axis, n), second)
    for offset in range(2, size):
        tap, n = taps(offset)
        head = _head(out, axis, n)
        np.maximum(head, tap, out=head)
    return out


def _head(x: np.ndarray, axis: int, n: int) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, n)
    return x[tuple(index)]


def softmax_face_probability(logits: np.ndarray) -> np.ndarray:
    """P(face) from 2-way logits on the last axis, computed stably."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def flatten_caffe_order(x: np.ndarray) -> np.ndarray:
    """Flatten NHWC as the original Caffe nets did: H and W swapped before flattening."""
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(x.shape[0], -1)
