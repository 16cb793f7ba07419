"""Kiosk flows over the API with real faces: re-enrollment keeps the identity, the duplicate
check refuses a second enrollment of an enrolled face, a capture times out, a gallery held by
another writer (a door daemon, the CLI) makes the enrollment fail cleanly with nothing lost,
and a change written by another process is picked up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kiosk_support import PIN, Client, SceneCamera, enroll_from_files, kiosk_config, running_kiosk

pytestmark = pytest.mark.slow


@pytest.fixture
def photos(lfw_dir: Path) -> dict[str, list[Path]]:
    laura = sorted((lfw_dir / "images" / "Laura_Bush").glob("*.jpg"))
    return {"enroll": laura[:3], "later": laura[12:16]}


def operator(url: str) -> Client:
    c = Client(url)
    c.start()
    assert c.post("/api/pin", {"pin": PIN})[0] == 200
    return c


def wait_result(srv: Any, timeout: float = 90.0) -> dict[str, Any]:
    snap = srv.wait_state(lambda s: s["result"] is not None, timeout)
    return snap["result"]


def test_reenroll_keeps_the_id_and_duplicates_are_refused(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    cfg = kiosk_config(tmp_path)
    iid = enroll_from_files(cfg, pipeline, "Laura Bush", photos["enroll"])
    cam = SceneCamera({"later": photos["later"]})
    with running_kiosk(cfg, cam, pipeline) as srv:
        before = srv.engine.gallery.info(iid)
        op = operator(srv.url)
        # re-enroll from other photos: same id and name, new templates
        assert op.post("/api/enroll/start", {"consent": True, "id": iid})[0] == 200
        cam.show("later")
        r = wait_result(srv)
        assert r["kind"] == "enrolled" and r["name"] == "Laura Bush"
        after = srv.engine.gallery.info(iid)
        assert len(srv.engine.gallery) == 1 and after.updated > before.updated
        assert after.n_templates == cfg.enroll.templates
        cam.show(None)
        srv.wait_state(lambda s: s["result"] is None)
        # the same face enrolled under another name: refused, and the operator is told who
        assert op.post("/api/enroll/start", {"consent": True, "name": "Someone Else"})[0] == 200
        cam.show("later")
        r = wait_result(srv)
        assert r["kind"] == "duplicate" and r["detail"] == "Laura Bush"
        assert [i.name for i in srv.engine.gallery.identities()] == ["Laura Bush"]
        cam.show(None)
        events = srv.audit_events()
        assert "reenroll" in events and "enroll_duplicate" in events


def test_capture_times_out_without_a_usable_face(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    cfg = kiosk_config(tmp_path, enroll={"capture_timeout_s": 1.5})
    with running_kiosk(cfg, SceneCamera({}), pipeline) as srv:
        op = operator(srv.url)
        assert op.post("/api/enroll/start", {"consent": True, "name": "Nobody"})[0] == 200
        assert srv.engine.snapshot(None)["mode"] == "enroll"
        r = wait_result(srv, 30)
        assert r["kind"] == "capture_timeout"
        assert srv.engine.snapshot(None)["mode"] == "verify" and len(srv.engine.gallery) == 0
        assert "enroll_timeout" in srv.audit_events()


def test_enrollment_waits_for_another_writer_then_fails_cleanly(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    from edgeface.gallery.durable import WriterLock

    cfg = kiosk_config(tmp_path)
    cam = SceneCamera({"later": photos["later"]})
    with running_kiosk(cfg, cam, pipeline) as srv:
        srv.engine.gallery_file.lock_timeout = 0.5
        data = srv.engine.gallery_file.path.read_bytes()
        op = operator(srv.url)
        with WriterLock(srv.engine.gallery_file.path, 5.0):  # e.g. `edgeface gallery enroll`
            assert op.post("/api/enroll/start", {"consent": True, "name": "Laura B"})[0] == 200
            cam.show("later")
            r = wait_result(srv)
        assert r["kind"] == "enroll_failed" and "another process" in (r["detail"] or "")
        assert srv.engine.gallery_file.path.read_bytes() == data  # nothing written, nothing lost
        assert "enroll_failed" in srv.audit_events()
        cam.show(None)


def test_changes_by_another_process_are_picked_up(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    cfg = kiosk_config(tmp_path)
    cam = SceneCamera({"later": photos["later"]})
    with running_kiosk(cfg, cam, pipeline) as srv:
        assert len(srv.engine.gallery) == 0
        enroll_from_files(cfg, pipeline, "Laura Bush", photos["enroll"])  # the door's CLI, say
        srv.wait_state(lambda s: s["identities"] == 1, 10)
        cam.show("later")
        r = wait_result(srv, 60)
        assert r["kind"] == "welcome" and r["name"] == "Laura Bush"
        cam.show(None)
        time.sleep(0.1)


def test_the_welcome_threshold_rises_with_the_gallery(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    """As at the door, a stranger is compared with everyone enrolled: the kiosk takes its
    threshold from ``target_fpir`` and the gallery's size, at every reload; duplicates are
    still screened at the per-comparison FAR."""
    import numpy as np

    from edgeface.door.threshold import ThresholdRule
    from edgeface.gallery.store import ModelRef, Template
    from edgeface.kiosk.service import gallery_file

    cfg = kiosk_config(tmp_path)
    rule = ThresholdRule(cfg.recognition, pipeline.calibration)
    cam = SceneCamera({"later": photos["later"]})
    with running_kiosk(cfg, cam, pipeline) as srv:
        enroll_from_files(cfg, pipeline, "Laura Bush", photos["enroll"])
        srv.wait_state(lambda s: s["identities"] == 1, 10)
        one = srv.engine.threshold
        assert one == pytest.approx(rule.choose(1).threshold)
        # 199 more enrolled people (stand-in templates: only the gallery's size matters here)
        rng = np.random.default_rng(0)
        model = ModelRef.of(pipeline.embedder)
        with gallery_file(cfg).edit() as g:
            for k in range(199):
                e = rng.standard_normal(pipeline.embedder.dim)
                g.add_identity(f"Person {k:03d}", [Template(e / np.linalg.norm(e), 1.0, model)])
        srv.wait_state(lambda s: s["identities"] == 200, 10)
        assert srv.engine.threshold == pytest.approx(rule.choose(200).threshold)
        assert srv.engine.threshold > one
        assert srv.engine.duplicate_threshold == pytest.approx(
            pipeline.threshold(far=cfg.recognition.far)
        )
        cam.show("later")  # still welcomed at the stricter threshold
        r = wait_result(srv, 60)
        assert r["kind"] == "welcome" and r["name"] == "Laura Bush"
        cam.show(None)
        time.sleep(0.1)


def test_a_camera_that_drops_out_is_shown_and_audited(
    pipeline: Any, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    """A live camera unplugged for a while: the wrapper reconnects with backoff, the page's
    state says "lost" meanwhile, the audit log records both edges, recognition resumes."""
    from edgeface.camera import Backoff
    from edgeface.camera.base import CameraError
    from edgeface.camera.replay import ImageDirectorySource

    class Unplugged(ImageDirectorySource):
        live = True
        down_from = float("inf")
        down_until = float("inf")

        def _read(self):  # type: ignore[no-untyped-def]
            if self.down_from <= time.monotonic() < self.down_until:
                raise CameraError("USB camera unplugged")
            return super()._read()

    cam = Unplugged(files=photos["later"], fps=12, loop=True)
    cfg = kiosk_config(tmp_path)
    backoff = Backoff(initial=0.05, maximum=0.2)  # the engine wraps the live camera itself
    with running_kiosk(cfg, cam, pipeline, reconnect=backoff) as srv:  # type: ignore[arg-type]
        srv.wait_state(lambda s: s["camera"] == "ok" and s["recognition_fps"] > 0)
        cam.down_from, cam.down_until = time.monotonic(), time.monotonic() + 2.0
        c = Client(srv.url)
        deadline = time.monotonic() + 10
        while c.get("/api/state")[2]["camera"] != "lost":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        srv.wait_state(lambda s: s["camera"] == "ok", 20)
        events = srv.audit_events()
        assert events.index("camera_lost") < events.index("camera_restored")
        frames = srv.engine.recognition_rate.times[-1]
        srv.wait_state(lambda s: srv.engine.recognition_rate.times[-1] > frames, 10)
