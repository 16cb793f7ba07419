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
    """PReLU with one slope per channel (last axis), in place: x + (a - 1) * min(x, 0).

    One temporary and three passes, instead of the textbook max + a * min (two temporaries,
    four passes): this layer follows every convolution, so it is on the hot path.
    """
    neg = np.minimum(x, 0.0)
    neg *= alpha.reshape(-1) - 1.0
    x += neg
    return x


def max_pool(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    """Max pooling with TensorFlow's 'same' or 'valid' padding (Caffe ceil mode == 'same' here).

    Separable: the max over rows, then over columns of that (2 * size passes, not size**2).
    """
    h, w = x.shape[1:3]
    if padding == "same":
        ho, wo = math.ceil(h / stride), math.ceil(w / stride)
        pad_h = max((ho - 1) * stride + size - h, 0)
        pad_w = max((wo - 1) * stride + size - w, 0)
        if pad_h or pad_w:
            top, left = pad_h // 2, pad_w // 2
            padded = np.full((x.shape[0], h + pad_h, w + pad_w, x.shape[3]), -np.inf, x.dtype)
            padded[:, top : top + h, left : left + w] = x
            x = padded
    elif padding == "valid":
        ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    else:
        raise ValueError(f"unknown padding {padding!r}")
    span_h, span_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    rows = x[:, 0:span_h:stride].copy()
    for i in range(1, size):
        np.maximum(rows, x[:, i : i + span_h : stride], out=rows)
    out = rows[:, :, 0:span_w:stride].copy()
    for j in range(1, size):
        np.maximum(out, rows[:, :, j : j + span_w : stride], out=out)
    return out


def softmax_face_probability(logits: np.ndarray) -> np.ndarray:
    """P(face) from 2-way logits on the last axis, computed stably."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def flatten_caffe_order(x: np.ndarray) -> np.ndarray:
    """Flatten NHWC as the original Caffe nets did: H and W swapped before flattening."""
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(x.shape[0], -1)
