"""The kiosk against real presentation attacks, over its HTTP API: a NUAA subject is enrolled
from their live webcam frames; a camera showing the printed-photo frames of that same person
(which the recognizer matches) is never welcomed, cannot "forget" them and cannot enroll
(no template is captured); their live frames are welcomed. A missing or corrupt liveness
model or calibration stops the kiosk before anything is opened. Real detector, embedder,
encrypted gallery, the shipped liveness models and calibration (BPCER 2 %)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kiosk_support import PIN, Client, SceneCamera, enroll_from_files, kiosk_config, running_kiosk

from edgeface.errors import EdgefaceError

pytestmark = pytest.mark.slow
SUBJECT = "0001"
#: [liveness] on, as a deployed kiosk has it (kiosk_config turns it off for LFW press photos)
LIVE = {"required": True}


@pytest.fixture(scope="module")
def nuaa(shared_data: Path) -> dict[str, list[Path]]:
    root = shared_data / "spoof" / "nuaa_raw"
    return {lab: sorted((root / lab).glob(f"{SUBJECT}_*.jpg")) for lab in ("live", "spoof")}


@pytest.fixture(scope="module")
def checker(models_ready: None) -> Any:
    from edgeface.liveness import LivenessChecker

    return LivenessChecker.from_config()


def records(srv: Any) -> list[dict[str, Any]]:
    return [json.loads(x) for x in srv.cfg.audit.path.read_text().splitlines()]


def watch(client: Client, until: Any, timeout: float) -> list[dict[str, Any]]:
    """Poll ``/api/state`` as the page does; every result shown, until ``until()`` holds."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; results seen: {seen}"
        status, _, st = client.get("/api/state")
        assert status == 200
        if st["result"] is not None and st["result"] not in seen:
            seen.append(st["result"])
        time.sleep(0.1)
    return seen


def report(label: str, recs: list[dict[str, Any]]) -> None:
    scores = [r["liveness"] for r in recs if "liveness" in r]
    if scores:
        print(f"\n{label}: {len(scores)} frames, liveness {min(scores):.4f}..{max(scores):.4f}, "
              f"threshold {recs[0]['liveness_threshold']:.4f}")  # fmt: skip


def test_printed_photos_are_never_welcomed_nor_forget_anyone(
    pipeline: Any, checker: Any, nuaa: dict[str, list[Path]], tmp_path: Path
) -> None:
    # lockout high: this test wants several attempts, not the pause (the door test has it)
    cfg = kiosk_config(tmp_path, liveness=LIVE, lockout={"failures": 100, "global_failures": 100})
    iid = enroll_from_files(cfg, pipeline, f"NUAA {SUBJECT}", nuaa["live"][:3])
    cam = SceneCamera({"spoof": nuaa["spoof"]})
    with running_kiosk(cfg, cam, pipeline, liveness=checker) as srv:
        client = Client(srv.url)
        client.start()
        cam.show("spoof")

        def rejections(event: str) -> list[dict[str, Any]]:
            return [r for r in records(srv) if r["event"] == event and r["reason"] == "spoof"]

        seen = watch(client, lambda: len(rejections("verify_reject")) >= 2, 120)
        assert seen and all(r["kind"] == "not_live" for r in seen)
        # "forget me" with the photo: the verification refuses it the same way
        assert client.post("/api/forget/start", {})[0] == 200
        seen = watch(client, lambda: bool(rejections("forget_reject")), 120)
        cam.show(None)
        assert all(r["kind"] != "forget_match" for r in seen)
        assert client.post("/api/forget/confirm", {"confirm": True})[0] == 409
        assert srv.engine.has_identity(iid)
        recs = records(srv)
    events = [r["event"] for r in recs]
    assert "verify_accept" not in events and "forget_verified" not in events
    assert "forget" not in events
    spoofs = [r for r in recs if r["event"] == "spoof"]
    assert {r["mode"] for r in spoofs} == {"verify", "forget"}
    assert all(r["liveness"] < r["liveness_threshold"] for r in spoofs)
    # the recognizer alone would have let the photo in: it matches the enrolled person
    assert sum(r["identity_id"] == iid for r in spoofs) >= 3
    report("spoof frames (verify + forget)", spoofs)


def test_live_frames_of_the_same_person_are_welcomed(
    pipeline: Any, checker: Any, nuaa: dict[str, list[Path]], tmp_path: Path
) -> None:
    cfg = kiosk_config(tmp_path, liveness=LIVE)
    iid = enroll_from_files(cfg, pipeline, f"NUAA {SUBJECT}", nuaa["live"][:3])
    cam = SceneCamera({"live": nuaa["live"][3:18]})
    with running_kiosk(cfg, cam, pipeline, liveness=checker) as srv:
        client = Client(srv.url)
        client.start()
        cam.show("live")
        seen = watch(client, lambda: "verify_accept" in srv.audit_events(), 120)
        cam.show(None)
        recs = records(srv)
    accept = next(r for r in recs if r["event"] == "verify_accept")
    assert accept["identity_id"] == iid
    assert accept["liveness"] >= accept["liveness_threshold"]
    assert not seen or seen[-1]["kind"] == "welcome"
    report("live frame welcomed", [accept])


def test_enrollment_from_printed_photos_captures_no_template(
    pipeline: Any, checker: Any, nuaa: dict[str, list[Path]], tmp_path: Path
) -> None:
    cfg = kiosk_config(tmp_path, liveness=LIVE, enroll={"capture_timeout_s": 8})
    cam = SceneCamera({"spoof": nuaa["spoof"], "live": nuaa["live"]})
    with running_kiosk(cfg, cam, pipeline, liveness=checker) as srv:
        op = Client(srv.url)
        op.start()
        assert op.post("/api/pin", {"pin": PIN})[0] == 200
        assert op.post("/api/enroll/start", {"consent": True, "name": "Photo"})[0] == 200
        cam.show("spoof")
        snap = srv.wait_state(lambda s: s["result"] is not None, 60)
        assert snap["result"]["kind"] == "capture_timeout" and len(srv.engine.gallery) == 0
        spoofs = [r for r in records(srv) if r["event"] == "spoof"]
        assert spoofs and {r["mode"] for r in spoofs} == {"enroll"}
        assert all(r["liveness"] < r["liveness_threshold"] for r in spoofs)
        timeout = next(r for r in records(srv) if r["event"] == "enroll_timeout")
        assert timeout["captured"] == 0
        # the same capture from the live frames enrolls: the photos failed on liveness alone
        cam.show(None)
        srv.wait_state(lambda s: s["result"] is None, 30)
        assert op.post("/api/enroll/start", {"consent": True, "name": "Live"})[0] == 200
        cam.show("live")
        snap = srv.wait_state(lambda s: s["result"] is not None, 60)
        cam.show(None)
        assert snap["result"]["kind"] == "enrolled", snap
        assert [i.name for i in srv.engine.gallery.identities()] == ["Live"]
    report("spoof frames refused as templates", spoofs)


@pytest.mark.parametrize("broken", ["missing model", "corrupt model", "corrupt calibration"])
def test_a_broken_liveness_model_stops_the_kiosk(
    broken: str, checker: Any, pipeline: Any, tmp_path: Path
) -> None:
    from edgeface.kiosk.service import build_engine

    good = [str(n.session.info.path) for n in checker.nets]
    bad = tmp_path / "broken.bin"
    table: dict[str, Any] = {"required": True, "paths": [str(bad), good[1]]}
    if broken == "corrupt model":
        bad.write_bytes(b"not a model")
    elif broken == "corrupt calibration":
        bad.write_text("{not json")
        table = {"required": True, "calibration": str(bad)}
    cfg = kiosk_config(tmp_path, liveness=table)
    with pytest.raises(EdgefaceError, match=r"broken\.bin"):
        build_engine(cfg, source=SceneCamera({}), pipeline=pipeline)
    # failed closed before anything was opened: no gallery, no audit log
    assert not cfg.gallery.path.exists() and not cfg.audit.path.exists()
