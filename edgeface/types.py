"""Small typed records passed between the detector, aligner, embedder and their callers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    ``box`` is ``(x1, y1, x2, y2)`` as floats; ``landmarks`` is a ``(5, 2)`` array of
    ``(x, y)`` points in the order left eye, right eye, nose, left mouth corner, right mouth
    corner *as seen in the image* (the ArcFace template order).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Side of the face in pixels (the smaller box side), as the min-face-size uses it."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form used by the CLI and the fixtures."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }
