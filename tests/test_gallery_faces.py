"""Enrollment and 1:N identification on real LFW faces (../shared/data), with the real
MTCNN + MobileFaceNet pipeline and its LFW-calibrated threshold."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeface.gallery import Gallery, ModelMismatchError, ModelRef, Template
from edgeface.gallery.enroll import Enroller, camera_frames, find_duplicates, person_dirs
from edgeface.gallery.quality import FaceQuality, QualityGates, pose
from edgeface.imaging import load_image

ENROLLED = ["Abdullah_Gul", "Adrien_Brody", "Andre_Agassi", "Andy_Roddick", "Anna_Kournikova"]
IMPOSTORS = [
    "Al_Sharpton",
    "Albert_Costa",
    "Amelia_Vega",
    "Ana_Guevara",
    "Ana_Palacio",
    "Angela_Bassett",
    "Ann_Veneman",
    "Antonio_Palocci",
    "Ari_Fleischer",
    "Ben_Affleck",
]


@pytest.fixture(scope="module")
def enroller(pipeline):
    return Enroller(pipeline, max_templates=3, take_largest=True)


@pytest.fixture(scope="module")
def enrolled(enroller, lfw_people):
    """5 people enrolled from their first 3 photos each."""
    g = Gallery(max_templates=3)
    plans = {}
    for name in ENROLLED:
        plan = enroller.from_files(name, lfw_people[name][:3])
        assert plan.templates, [c.reason for c in plan.candidates]
        g.add_identity(name.replace("_", " "), plan.templates)
        plans[name] = plan
    return g, plans


def test_templates_carry_model_and_quality(enrolled, pipeline):
    g, plans = enrolled
    assert g.model == ModelRef.of(pipeline.embedder)
    for plan in plans.values():
        for t in plan.templates:
            assert t.model == g.model and 0 < t.quality <= 1
            assert abs(float(np.linalg.norm(t.embedding)) - 1) < 1e-4
        qs = [t.quality for t in plan.templates]
        assert qs == sorted(qs, reverse=True)


def test_enrolled_people_are_identified(enrolled, pipeline, lfw_people):
    g, _ = enrolled
    threshold = pipeline.threshold(1e-3)
    correct = total = 0
    for name in ENROLLED:
        for path in lfw_people[name][3:6]:  # photos not used for enrollment
            r = pipeline.best_face(load_image(path))
            assert r is not None, path
            d = g.identify(r.embedding, threshold, model=ModelRef.of(pipeline.embedder))
            total += 1
            correct += d.label == name.replace("_", " ")
    assert total == 15
    assert correct >= 13, f"{correct}/{total} genuine probes identified"


def test_strangers_come_back_unknown(enrolled, pipeline, lfw_people):
    g, _ = enrolled
    threshold = pipeline.threshold(1e-3)
    labels = []
    for name in IMPOSTORS:
        r = pipeline.best_face(load_image(lfw_people[name][0]))
        assert r is not None
        d = g.identify(r.embedding, threshold)
        labels.append(d.label)
        assert d.best is not None and d.best.score < 0.6  # clearly not a strong match
    assert labels.count("unknown") >= 9, labels


def test_duplicate_enrollment_is_flagged(enrolled, enroller, pipeline, lfw_people):
    g, _ = enrolled
    plan = enroller.from_files("Andre again", lfw_people["Andre_Agassi"][6:8])
    dups = find_duplicates(g, plan.templates, pipeline.threshold(1e-3))
    assert dups and dups[0].name == "Andre Agassi"
    stranger = enroller.from_files("New", lfw_people["Ben_Affleck"][:1])
    assert find_duplicates(g, stranger.templates, pipeline.threshold(1e-3)) == []


def test_model_mismatch_with_real_pipeline(pipeline, enroller, lfw_people):
    g = Gallery(model=ModelRef("some-other-model", "0" * 64))
    plan = enroller.from_files("X", lfw_people["Adrien_Brody"][:1])
    with pytest.raises(ModelMismatchError, match="re-enroll"):
        g.add_identity("X", plan.templates)
    with pytest.raises(ModelMismatchError):
        g.identify(plan.templates[0].embedding, 0.3, model=ModelRef.of(pipeline.embedder))


# ---------------------------------------------------------------- quality gates, real photos
def test_blurred_photo_rejected(pipeline, lfw_people):
    e = Enroller(pipeline, take_largest=True)
    img = load_image(lfw_people["Andy_Roddick"][0])
    assert e.assess_image(img, "sharp").accepted
    blurred = cv2.GaussianBlur(img, (0, 0), 3.0)
    c = e.assess_image(blurred, "blurred")
    assert not c.accepted and "blurred" in c.reason


def test_small_face_rejected(pipeline, lfw_people):
    e = Enroller(pipeline, take_largest=True)
    img = load_image(lfw_people["Andy_Roddick"][0])
    small = cv2.resize(img, (100, 100), interpolation=cv2.INTER_AREA)  # face ~36 px
    c = e.assess_image(small, "small")
    assert not c.accepted and "too small" in c.reason


def test_no_face_rejected(pipeline):
    e = Enroller(pipeline)
    grey = np.full((240, 240, 3), 128, np.uint8)
    c = e.assess_image(grey, "grey")
    assert not c.accepted and c.reason == "no face found"


def test_several_faces_rejected_unless_take_largest(pipeline, lfw_people):
    a = load_image(lfw_people["Abdullah_Gul"][0])
    b = cv2.resize(load_image(lfw_people["Ana_Palacio"][0]), (220, 220))
    two = np.zeros((250, 480, 3), np.uint8)
    two[:, :250] = a
    two[15:235, 255:475] = b
    strict = Enroller(pipeline).assess_image(two, "two")
    assert not strict.accepted and "several faces" in strict.reason
    loose = Enroller(pipeline, take_largest=True).assess_image(two, "two")
    assert loose.accepted
    # the largest face (Abdullah Gul's, 250 px photo) is the one enrolled
    ref = Enroller(pipeline).assess_image(a, "a")
    assert float(loose.template.embedding @ ref.template.embedding) > 0.9


def test_unreadable_file_is_a_rejection_not_a_crash(pipeline, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    plan = Enroller(pipeline).from_files("Nobody", [bad, tmp_path / "missing.jpg"])
    assert plan.templates == [] and len(plan.rejected) == 2
    assert all("broken.jpg" in c.reason or "missing.jpg" in c.reason for c in plan.rejected)


def test_pose_from_landmark_geometry():
    frontal = np.array([[38, 50], [74, 50], [56, 70], [42, 90], [70, 90]], float)
    yaw, pitch, roll = pose(frontal)
    assert abs(yaw) < 1e-6 and 0.45 < pitch < 0.55 and abs(roll) < 1e-6
    turned = frontal.copy()
    turned[2, 0] = 70  # nose almost over the right eye: head turned
    assert pose(turned)[0] > 0.6
    down = frontal.copy()
    down[2, 1] = 86  # nose close to the mouth line: looking down
    assert pose(down)[1] > 0.8
    # in-plane rotation does not change yaw or pitch
    ang = np.radians(25)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    y2, p2, r2 = pose(frontal @ rot.T)
    assert abs(y2) < 1e-6 and abs(p2 - pitch) < 1e-6 and abs(r2 - 25) < 1e-6


def test_gate_failures_are_explained():
    gates = QualityGates()
    bad = FaceQuality(size=30, sharpness=5, yaw=0.9, pitch=0.95, roll_deg=0, detection_score=0.5)
    reasons = " | ".join(bad.failures(gates))
    for word in ("too small", "blurred", "sideways", "tilted", "uncertain"):
        assert word in reasons
    good = FaceQuality(
        size=100, sharpness=200, yaw=0.05, pitch=0.5, roll_deg=2, detection_score=0.999
    )
    assert good.failures(gates) == [] and good.score(gates) > bad.score(gates)


# ---------------------------------------------------------------- sources
def test_directory_per_person(tmp_path, lfw_people, pipeline):
    for name in ("Ana_Guevara", "Ben_Affleck"):
        (tmp_path / name).mkdir()
        for p in lfw_people[name][:2]:
            (tmp_path / name / p.name).symlink_to(p)
    (tmp_path / ".hidden").mkdir()
    jobs = person_dirs(tmp_path)
    assert [n for n, _ in jobs] == ["Ana Guevara", "Ben Affleck"]
    e = Enroller(pipeline, take_largest=True)
    for name, files in jobs:
        plan = e.from_files(name, files)
        assert len(plan.candidates) == 2 and plan.templates
        assert all(c.accepted or c.reason for c in plan.candidates)


def test_camera_frames_from_a_video(tmp_path, lfw_people, pipeline):
    """A short MJPG video of one person stands in for a camera (same code path)."""
    video = tmp_path / "cam.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (250, 250))
    assert w.isOpened()
    for p in lfw_people["Amelia_Vega"][:4]:
        frame = cv2.imread(str(p))
        for _ in range(3):
            w.write(frame)
    w.release()
    e = Enroller(pipeline, max_templates=3, take_largest=True)
    plan = e.from_frames("Amelia", camera_frames(str(video), every=3), max_frames=10)
    assert len(plan.candidates) == 4  # 12 frames, every 3rd
    assert len(plan.templates) == 3
    probe = pipeline.best_face(load_image(lfw_people["Amelia_Vega"][5]))
    g = Gallery()
    g.add_identity("Amelia", plan.templates)
    assert g.identify(probe.embedding, pipeline.threshold(1e-3)).label == "Amelia"


def test_template_from_one_model_cannot_join_another_gallery():
    g = Gallery()
    g.add_identity("A", [Template(np.ones(128, np.float32), 1.0, ModelRef("m1", "1" * 64))])
    with pytest.raises(ModelMismatchError):
        g.add_identity("B", [Template(np.ones(128, np.float32), 1.0, ModelRef("m2", "2" * 64))])


def test_screening_refuses_duplicates_and_warns_about_look_alikes(enroller, pipeline, lfw_dir):
    """Abdullah Gul enrolled; Andrea Bocelli's photo scores ~0.30 against him (between the
    FAR 1e-2 and 1e-3 thresholds): a look-alike, refused only with --strict; another photo of
    Gul is a duplicate, refused unless allowed."""
    from edgeface.gallery.enroll import LOOKALIKE_FAR, screen_new_person
    from edgeface.gallery.errors import DuplicateIdentityError, LookalikeError

    photo = lambda name, n: lfw_dir / "images" / name / f"{name}_{n:04d}.jpg"  # noqa: E731
    g = Gallery(max_templates=3)
    g.add_identity("Abdullah Gul", enroller.from_files("Gul", [photo("Abdullah_Gul", 1)]).templates)
    dup_t, look_t = pipeline.threshold(1e-3), pipeline.threshold(LOOKALIKE_FAR)

    def screen(name: str, path) -> object:
        plan = enroller.from_files(name, [path])
        return screen_new_person(g, name, plan.templates, duplicate_threshold=dup_t,
                                 lookalike_threshold=look_t)  # fmt: skip

    look = screen("Andrea Bocelli", photo("Andrea_Bocelli", 1))
    assert not look.duplicates and [m.name for m in look.lookalikes] == ["Abdullah Gul"]
    assert look_t <= look.lookalikes[0].score < dup_t
    warnings = look.enforce()
    assert "looks like the enrolled 'Abdullah Gul'" in warnings[0] and "score 0." in warnings[0]
    with pytest.raises(LookalikeError, match="--strict"):
        look.enforce(strict=True)
    dup = screen("Gul again", photo("Abdullah_Gul", 2))
    assert [m.name for m in dup.duplicates] == ["Abdullah Gul"]
    with pytest.raises(DuplicateIdentityError, match="--allow-duplicate"):
        dup.enforce()
    assert "matches the enrolled" in dup.enforce(allow_duplicate=True)[0]
