"""Minimum face sizes: five thresholds with five jobs, named apart and documented here.

Sizes are the side of the detector's square face box, in pixels of the frame. From the
smallest to the largest default:

``DETECTOR_MIN_FACE`` (20) -- ``DetectorConfig.min_face_size``
    The smallest face the MTCNN image pyramid searches for. A cost knob: a larger value
    drops the finest pyramid levels, most of a frame's detection time. Must be >= 12.
``PIPELINE_MIN_FACE`` (24) -- ``PipelineConfig.min_face_size`` / ``FacePipeline``
    Faces found but smaller than this are ignored by ``verify`` / ``identify``: MTCNN finds
    them, but a crop upscaled that far embeds poorly.
``ENROLL_MIN_FACE`` (60) -- ``QualityGates.min_face_size``; kiosk ``[enroll] min_face_size``
    A face must be at least this big to become a gallery template.
``POLICY_MIN_FACE`` (80) -- ``PolicyConfig.min_face_size``; door ``[policy] min_face_size``
    A door frame counts towards k-of-n only with a face this big (people at the door, not
    passers-by in the background). The kiosk's ``[verify] min_face_size`` is the same knob,
    ``KIOSK_VERIFY_MIN_FACE`` (60) by default: a person stands closer to a screen.
``detector_search_size`` -- derived, not configured
    The door and the kiosk do not search for faces far below their gates: the door's detector
    searches down to ``DOOR_SEARCH_SHARE`` (0.8) x the policy minimum, the kiosk's down to
    ``KIOSK_SEARCH_SHARE`` (0.6) x its smallest gate (so it can say "come closer").

The TOML keys keep their names (``min_face_size`` in each section) so existing config files
stay valid; the section says which of the thresholds a key is.
"""

from __future__ import annotations

DETECTOR_MIN_FACE = 20.0
PIPELINE_MIN_FACE = 24.0
ENROLL_MIN_FACE = 60.0
POLICY_MIN_FACE = 80.0
KIOSK_VERIFY_MIN_FACE = 60.0

#: the door's detector searches down to this share of ``[policy] min_face_size``
DOOR_SEARCH_SHARE = 0.8
#: the kiosk's detector searches down to this share of its smallest gate
KIOSK_SEARCH_SHARE = 0.6
#: P-Net's window: no detector can search for a smaller face
SMALLEST_DETECTABLE = 12.0


def detector_search_size(gate: float, share: float, floor: float = SMALLEST_DETECTABLE) -> float:
    """The detector minimum for a gate of ``gate`` px: ``share`` x gate, at least ``floor``.

    Faces below the gate are ignored anyway; not searching for them shrinks the MTCNN image
    pyramid, which is most of the per-frame cost. The margin (``share`` < 1) keeps a face
    whose box comes out a little smaller than the gate in one frame from being lost.
    """
    return max(floor, share * gate)
