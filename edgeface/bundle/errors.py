"""Bundle errors: one line for the operator, one exit code per kind of failure."""

from __future__ import annotations

from edgeface.errors import EdgefaceError


class BundleError(EdgefaceError):
    """The bundle is refused: bad or unknown signature, tampered, truncated, expired, too old,
    for another target, or an archive member that could escape or bloat the release."""

    exit_code = 15


class SelfTestError(BundleError):
    """The bundle is genuine but does not work here (self-test, service restart or health
    check failed); the device stays on (or went back to) the release it ran before."""

    exit_code = 16


class DeployError(EdgefaceError):
    """``deploy push`` could not install on at least one host."""

    exit_code = 17
