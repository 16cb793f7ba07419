"""What other threads tell the door loop: camera events and the stop request.

The camera wrapper must report a lost camera to the daemon and ask it whether to keep
retrying, while the daemon reads frames from that camera. An inbox created first and handed
to both breaks the cycle: the source reports into it and polls its stop flag, the daemon
drains it and sets the flag, and neither holds the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Literal

from edgeface.camera.base import CameraEvent

#: an event waiting for the loop, with its detail: a camera event, or the signal (by name)
#: that asked the daemon to stop; each is audited under its own name
Pending = tuple[CameraEvent | Literal["signal"], str]


class DoorInbox:
    """Camera events and the stop flag, shared by the camera source, the feed and the daemon.

    ``on_camera_lost`` runs at once on the reporting thread (the daemon passes its relay's
    ``lock``): the relay must not wait for the loop to get to the event.
    """

    def __init__(self, on_camera_lost: Callable[[], object] | None = None) -> None:
        self.stop = threading.Event()
        self.events: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self.on_camera_lost = on_camera_lost

    def camera_event(self, event: CameraEvent, detail: str) -> None:
        """A :class:`~edgeface.camera.base.CameraEventHook` (any thread; never blocks)."""
        if event is CameraEvent.LOST and self.on_camera_lost is not None:
            self.on_camera_lost()
        self.events.put((event, detail))

    def signal(self, name: str) -> None:
        self.events.put(("signal", name))

    def stopping(self) -> bool:
        """The camera wrapper's ``should_stop``: True once the daemon stops or was asked to."""
        return self.stop.is_set()

    def next(self) -> Pending | None:
        """The oldest waiting event, or None (one at a time: an event whose audit record
        fails stays handled, the rest stay queued)."""
        try:
            return self.events.get_nowait()
        except queue.Empty:
            return None
