"""P-Net, R-Net and O-Net as NumPy sessions over the pickle-free weight file.

They implement the same ``InferenceSession`` shape as the ONNX Runtime and LiteRT backends
(``info`` + ``run``), so the cascade stages do not care which one they drive. Outputs:
P-Net ``[prob (N,H,W), box (N,H,W,4)]``; R-Net ``[prob (N,), box (N,4)]``;
O-Net ``[prob (N,), box (N,4), landmarks (N,10)]``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeface.backends.base import SessionInfo
from edgeface.backends.registry import get_backend
from edgeface.detector import layers as L
from edgeface.errors import ModelError

INPUT_SIZES: dict[str, int | None] = {"pnet": None, "rnet": 24, "onet": 48}


def load_weights(path: Path, net: str) -> dict[str, np.ndarray]:
    """Arrays of one net from the .npz; ``allow_pickle=False`` so a hostile file cannot run code."""
    prefix = f"{net}."
    try:
        with np.load(path, allow_pickle=False) as data:
            weights = {
                k[len(prefix) :]: data[k].astype(np.float32) for k in data if k.startswith(prefix)
            }
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a readable MTCNN weight file ({exc})") from exc
    if not weights:
        raise ModelError(f"{path}: has no '{net}' weights")
    return weights


class NumpyMTCNNSession:
    """One MTCNN network evaluated with :mod:`edgeface.detector.layers`."""

    def __init__(self, path: Path, *, net: str) -> None:
        if net not in INPUT_SIZES:
            raise ModelError(f"unknown MTCNN network '{net}'")
        self.net = net
        self.w = load_weights(Path(path), net)
        size = INPUT_SIZES[net]
        self.info = SessionInfo(
            input_shape=(None, size, size, 3),
            input_layout=get_backend("numpy").layout,
            backend="numpy",
            path=Path(path),
        )
        self._forward = {"pnet": self._pnet, "rnet": self._rnet, "onet": self._onet}[net]
        try:
            self._heads_w, self._heads_b = self._merge_heads()
            w = self.w
            planar = (1, 2, 3) if net == "pnet" else (1,)  # P-Net planar; R/O-Net's conv1
            self._planar = {i: L.planar_weights(w[f"conv{i}.w"], w[f"conv{i}.b"]) for i in planar}
            self._forward(np.zeros((1, size or 12, size or 12, 3), np.float32))
        except (KeyError, ValueError) as exc:
            raise ModelError(
                f"{path}: '{net}' weights have the wrong names or shapes ({exc})"
            ) from exc

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self._forward(np.ascontiguousarray(x, dtype=np.float32))

    def _block(self, x: np.ndarray, i: int) -> np.ndarray:
        """conv + PReLU of R-Net and O-Net; their first conv sees the 3-channel crops."""
        w = self.w
        if i > 1:
            return L.prelu(L.conv2d(x, w[f"conv{i}.w"], w[f"conv{i}.b"]), w[f"prelu{i}"])
        kernel = w["conv1.w"].shape[0]
        _, h, width, _ = x.shape
        x = L.prelu(L.conv2d_image(x, self._planar[1], kernel), w["prelu1"])
        return x[:, : h - kernel + 1, : width - kernel + 1]

    def _merge_heads(self) -> tuple[np.ndarray, np.ndarray]:
        """The score, box (and landmark) heads read the same features: one matmul for all."""
        names = ["score", "box"] + (["landmarks"] if self.net == "onet" else [])
        w = np.concatenate([self.w[f"{n}.w"] for n in names], axis=-1)
        return w, np.concatenate([self.w[f"{n}.b"] for n in names])

    def _heads(self, x: np.ndarray) -> list[np.ndarray]:
        """[P(face), box offsets(, landmarks)] from the merged head output (R-Net, O-Net)."""
        out = L.dense(x, self._heads_w, self._heads_b)
        prob = L.softmax_face_probability(out[..., 0:2])
        return [prob, out[..., 2:6]] + ([out[:, 6:16]] if self.net == "onet" else [])

    def _pnet(self, x: np.ndarray) -> list[np.ndarray]:
        """P-Net in the planar layout (see :mod:`~edgeface.detector.layers`): levels are wide."""
        w = self.w
        _, _, h, width = (x := L.to_planar(x)).shape
        x = L.prelu(L.conv2d_planar(x, self._planar[1], 3), w["prelu1"], axis=0)
        x = L.max_pool(x[:, :, : h - 2, : width - 2], 2, 2, "same", axes=(2, 3))
        _, _, h, width = x.shape  # pooled, compact; conv2 and conv3 cut 2 + 2 rows/columns
        x = L.prelu(L.conv2d_planar(x, self._planar[2], 3), w["prelu2"], axis=0)
        x = L.prelu(L.conv2d_planar(x, self._planar[3], 3), w["prelu3"], axis=0)
        k = x.shape[0]
        out = self._heads_w.reshape(k, -1).T @ x.reshape(k, -1)  # 1x1 heads: no im2col
        out += self._heads_b[:, None]
        out = out.reshape(-1, *x.shape[1:])[:, :, : h - 4, : width - 4]
        heads = np.moveaxis(out, 0, -1)  # a view, channels last
        return [L.softmax_face_probability(heads[..., 0:2]), heads[..., 2:6]]

    def _rnet(self, x: np.ndarray) -> list[np.ndarray]:
        w = self.w
        x = L.max_pool(self._block(x, 1), 3, 2, "same")
        x = L.max_pool(self._block(x, 2), 3, 2, "valid")
        x = L.flatten_caffe_order(self._block(x, 3))
        return self._heads(L.prelu(L.dense(x, w["fc4.w"], w["fc4.b"]), w["prelu4"]))

    def _onet(self, x: np.ndarray) -> list[np.ndarray]:
        w = self.w
        x = L.max_pool(self._block(x, 1), 3, 2, "same")
        x = L.max_pool(self._block(x, 2), 3, 2, "valid")
        x = L.max_pool(self._block(x, 3), 2, 2, "same")
        x = L.flatten_caffe_order(self._block(x, 4))
        return self._heads(L.prelu(L.dense(x, w["fc5.w"], w["fc5.b"]), w["prelu5"]))
