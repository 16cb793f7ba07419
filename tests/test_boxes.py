"""Box arithmetic of the cascade: NMS in both modes, regression, squaring, border padding."""

from __future__ import annotations

import numpy as np

from edgeface.detector import boxes as B


def test_nms_union_keeps_best_of_overlapping_and_distant_boxes() -> None:
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 59, 59]], float)
    scores = np.array([0.8, 0.9, 0.7])
    keep = B.nms(boxes, scores, 0.5, "union")
    assert keep.tolist() == [1, 2]  # best first; box 0 overlaps box 1 with IoU 0.68


def test_nms_min_mode_removes_box_nested_in_a_larger_one() -> None:
    big = [0, 0, 99, 99]
    small = [10, 10, 29, 29]  # IoU 0.04, but entirely inside: overlap / min area = 1
    boxes = np.array([big, small], float)
    scores = np.array([0.9, 0.95])
    assert sorted(B.nms(boxes, scores, 0.7, "union").tolist()) == [0, 1]
    assert B.nms(boxes, scores, 0.7, "min").tolist() == [1]


def test_nms_handles_empty_input_and_threshold_edge() -> None:
    assert B.nms(np.empty((0, 4)), np.empty(0), 0.5).size == 0
    # identical boxes: IoU 1.0 is above any threshold < 1
    boxes = np.array([[0, 0, 9, 9]] * 3, float)
    assert B.nms(boxes, np.array([0.1, 0.3, 0.2]), 0.99).tolist() == [1]


def test_regression_uses_inclusive_box_size() -> None:
    box = np.array([[10.0, 20.0, 19.0, 39.0]])  # 10 x 20 pixels
    out = B.regress(box, np.array([[0.1, -0.1, 0.2, 0.5]]))
    np.testing.assert_allclose(out, [[11.0, 18.0, 21.0, 49.0]])


def test_square_grows_short_side_around_centre() -> None:
    out = B.square(np.array([[10.0, 0.0, 30.0, 40.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0, 40.0, 40.0]])


def test_crop_inside_image_matches_resize_of_the_region() -> None:
    image = np.arange(100 * 100, dtype=np.float32).reshape(100, 100, 1) / 100.0
    patch = B.crop_patches(image, np.array([[0.0, 0.0, 99.0, 99.0]]), 100)[0, :, :, 0]
    # corner-to-corner sampling of the whole image at full size is (almost) the identity
    np.testing.assert_allclose(patch, image[:, :, 0], atol=1.0)


def test_crop_pads_with_zeros_where_the_box_leaves_the_image() -> None:
    image = np.ones((50, 50, 3), np.float32)
    # box twice the image, centred on the top-left corner: 3/4 of the crop is outside
    patch = B.crop_patches(image, np.array([[-50.0, -50.0, 49.0, 49.0]]), 24)[0]
    assert patch.shape == (24, 24, 3)
    assert np.all(patch[:10, :10] == 0.0)  # outside (top-left quadrant)
    assert np.all(patch[14:, 14:] == 1.0)  # inside
    # completely outside: all zeros, no exception
    far = B.crop_patches(image, np.array([[200.0, 200.0, 260.0, 260.0]]), 24)
    assert np.all(far == 0.0)


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(B.iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_reference_nms_lets_suppressed_boxes_suppress_but_greedy_does_not() -> None:
    # A overlaps B, B overlaps C, A does not overlap C
    boxes = np.array([[0, 0, 9, 9], [4, 0, 13, 9], [8, 0, 17, 9]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert B.nms(boxes, scores, 0.3).tolist() == [0]
    assert B.nms(boxes, scores, 0.3, greedy=True).tolist() == [0, 2]


def test_blocked_nms_equals_the_plain_definition_on_many_boxes(rng: np.random.Generator) -> None:
    centres = rng.uniform(0, 300, (1500, 2))
    sizes = rng.uniform(10, 60, 1500)
    boxes = np.c_[centres - sizes[:, None] / 2, centres + sizes[:, None] / 2]
    scores = rng.random(1500)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]
    expected = []
    for i in range(len(ranked)):
        if i == 0:
            expected.append(order[0])
            continue
        x1 = np.maximum(ranked[:i, 0], ranked[i, 0])
        y1 = np.maximum(ranked[:i, 1], ranked[i, 1])
        x2 = np.minimum(ranked[:i, 2], ranked[i, 2])
        y2 = np.minimum(ranked[:i, 3], ranked[i, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (ranked[:, 2] - ranked[:, 0]) * (ranked[:, 3] - ranked[:, 1])
        iou = inter / (area[:i] + area[i] - inter)
        if not np.any(iou > 0.5):
            expected.append(order[i])
    assert B.nms(boxes, scores, 0.5).tolist() == [int(v) for v in expected]


def test_crops_from_a_window_equal_crops_from_the_whole_frame(rng: np.random.Generator) -> None:
    frame = rng.random((120, 160, 3), dtype=np.float32)
    boxes = np.array([[30.4, 20.7, 70.2, 60.5], [-8.0, 90.0, 20.0, 130.0], [140, 5, 175, 40.0]])
    x0, y0, x1, y1 = B.window_around(boxes, frame.shape)
    assert (x0, y0, x1, y1) == (0, 4, 160, 120)  # clipped to the frame
    for size in (24, 48):
        whole = B.crop_patches(frame, boxes, size)
        part = B.crop_patches(
            frame[y0:y1, x0:x1], boxes, size, origin=(x0, y0), frame_shape=frame.shape[:2]
        )
        np.testing.assert_allclose(part, whole, atol=1e-5)  # float32 sample maps
    inner = boxes[:1]
    x0, y0, x1, y1 = B.window_around(inner, frame.shape)
    assert (x0, y0, x1, y1) == (29, 19, 73, 63)
    part = B.crop_patches(
        frame[y0:y1, x0:x1], inner, 48, origin=(x0, y0), frame_shape=frame.shape[:2]
    )
    np.testing.assert_allclose(part, B.crop_patches(frame, inner, 48), atol=1e-5)
