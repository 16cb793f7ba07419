"""The kiosk's optional head-turn challenge (``[verify] challenge = "head_turn"``) on real faces.

Frames go straight into the kiosk engine (real detector, embedder, encrypted gallery, audit
log), one every 0.2 s of engine time, so every run sees the same sequence. Colin Powell is
enrolled from other photos; the "person" is LFW photos of him: a frontal one, one with the head
turned (the nose near his left eye: landmark yaw +0.44, the frontal one -0.06), the frontal one
again. Mirrored, the same photos turn to his right. A printed photo tilted in front of the
camera is a photo under a perspective rotation of up to 60 degrees about its vertical axis:
the face narrows and the nose mostly stays between the eyes; his never counts as a turn, and
over 80 other people's photos few move the yaw that far (measured and bounded below).
(Liveness is off here: these are press photos; the passive check has its own tests.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from kiosk_support import SceneCamera, enroll_from_files, kiosk_config

from edgeface.errors import ConfigError
from edgeface.imaging import load_image
from edgeface.kiosk.challenge import LEFT, RIGHT

pytestmark = pytest.mark.slow
DT = 0.2


@pytest.fixture(scope="module")
def photos(lfw_dir: Path) -> dict[str, np.ndarray]:
    d = lfw_dir / "images"

    def img(name: str) -> np.ndarray:
        return load_image(d / name.rsplit("_", 1)[0] / f"{name}.jpg")

    frontal, turned = img("Colin_Powell_0033"), img("Colin_Powell_0016")
    return {
        "frontal": frontal,
        "turned_left": turned,
        "frontal_mirrored": frontal[:, ::-1].copy(),
        "turned_right": turned[:, ::-1].copy(),
        "stranger": img("Tony_Blair_0002"),
    }


def tilted(img: np.ndarray, degrees: float, distance: float = 300.0) -> np.ndarray:
    """``img`` as a flat print rotated about its vertical centre line, seen by a pinhole
    camera ``distance`` pixels away (strong perspective for a 250 px photo)."""
    h, w = img.shape[:2]
    t = math.radians(degrees)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = []
    for x, y in src:
        dx, dy = x - w / 2, y - h / 2
        s = distance / (distance + dx * math.sin(t))
        dst.append([w / 2 + dx * math.cos(t) * s, h / 2 + dy * s])
    m = cv2.getPerspectiveTransform(src, np.float32(dst))
    return cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


class Kiosk:
    """An engine fed by hand; ``feed`` plays frames 0.2 s apart and returns what the screen
    showed after each."""

    def __init__(self, engine: Any, iid: str) -> None:
        self.engine = engine
        self.iid = iid
        self.t = engine.clock()
        self.seq = 0

    def feed(self, frames: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        shown = []
        for f in frames:
            self.seq += 1
            self.t += DT
            self.engine._expire(self.t)
            self.engine.process(f, self.seq, self.t)
            with self.engine._state:
                r = self.engine.result
                ch = self.challenge
            shown.append(
                {
                    "result": None if r is None else (r.kind, r.detail),
                    "challenge": None if ch is None else (ch.side, ch.turned),
                }
            )
        return shown

    @property
    def challenge(self) -> Any:
        """The challenge in progress (None when there is none)."""
        pending = self.engine._pending
        return None if pending is None else pending.challenge

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = self.engine.audit.path.read_text().splitlines()
        recs = [json.loads(x) for x in lines]
        return [r for r in recs if event is None or r["event"] == event]


@pytest.fixture
def make_kiosk(pipeline: Any, lfw_dir: Path, tmp_path: Path) -> Iterator[Any]:
    from edgeface.kiosk.service import build_engine

    cfg = kiosk_config(
        tmp_path,
        verify={"challenge": "head_turn", "k": 2, "n": 3},
        lockout={"failures": 2, "global_failures": 10},
    )
    people = lfw_dir / "images" / "Colin_Powell"
    iid = enroll_from_files(cfg, pipeline, "Colin Powell", [people / "Colin_Powell_0004.jpg"])
    engines = []

    def make(side: str) -> Kiosk:
        engine = build_engine(
            cfg, source=SceneCamera({}), pipeline=pipeline, challenge_side=lambda: side
        )
        engines.append(engine)
        return Kiosk(engine, iid)

    yield make
    for e in engines:
        e.stop()


@pytest.mark.parametrize("side", [LEFT, RIGHT])
def test_turning_to_the_asked_side_and_back_is_welcomed(
    make_kiosk: Any, photos: dict[str, np.ndarray], side: str
) -> None:
    k = make_kiosk(side)
    front = photos["frontal" if side == LEFT else "frontal_mirrored"]
    turn = photos[f"turned_{side}"]
    shown = k.feed([front, front])  # 2-of-3: the match starts the challenge, no welcome yet
    assert shown[-1] == {"result": None, "challenge": (side, False)}
    assert k.engine.snapshot(None)["challenge"]["side"] == side
    assert not k.records("verify_accept")
    shown = k.feed([front, turn])
    assert shown[-1] == {"result": None, "challenge": (side, True)}  # turned: now look back
    shown = k.feed([front])
    assert shown[-1]["result"] == ("welcome", None) and shown[-1]["challenge"] is None
    (start,) = k.records("challenge_start")
    (accept,) = k.records("verify_accept")
    assert start["side"] == side and start["identity_id"] == k.iid
    assert accept["identity_id"] == k.iid and accept["challenge"] == side
    assert abs(accept["turned_yaw"]) > 0.4


def test_turning_the_other_way_fails_at_once_and_counts_for_the_lockout(
    make_kiosk: Any, photos: dict[str, np.ndarray]
) -> None:
    k = make_kiosk(RIGHT)  # asked right, the video turns left
    front, turn = photos["frontal"], photos["turned_left"]
    for _ in range(2):
        shown = k.feed([front, front, turn])
        assert shown[1]["challenge"] == (RIGHT, False)
        assert shown[2] == {"result": ("challenge_failed", "wrong_side"), "challenge": None}
        k.feed([front] * int(3.2 / DT))  # the result stays up; no new match meanwhile
    rejects = k.records("verify_reject")
    assert [r["reason"] for r in rejects] == ["challenge_wrong_side"] * 2
    assert all(r["identity_id"] == k.iid and r["side"] == RIGHT for r in rejects)
    assert k.records("lockout") and k.engine.snapshot(None)["locked_s"] > 0  # 2 failures
    assert not k.records("verify_accept")


def test_a_tilted_photo_never_turns(make_kiosk: Any, photos: dict[str, np.ndarray]) -> None:
    k = make_kiosk(LEFT)
    front = photos["frontal"]
    k.feed([front, front])
    assert k.challenge is not None
    baseline = k.challenge.baseline
    swing = [tilted(front, a) for a in (20, 40, 60, 40, 20, 0, -20, -40, -60, -40, -20, 0)]
    shown = k.feed(swing * 4)  # 9.6 s of waving the print, past the 8 s limit
    assert all(s["challenge"] == (LEFT, False) for s in shown[:30]), shown
    assert ("challenge_failed", "timeout") in [s["result"] for s in shown]
    assert not k.records("verify_accept")
    (rej,) = k.records("verify_reject")
    assert rej["reason"] == "challenge_timeout"
    # how far the print got, for the record: well short of the 0.45 a turn needs
    from edgeface.gallery.quality import pose

    moved = []
    for img in swing:
        faces = k.engine.pipeline.analyze(img)
        chosen = k.engine.pipeline.choose(faces, img.shape)
        if chosen is not None:
            moved.append(abs(pose(chosen.face.landmarks)[0] - baseline))
    assert len(moved) >= 10 and max(moved) < 0.4, moved
    print(f"\ntilted print: yaw moved at most {max(moved):.3f} from the match")


def test_tilted_prints_of_many_people_rarely_move_the_yaw_as_far_as_a_turn(
    pipeline: Any, lfw_dir: Path
) -> None:
    """A measurement with a loose bound: the first photo of every 20th LFW person, frontal
    (|yaw| <= 0.15), tilted 30/45/60 degrees each way with the camera 300 px away (close: a
    print filling the view). How far does the yaw move from the untilted photo, at most?"""
    from edgeface.gallery.quality import pose
    from edgeface.kiosk.challenge import ChallengeConfig

    def yaw(img: np.ndarray) -> float | None:
        chosen = pipeline.choose(pipeline.analyze(img), img.shape)
        return None if chosen is None else pose(chosen.face.landmarks)[0]

    turn = ChallengeConfig().turn_yaw
    people = sorted(p for p in (lfw_dir / "images").iterdir() if p.is_dir())[::20]
    worst: dict[int, list[float]] = {30: [], 45: [], 60: []}
    for person in people:
        img = load_image(sorted(person.glob("*.jpg"))[0])
        base = yaw(img)
        if base is None or abs(base) > 0.15:
            continue
        for angle, moves in worst.items():
            ys = [yaw(tilted(img, a)) for a in (angle, -angle)]
            moves.append(max([abs(y - base) for y in ys if y is not None], default=0.0))
    n = len(worst[30])
    over = sum(1 for i in range(n) if max(worst[a][i] for a in worst) >= turn)
    print(f"\n{n} frontal photos, yaw moved by a tilted print (camera 300 px away):")
    for angle, moves in worst.items():
        m = np.array(moves)
        print(f"  {angle} deg: median {np.median(m):.3f}, 95th {np.percentile(m, 95):.3f}, "
              f"max {m.max():.3f}, >= {turn}: {(m >= turn).sum()}")  # fmt: skip
    print(f"  any angle >= {turn}: {over} of {n}")
    assert n >= 60
    assert np.median(worst[45]) < turn / 2  # most prints stay within "looking back"
    assert over <= 0.1 * n  # some do not: prints are the passive check's job


def test_someone_else_cannot_finish_the_challenge(
    make_kiosk: Any, photos: dict[str, np.ndarray]
) -> None:
    k = make_kiosk(LEFT)
    front, turn, other = photos["frontal"], photos["turned_left"], photos["stranger"]
    k.feed([front, front, turn])
    ch = k.challenge
    assert ch is not None and ch.turned
    # a frontal stranger where his face was: it would do as "looking back" by pose alone
    from edgeface.gallery.quality import pose

    chosen = k.engine.pipeline.choose(k.engine.pipeline.analyze(other), other.shape)
    assert abs(pose(chosen.face.landmarks)[0] - ch.baseline) < ch.cfg.turn_yaw / 2
    shown = k.feed([other] * int(9 / DT))  # but it is never recognized as him
    assert all(s["result"] in (None, ("challenge_failed", "timeout")) for s in shown)
    assert shown[-1]["result"] == ("challenge_failed", "timeout")
    assert not k.records("verify_accept")


def test_a_camera_that_stops_ends_the_challenge(
    make_kiosk: Any, photos: dict[str, np.ndarray]
) -> None:
    k = make_kiosk(LEFT)
    k.feed([photos["frontal"]] * 2)
    assert k.challenge is not None
    k.engine._expire(k.t + 8.1)  # no frame for 8 s: the recognition loop's timer ends it
    assert k.challenge is None and k.engine.result.kind == "challenge_failed"
    assert k.records("verify_reject")[-1]["reason"] == "challenge_timeout"


def test_challenge_config(tmp_path: Path) -> None:
    cfg = kiosk_config(tmp_path)
    assert not cfg.verify.challenge.enabled  # off by default
    cfg = kiosk_config(tmp_path, verify={"challenge": "head_turn", "challenge_timeout_s": 5})
    assert cfg.verify.challenge.enabled and cfg.verify.challenge.timeout_s == 5.0
    for bad, msg in (
        ({"challenge": "blink"}, "verify.challenge: must be one of"),
        ({"challenge_turn_yaw": 2.0}, "verify.challenge_turn_yaw: must be in [0.1, 0.9]"),
        ({"challenge_timeout_s": 0}, "verify.challenge_timeout_s: must be in [1, 60]"),
    ):
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            kiosk_config(tmp_path, verify=bad)
