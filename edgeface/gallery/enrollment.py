"""Committing enrollment plans to a gallery: the add / new / duplicate policy.

:mod:`edgeface.gallery.enroll` turns photos into an :class:`EnrollmentPlan` (which faces are
good enough); this module decides what a plan does to the gallery. A name that is already
enrolled is refused unless the caller says ``add`` (more templates for that person) or
``new`` (a different person of the same name), and every new face is screened against
everyone enrolled, so that a duplicate or a look-alike is refused or at least reported. It is
kept out of the CLI so that any front end (CLI, kiosk, fleet) enrolls under the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edgeface.errors import EdgefaceError
from edgeface.gallery.enroll import EnrollmentPlan, require_templates, screen_new_person
from edgeface.gallery.errors import GalleryError
from edgeface.gallery.store import Gallery, GalleryFile, IdentityInfo


class NameTaken(Enum):
    """What to do when a plan's name is already enrolled."""

    REFUSE = "refuse"  #: an error that names the two ways out below
    ADD = "add"  #: add the templates to that person
    NEW = "new"  #: enroll a different person of the same name


@dataclass(frozen=True)
class EnrollPolicy:
    """How plans are committed: the name rule and the duplicate screening.

    ``duplicate_threshold`` is the cosine at which a new face counts as someone already
    enrolled (refused unless ``allow_duplicate``); ``lookalike_threshold`` the lower one at
    which it is reported as a look-alike (refused with ``strict``).
    """

    duplicate_threshold: float
    lookalike_threshold: float
    name_taken: NameTaken = NameTaken.REFUSE
    strict: bool = False
    allow_duplicate: bool = False

    def screen(self, g: Gallery, plan: EnrollmentPlan, exclude_id: str | None = None) -> list[str]:
        """Warnings about look-alikes of ``plan`` in ``g``; raises on a refused duplicate."""
        s = screen_new_person(
            g,
            plan.name,
            plan.templates,
            duplicate_threshold=self.duplicate_threshold,
            lookalike_threshold=self.lookalike_threshold,
            exclude_id=exclude_id,
        )
        return s.enforce(strict=self.strict, allow_duplicate=self.allow_duplicate)


@dataclass
class EnrollResult:
    """What committing one plan did: ``action`` is ``"enrolled"`` or ``"updated"``, or
    ``error`` says why nothing happened (only when several plans were committed)."""

    plan: EnrollmentPlan
    action: str | None = None
    info: IdentityInfo | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report entry of the CLI (``gallery enroll --json``)."""
        d: dict[str, Any] = {
            "name": self.plan.name,
            "images": [c.to_dict() for c in self.plan.candidates],
        }
        if self.error is not None:
            d["error"] = self.error
            return d
        if self.action is not None:
            d["action"] = self.action
        if self.info is not None:
            d.update(
                id=self.info.id,
                templates=self.info.n_templates,
                rejected=len(self.plan.rejected),
                looks_like=self.warnings,
            )
        return d


def commit_plan(g: Gallery, plan: EnrollmentPlan, policy: EnrollPolicy) -> EnrollResult:
    """Apply one plan to the open gallery ``g``; raises an :class:`EdgefaceError` when the
    plan is refused (no usable face, name taken, duplicate)."""
    require_templates(plan)
    existing = g.by_name(plan.name)
    if existing and policy.name_taken is NameTaken.ADD:
        if len(existing) > 1:
            raise GalleryError(f"{len(existing)} people are named {plan.name!r}")
        target = existing[0].id
        warnings = policy.screen(g, plan, target)
        return EnrollResult(plan, "updated", g.add_templates(target, plan.templates), warnings)
    if existing and policy.name_taken is not NameTaken.NEW:
        raise GalleryError(
            f"{plan.name!r} is already enrolled (id {existing[0].id}); use --add to "
            "add these photos to that person or --new for a different person"
        )
    warnings = policy.screen(g, plan)
    return EnrollResult(plan, "enrolled", g.add_identity(plan.name, plan.templates), warnings)


def commit_plans(
    gf: GalleryFile, plans: Sequence[EnrollmentPlan], policy: EnrollPolicy
) -> list[EnrollResult]:
    """Apply every plan in one locked edit of ``gf``.

    One plan: its refusal is raised and nothing changes. Several plans (``--dir``): a refused
    person is recorded in its result's ``error`` and the others are still enrolled.
    """
    results: list[EnrollResult] = []
    with gf.edit() as g:
        for plan in plans:
            try:
                results.append(commit_plan(g, plan, policy))
            except EdgefaceError as exc:
                if len(plans) == 1:
                    raise
                results.append(EnrollResult(plan, error=str(exc)))
    return results


def dry_run(
    g: Gallery, plans: Sequence[EnrollmentPlan], policy: EnrollPolicy
) -> Iterator[dict[str, Any]]:
    """Screen every plan against ``g`` without changing it: the report entries of
    ``--dry-run``, one per plan as it is screened (a refused duplicate raises)."""
    for plan in plans:
        existing = g.by_name(plan.name) if policy.name_taken is NameTaken.ADD else []
        warnings = policy.screen(g, plan, existing[0].id if existing else None)
        yield {
            "name": plan.name,
            "templates": len(plan.templates),
            "images": [c.to_dict() for c in plan.candidates],
            "looks_like": warnings,
        }


__all__ = ["EnrollPolicy", "EnrollResult", "NameTaken", "commit_plan", "commit_plans", "dry_run"]
