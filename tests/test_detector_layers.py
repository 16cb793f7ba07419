"""The cascade's speed-motivated building blocks equal their plain definitions.

Each fast path here (separable pooling without a padded copy, two-pass PReLU, the integral-
image pyramid, the planar convolutions) replaced a slower obvious version; these tests pin
them to that version.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.detector import layers as L
from edgeface.detector.mtcnn import pyramid_scales
from edgeface.detector.normalize import normalize
from edgeface.detector.pyramid import AreaPyramid
from edgeface.imaging import load_image


def naive_max_pool(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    """TensorFlow pooling by definition: -inf padding split top/bottom, a loop over windows."""
    h, w = x.shape[1:3]
    if padding == "same":
        ho, wo = math.ceil(h / stride), math.ceil(w / stride)
        pad_h = max((ho - 1) * stride + size - h, 0)
        pad_w = max((wo - 1) * stride + size - w, 0)
        padded = np.full((x.shape[0], h + pad_h, w + pad_w, x.shape[3]), -np.inf, x.dtype)
        padded[:, pad_h // 2 : pad_h // 2 + h, pad_w // 2 : pad_w // 2 + w] = x
        x = padded
    else:
        ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.empty((x.shape[0], ho, wo, x.shape[3]), x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride : i * stride + size, j * stride : j * stride + size]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2), (3, 1), (4, 2), (5, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_max_pool_equals_the_definition(size: int, stride: int, padding: str) -> None:
    rng = np.random.default_rng(size * 10 + stride)
    for h in range(size, 14):
        for w in (size, size + 1, 13):
            x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
            got = L.max_pool(x, size, stride, padding)
            want = naive_max_pool(x, size, stride, padding)
            assert got.shape == want.shape, (h, w)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "slopes",
    [[0.25, -0.4, 0.0, 1.0], [1.3, -0.65, 0.05, 0.9]],  # all <= 1 (two-pass path), and one > 1
)
def test_prelu_equals_the_definition(slopes: list[float]) -> None:
    rng = np.random.default_rng(1)
    alpha = np.asarray(slopes, np.float32)
    # contiguous NHWC (slopes tiled along a row), a cut view (per-pixel broadcast), planar
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    view = rng.standard_normal((2, 4, 6, 4)).astype(np.float32)[:, :3, :5]
    planar = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    want = np.where(x > 0, x, x * alpha)
    # the slope > 1 path computes x + (a - 1) * min(x, 0): equal up to one rounding
    close = {"rtol": 1e-6, "atol": 1e-7}
    np.testing.assert_allclose(L.prelu(x.copy(), alpha), want, **close)
    want_view = np.where(view > 0, view, view * alpha)
    got = L.prelu(view, alpha)
    assert got is view  # in place, also on a view
    np.testing.assert_allclose(got, want_view, **close)
    got = L.prelu(planar, alpha, axis=0).transpose(1, 2, 3, 0)
    np.testing.assert_allclose(got, want, **close)


def naive_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid convolution by definition, NHWC, a loop over kernel taps, in float64."""
    kh, kw, _, k = weight.shape
    n, h, w, _ = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, k)) + bias
    for dy in range(kh):
        for dx in range(kw):
            out += x[:, dy : dy + h - kh + 1, dx : dx + w - kw + 1] @ weight[dy, dx]
    return out


@pytest.mark.parametrize("channels,kernel", [(3, 3), (3, 2), (10, 3), (16, 1)])
def test_convolutions_equal_the_definition(channels: int, kernel: int) -> None:
    rng = np.random.default_rng(channels + kernel)
    weight = rng.standard_normal((kernel, kernel, channels, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    for n, h, w in [(1, 12, 12), (3, 13, 17), (2, 24, 24)]:
        x = rng.standard_normal((n, h, w, channels)).astype(np.float32)
        want = naive_conv2d(x.astype(np.float64), weight, bias)
        rows = L.planar_weights(weight, bias)
        np.testing.assert_allclose(L.conv2d(x, weight, bias), want, rtol=1e-4, atol=1e-4)
        # NHWC in and out through the planar im2col (R-Net's and O-Net's first layer)
        got = L.conv2d_image(x, rows, kernel)[:, : h - kernel + 1, : w - kernel + 1]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        # planar at full-width positions: the valid corner is the convolution
        full = L.conv2d_planar(L.to_planar(x), rows, kernel)
        assert full.shape == (7, n, h, w) and np.isfinite(full).all()
        valid = full[:, :, : h - kernel + 1, : w - kernel + 1].transpose(1, 2, 3, 0)
        np.testing.assert_allclose(valid, want, rtol=1e-4, atol=1e-4)


def test_planar_pooling_equals_nhwc_pooling() -> None:
    x = np.random.default_rng(7).standard_normal((2, 11, 14, 5)).astype(np.float32)
    planar = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    for size, stride, padding in [(2, 2, "same"), (3, 2, "same"), (3, 2, "valid")]:
        got = L.max_pool(planar, size, stride, padding, axes=(2, 3)).transpose(1, 2, 3, 0)
        np.testing.assert_array_equal(got, naive_max_pool(x, size, stride, padding))


def test_planar_convolution_refuses_a_kernel_larger_than_the_input() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        L.im2col_planar(np.zeros((3, 1, 2, 2), np.float32), 3, 3)


def test_pyramid_equals_opencv_area_resize_of_the_normalized_frame(shared_data: Path) -> None:
    photo = load_image(shared_data / "detection" / "dlib_faces" / "2008_001322.jpg")
    frame = np.ascontiguousarray(photo[:301, :397])  # odd sizes: fractional box edges
    h, w = frame.shape[:2]
    reference = normalize(frame)
    pyramid = AreaPyramid(frame, reference)
    sizes = [(int(w * s), int(h * s)) for s in pyramid_scales(h, w, 20, 0.709)]
    sizes += [(w, h), (1, 1), (w - 1, 7)]
    for size in sizes:
        want = cv2.resize(reference, size, interpolation=cv2.INTER_AREA)
        got = pyramid.level(*size)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=str(size))
        # the integral-image path on its own, whatever size the cost rule picks it for
        integral = pyramid._from_integral(*size)
        np.testing.assert_allclose(integral, want, rtol=0, atol=1e-6, err_msg=str(size))


def test_pyramid_refuses_sizes_it_cannot_make() -> None:
    frame = np.zeros((10, 20, 3), np.uint8)
    pyramid = AreaPyramid(frame, normalize(frame))
    for width, height in [(0, 5), (21, 5), (5, 11)]:
        with pytest.raises(ValueError, match="must be within"):
            pyramid.level(width, height)
    with pytest.raises(ValueError, match="uint8"):
        AreaPyramid(frame.astype(np.float32), normalize(frame))
    with pytest.raises(ValueError, match="normalized frame"):
        AreaPyramid(frame, normalize(frame[:5]))
