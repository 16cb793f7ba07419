"""The few layers MTCNN needs, in NumPy, NHWC, float32.

Convolutions are im2col + one BLAS matmul per layer: the window view is free, the one copy
into a contiguous (positions x kh*kw*C) matrix is the only data movement, and the matmul runs
on every core. That is what makes a NumPy-only cascade fast enough on a Pi.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid, stride-1 convolution. ``x`` (N,H,W,C); ``weight`` (kh,kw,C,K) as Keras stores it."""
    kh, kw, c, k = weight.shape
    n, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    if kh == 1 and kw == 1:
        cols = x.reshape(-1, c)
    else:
        # (N, Ho, Wo, C, kh, kw) view -> (N, Ho, Wo, kh, kw, C) -> rows of kh*kw*C
        win = sliding_window_view(x, (kh, kw), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        cols = win.reshape(n * ho * wo, kh * kw * c)
    out = cols @ weight.reshape(kh * kw * c, k)
    out += bias
    return out.reshape(n, ho, wo, k)


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = x @ weight
    out += bias
    return out


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """PReLU with one slope per channel (last axis), in place.

    With every slope <= 1 (most MTCNN layers) PReLU is ``max(x, a * x)``: one temporary and
    two passes. Otherwise ``x + (a - 1) * min(x, 0)``: three passes. This layer follows every
    convolution, so the pass count shows in the frame time.
    """
    a = alpha.reshape(-1)
    if a.max() <= 1.0:
        return np.maximum(x, np.multiply(x, a), out=x)
    neg = np.minimum(x, 0.0)
    neg *= a - 1.0
    x += neg
    return x


def max_pool(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    """Max pooling with TensorFlow's 'same' or 'valid' padding (Caffe ceil mode == 'same' here).

    Separable: the max over rows, then over columns of that (2 * size passes, not size**2).
    'same' pads at the bottom/right only in MTCNN; those windows simply take the max of the
    rows/columns that exist, so no padded copy of the tensor is made. A top/left pad (not
    met in MTCNN) falls back to an explicit -inf border.
    """
    h, w = x.shape[1:3]
    if padding == "same":
        ho, wo = math.ceil(h / stride), math.ceil(w / stride)
        pad_h = max((ho - 1) * stride + size - h, 0)
        pad_w = max((wo - 1) * stride + size - w, 0)
        if pad_h > 1 or pad_w > 1:
            top, left = pad_h // 2, pad_w // 2
            padded = np.full((x.shape[0], h + pad_h, w + pad_w, x.shape[3]), -np.inf, x.dtype)
            padded[:, top : top + h, left : left + w] = x
            return max_pool(padded, size, stride, "valid")
    elif padding == "valid":
        ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    else:
        raise ValueError(f"unknown padding {padding!r}")
    rows = _max_along(x, 1, size, stride, ho)
    return _max_along(rows, 2, size, stride, wo)


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
