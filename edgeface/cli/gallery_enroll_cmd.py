"""``edgeface gallery enroll``: photos, a folder tree or a camera -> enrolled people.

The CLI turns the options into enrollment plans (:mod:`edgeface.gallery.enroll`) and prints
what happened; the add / new / duplicate policy that commits them is
:mod:`edgeface.gallery.enrollment`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.cli.gallery_options import (
    add_common,
    gallery_file,
    open_pipeline,
    print_json,
)
from edgeface.cli.options import add_progress_option, progress
from edgeface.errors import ConfigError, NoFaceError
from edgeface.gallery import Gallery, ModelRef
from edgeface.gallery.enrollment import EnrollPolicy, NameTaken, commit_plans, dry_run
from edgeface.recognition.calibration import DEFAULT_FAR

if TYPE_CHECKING:
    from edgeface.gallery.enroll import Enroller, EnrollmentPlan
    from edgeface.gallery.quality import QualityGates
    from edgeface.recognition import FacePipeline


def register_enroll(gsub: argparse._SubParsersAction) -> None:
    """Add ``enroll`` to ``gallery``'s sub-parsers."""
    a = gsub.add_parser("enroll", help="enroll a person from photos, a folder tree or a camera")
    add_common(a)
    a.add_argument("name", nargs="?", help="display name (not with --dir)")
    a.add_argument("images", nargs="*", type=Path, help="photos of that person")
    src = a.add_mutually_exclusive_group()
    src.add_argument(
        "--dir",
        type=Path,
        metavar="ROOT",
        help="enroll everyone in ROOT/<Name>/*.jpg (underscores become spaces)",
    )
    src.add_argument(
        "--camera",
        metavar="SOURCE",
        help="camera index, /dev/videoN, picamera2, a video file or image folder",
    )
    a.add_argument("--frames", type=int, default=100, help="camera frames to look at (100)")
    add_progress_option(a)
    mode = a.add_mutually_exclusive_group()
    mode.add_argument(
        "--add",
        action="store_true",
        help="add templates to the already enrolled person of that name",
    )
    mode.add_argument(
        "--new", action="store_true", help="enroll as a new identity even if the name is taken"
    )
    _add_quality_options(a)
    _add_policy_options(a)
    from edgeface.cli.liveness_opts import add_liveness_option

    add_liveness_option(a)
    a.set_defaults(func=_enroll)


def _add_quality_options(a: argparse.ArgumentParser) -> None:
    a.add_argument(
        "--take-largest",
        action="store_true",
        help="use the largest face in photos with several faces",
    )
    a.add_argument("--min-face-size", type=float, help="minimum face size in px (60)")
    a.add_argument("--min-sharpness", type=float, help="minimum Laplacian variance (40)")
    a.add_argument("--max-yaw", type=float, help="maximum yaw asymmetry 0..1 (0.6)")


def _add_policy_options(a: argparse.ArgumentParser) -> None:
    a.add_argument(
        "--far",
        type=float,
        default=DEFAULT_FAR,
        help="FAR whose threshold flags look-alikes already enrolled (1e-3)",
    )
    a.add_argument("--dry-run", action="store_true", help="assess the images, change nothing")
    a.add_argument("--strict", action="store_true", help="refuse a look-alike of someone enrolled")
    a.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="enroll even if the person matches someone enrolled at the --far threshold",
    )
    a.add_argument("--json", action="store_true")


def _gates(args: argparse.Namespace) -> QualityGates:
    from edgeface.gallery.quality import QualityGates

    over = {
        k: v
        for k, v in (
            ("min_face_size", args.min_face_size),
            ("min_sharpness", args.min_sharpness),
            ("max_yaw", args.max_yaw),
        )
        if v is not None
    }
    return QualityGates(**over)


def _jobs(args: argparse.Namespace) -> list[tuple[str, list[Path] | None]]:
    """(name, photos) per person to enroll; photos None: from ``--camera``."""
    from edgeface.gallery.enroll import person_dirs

    if args.dir is not None:
        if args.name or args.images:
            raise ConfigError("--dir enrolls everyone under ROOT; give no NAME or IMAGES")
        return [(n, files) for n, files in person_dirs(args.dir)]
    if args.name is None:
        raise ConfigError("give NAME and IMAGES, NAME --camera SOURCE, or --dir ROOT")
    if args.camera is not None:
        if args.images:
            raise ConfigError("give either IMAGES or --camera, not both")
        return [(args.name, None)]
    if not args.images:
        raise ConfigError(f"no images given for {args.name!r}")
    return [(args.name, args.images)]


def _plans(
    args: argparse.Namespace, enroller: Enroller, jobs: list[tuple[str, list[Path] | None]]
) -> list[EnrollmentPlan]:
    """Assess every person's photos (or camera frames), printing each verdict."""
    from edgeface.gallery.enroll import camera_frames

    plans = []
    for name, files in jobs:
        if files is None:
            frames = camera_frames(args.camera, max_frames=args.frames)
            plan = enroller.from_frames(name, frames, max_frames=args.frames)
        else:
            plan = enroller.from_files(name, progress(files, args, name, len(files)))  # type: ignore[arg-type]
        plans.append(plan)
        if not args.json:
            for c in plan.candidates:
                verdict = f"ok (quality {c.template.quality:.2f})" if c.template else c.reason
                print(f"  {name}: {c.source}: {verdict}")
    return plans


def _policy(args: argparse.Namespace, pipe: FacePipeline) -> EnrollPolicy:
    from edgeface.gallery.enroll import LOOKALIKE_FAR

    name_taken = NameTaken.ADD if args.add else NameTaken.NEW if args.new else NameTaken.REFUSE
    return EnrollPolicy(
        duplicate_threshold=pipe.threshold(args.far),
        lookalike_threshold=pipe.threshold(LOOKALIKE_FAR),
        name_taken=name_taken,
        strict=args.strict,
        allow_duplicate=args.allow_duplicate,
    )


def _enroll(args: argparse.Namespace) -> int:
    from edgeface.cli.liveness_opts import liveness_checker
    from edgeface.gallery.enroll import Enroller

    jobs = _jobs(args)
    gf = gallery_file(args)
    gallery = gf.load()  # fail early (wrong key, missing gallery) before slow face work
    pipe = open_pipeline(args)
    gallery.check_model(ModelRef.of(pipe.embedder))
    enroller = Enroller(
        pipe,
        gates=_gates(args),
        max_templates=gallery.max_templates,
        take_largest=args.take_largest,
        liveness=liveness_checker(args),
    )
    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    plans = _plans(args, enroller, jobs)
    policy = _policy(args, pipe)
    if args.dry_run:
        return _dry_run(args, gallery, plans, policy)
    results = commit_plans(gf, plans, policy)
    failures = 0
    for r in results:
        if r.error is not None:
            failures += 1
            print(f"edgeface: {r.plan.name}: {r.error}", file=sys.stderr)
            continue
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not args.json and r.info is not None:
            print(
                f"{r.action} {r.plan.name} (id {r.info.id}): {r.info.n_templates} template(s), "
                f"{len(r.plan.rejected)} image(s) rejected"
            )
    if args.json:
        print_json([r.to_dict() for r in results])
    if failures:
        raise NoFaceError(f"{failures} of {len(plans)} people could not be enrolled")
    return 0


def _dry_run(
    args: argparse.Namespace, gallery: Gallery, plans: list[EnrollmentPlan], policy: EnrollPolicy
) -> int:
    report = []
    for entry in dry_run(gallery, plans, policy):
        for w in entry["looks_like"]:
            print(f"warning: {w}", file=sys.stderr)
        report.append(entry)
    if args.json:
        print_json(report)
    return 0
