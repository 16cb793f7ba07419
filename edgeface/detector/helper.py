"""Helper processes that take a share of every frame's cascade work.

Why processes and not threads: on the 2-core dev VM, two threads splitting one frame were
only 7 % faster than one (measured interleaved in one process). The small pyramid levels and
the box maths are many short NumPy calls that hold the GIL, so the threads mostly wait for
each other. Two processes each run at full speed.

How: the frame sits in a shared memory file (``memfd``; the uint8 frame and its normalized
copy, written once by the main process), so a helper never receives pixels through the
pipe. Requests and results (scales, boxes, network outputs: a few KB) go through the
helper's stdin/stdout as a JSON header plus raw array bytes. Nothing is pickled, and the
helper runs ``edgeface.detector.helper_main`` in a fresh interpreter (SIGINT ignored from its
first statement), so nothing of the caller's ``__main__`` is re-run (as ``multiprocessing``
would).

A helper that dies, hangs or answers with an error is reported once and stopped; its share
is then done in the main process, so detection goes on (slower) with the same results.

Where Linux allows it, each helper runs on a CPU of its own and the calling thread is kept
on another one while a frame is shared (:meth:`WorkShare.pinned`; ``DetectorConfig.pin_cpus``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeface.blas_threads import blas_is_single_threaded, single_threaded_env
from edgeface.detector.normalize import normalize
from edgeface.detector.stages import Candidates, CropStage, ProposalStage

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<I")
#: byte offset of the normalized frame in the shared file: after the uint8 frame, aligned
_ALIGN = 64


class HelperError(RuntimeError):
    """A helper process died, or could not do its share."""


# -- wire format: JSON header + raw arrays ---------------------------------------------------


def write_message(stream: BinaryIO, header: dict, arrays: list[np.ndarray] = ()) -> None:
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = {**header, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
    encoded = json.dumps(header).encode()
    stream.write(_HEADER.pack(len(encoded)) + encoded + b"".join(a.tobytes() for a in arrays))
    stream.flush()


def read_message(stream: BinaryIO) -> tuple[dict, list[np.ndarray]] | None:
    """The next message, or None at end of stream."""
    raw = stream.read(_HEADER.size)
    if not raw:
        return None
    header = json.loads(_read_exactly(stream, _HEADER.unpack(raw)[0]))
    arrays = []
    for dtype, shape in header.pop("arrays"):
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise HelperError(f"refusing array of dtype {dtype}")
        count = int(np.prod(shape))
        data = _read_exactly(stream, count * dt.itemsize)
        arrays.append(np.frombuffer(data, dt, count).reshape(shape))
    return header, arrays


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise HelperError(f"helper stream ended after {len(data)} of {n} bytes")
    return data


# -- the shared frame -------------------------------------------------------------------------


class SharedFrame:
    """The current frame (uint8 RGB) and its normalized float32 copy, in one shared file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.shape: tuple[int, int, int] | None = None
        self._map: mmap.mmap | None = None
        self.image = np.empty((0, 0, 3), np.uint8)
        self.normalized = np.empty((0, 0, 3), np.float32)

    def map(self, shape: tuple[int, int, int], grow: bool) -> None:
        """View the file as a frame of ``shape`` (the owner ``grow``s the file first)."""
        count = int(np.prod(shape))
        offset = -(-count // _ALIGN) * _ALIGN
        size = offset + 4 * count
        if grow:
            os.ftruncate(self.fd, size)
        self.close()
        self._map = mmap.mmap(self.fd, size)
        self.image = np.frombuffer(self._map, np.uint8, count, 0).reshape(shape)
        self.normalized = np.frombuffer(self._map, np.float32, count, offset).reshape(shape)
        self.shape = shape

    def close(self) -> None:
        self.image = np.empty((0, 0, 3), np.uint8)
        self.normalized = np.empty((0, 0, 3), np.float32)
        if self._map is not None:
            # a caller may still hold a view of the old frame: then GC frees the map later
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None


def _shared_fd() -> int:
    """An anonymous file in memory; a deleted temporary file where memfd is missing."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("edgeface-frame", 0)
        except OSError:  # e.g. filtered by a seccomp policy
            pass
    handle, path = tempfile.mkstemp(prefix="edgeface-frame-")
    os.unlink(path)
    return handle


# -- main-process side ------------------------------------------------------------------------


#: how a helper starts: Ctrl-C reaches the whole process group, and the main process decides
#: what happens (it closes the helpers' pipes; they exit at EOF), so the helper ignores SIGINT
#: before it imports anything: one arriving during the numpy import would print a traceback
_HELPER_BOOT = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import runpy; "
    "runpy.run_module('edgeface.detector.helper_main', run_name='__main__', alter_sys=True)"
)


class HelperProcess:
    """One helper process: it opens the MTCNN weights itself and answers share requests."""

    def __init__(
        self, weights: Path, frame_fd: int, cpu: int | None = None, *, backend: str = "numpy"
    ) -> None:
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _HELPER_BOOT, str(weights), str(frame_fd), backend],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(frame_fd,),
            env=single_threaded_env(),  # the helper is this core's worker: no BLAS threads
        )
        if cpu is not None:
            _set_affinity(self._process.pid, cpu)

    def announce_frame(self, shape: tuple[int, int, int]) -> None:
        """The shared frame now has ``shape`` (no answer: the next request shows the result)."""
        self._send({"cmd": "frame", "shape": list(shape)})

    def request_levels(self, scales: list[float], threshold: float, nms: float) -> None:
        self._send({"cmd": "levels", "scales": scales, "threshold": threshold, "nms": nms})

    def request_crops(self, net: str, boxes: np.ndarray) -> None:
        self._send({"cmd": "crops", "net": net}, [boxes])

    def receive(self, timeout: float = 30.0) -> list[np.ndarray]:
        """The arrays that answer the last request.

        A helper that does not answer within ``timeout`` seconds (the first answer includes
        its start-up) is taken for hung: a door unit must not wait forever on it.
        """
        if self._process is None:
            raise HelperError("helper process is closed")
        # one request at a time, each answer read whole: nothing waits in the read buffer,
        # so the pipe itself tells whether an answer has begun
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            raise HelperError(f"helper gave no answer within {timeout:.0f} s")
        try:
            message = read_message(self._process.stdout)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSON, shapes, dtypes
            raise HelperError(f"helper answer unreadable: {exc!r}") from exc
        if message is None:
            raise HelperError(f"helper process exited (code {self._process.poll()})")
        header, arrays = message
        if "error" in header:
            raise HelperError(f"helper failed: {header['error']}")
        return arrays

    def _send(self, header: dict, arrays: list[np.ndarray] = ()) -> None:
        if self._process is None:
            raise HelperError("helper process is closed")
        try:
            write_message(self._process.stdin, header, arrays)  # type: ignore[arg-type]
        except OSError as exc:
            raise HelperError(f"helper process gone ({exc})") from exc

    def close(self) -> None:
        """Stop the helper: its stdin ends, it exits."""
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class InProcess:
    """The frame's whole work in this process: :class:`WorkShare`'s interface, no helpers."""

    def pinned(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def send_frame(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rgb, normalize(rgb)

    def levels(
        self,
        stage: ProposalStage,
        image_u8: np.ndarray,
        normalized: np.ndarray,
        scales: list[float],
        threshold: float,
        nms: float,
    ) -> list[Candidates]:
        return stage.levels(image_u8, normalized, scales, threshold, nms)

    def crops(
        self, stage: CropStage, net: str, normalized: np.ndarray, boxes: np.ndarray
    ) -> list[np.ndarray]:
        return stage.run_on_crops(normalized, boxes)


class WorkShare:
    """Splits one frame's P-Net levels and R-/O-Net crops between this process and helpers.

    Every part is computed by the same code as in a single process, and results are put
    back in their original order, so the faces found do not depend on the split.
    """

    #: fewer crops than this per party are not worth a round trip (a small message took
    #: 0.06 ms through a pipe here; a crop ~0.1 ms through R-Net)
    MIN_CROPS = 4
    #: a pyramid level's fixed cost (NumPy calls, NMS), in pixels of level area: fitted by hand
    #: to one-thread timings of a 640x480 pyramid on x86 (~0.14 ms per 1000 pixels + ~0.3 ms)
    LEVEL_OVERHEAD = 2000

    def __init__(
        self, weights: Path, helpers: int, pin_cpus: bool = True, *, backend: str = "numpy"
    ) -> None:
        self.frame = SharedFrame(_shared_fd())
        if not blas_is_single_threaded():
            _warn_blas_threads()
        self._cpus = _cpu_plan(helpers + 1) if pin_cpus else None
        cpus = self._cpus[1:] if self._cpus else [None] * helpers
        self._helpers = [
            HelperProcess(weights, self.frame.fd, cpu, backend=backend) for cpu in cpus
        ]

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep the calling thread on its own CPU while it shares a frame with the helpers.

        Why: unpinned, a helper often ran on the caller's CPU. The likely cause is that a
        pipe write wakes the reader as a hand-over (Linux expects the writer to wait next),
        while here the writer goes on computing its own share. Measured on the 2-core VM,
        four detectors created one after another in a process (640x480, min face 40):
        unpinned, the first took 14.8-15.3 ms a frame and the later ones 17.4-19.3 ms;
        pinned, all took 14.4-14.9 ms. The caller's CPU set is restored afterwards.
        """
        if self._cpus is None or not self._helpers:
            yield
            return
        before = os.sched_getaffinity(0)
        pinned = _set_affinity(0, self._cpus[0])
        try:
            yield
        finally:
            if pinned:
                os.sched_setaffinity(0, before)

    @property
    def active(self) -> bool:
        return bool(self._helpers)

    def send_frame(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Put ``rgb`` and its normalized copy where the helpers see them; returns both."""
        shape = tuple(rgb.shape)
        if shape != self.frame.shape:
            self.frame.map(shape, grow=True)  # type: ignore[arg-type]
            for helper in list(self._helpers):
                try:
                    helper.announce_frame(shape)  # type: ignore[arg-type]
                except HelperError as exc:
                    self._drop(helper, exc)
        np.copyto(self.frame.image, rgb)
        normalize(self.frame.image, out=self.frame.normalized)
        return self.frame.image, self.frame.normalized

    def levels(
        self,
        stage: ProposalStage,
        image_u8: np.ndarray,
        normalized: np.ndarray,
        scales: list[float],
        threshold: float,
        nms: float,
    ) -> list[Candidates]:
        """Per-scale candidates, each scale computed by one party (balanced by level area)."""
        h, w = image_u8.shape[:2]
        costs = [int(h * s) * int(w * s) + self.LEVEL_OVERHEAD for s in scales]
        parties = _balance(costs, len(self._helpers) + 1)

        def here(share: list[int]) -> list[Candidates]:
            return stage.levels(image_u8, normalized, [scales[i] for i in share], threshold, nms)

        asked, local = [], list(parties[0])
        for helper, share in zip(list(self._helpers), parties[1:], strict=True):
            try:
                if share:
                    helper.request_levels([scales[i] for i in share], threshold, nms)
                    asked.append((helper, share))
            except HelperError as exc:
                self._drop(helper, exc)
                local += share
        found = dict(zip(local, here(local), strict=True))
        for helper, share in asked:
            try:
                arrays = helper.receive()  # boxes, scores of each level in turn
                found.update(
                    (i, Candidates(*arrays[2 * k : 2 * k + 2])) for k, i in enumerate(share)
                )
            except HelperError as exc:
                self._drop(helper, exc)
                found.update(zip(share, here(share), strict=True))
        return [found[i] for i in range(len(scales))]

    def crops(
        self, stage: CropStage, net: str, normalized: np.ndarray, boxes: np.ndarray
    ) -> list[np.ndarray]:
        """``stage.run_on_crops(normalized, boxes)``, the boxes cut into one run per party."""
        parties = min(len(self._helpers) + 1, len(boxes) // self.MIN_CROPS)
        if parties < 2:
            return stage.run_on_crops(normalized, boxes)
        bounds = np.linspace(0, len(boxes), parties + 1).round().astype(int)
        chunks = [boxes[a:b] for a, b in itertools.pairwise(bounds)]
        parts: list[list[np.ndarray] | None] = [None] * parties
        asked = []
        for k, helper in enumerate(list(self._helpers)[: parties - 1], start=1):
            try:
                helper.request_crops(net, chunks[k])
                asked.append((helper, k))
            except HelperError as exc:
                self._drop(helper, exc)
        parts[0] = stage.run_on_crops(normalized, chunks[0])
        for helper, k in asked:
            try:
                parts[k] = helper.receive()
            except HelperError as exc:
                self._drop(helper, exc)
        for k, part in enumerate(parts):  # shares whose helper failed are done here
            if part is None:
                parts[k] = stage.run_on_crops(normalized, chunks[k])
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]

    def _drop(self, helper: HelperProcess, exc: HelperError) -> None:
        if helper not in self._helpers:
            return
        log.warning("MTCNN helper process stopped (%s); its share now runs in this process", exc)
        helper.close()
        self._helpers.remove(helper)

    def close(self) -> None:
        for helper in self._helpers:
            helper.close()
        self._helpers = []
        self.frame.close()
        if self.frame.fd >= 0:
            os.close(self.frame.fd)
            self.frame.fd = -1


@functools.cache
def _warn_blas_threads() -> None:
    """Once per process: the detector still works, but at about half its speed."""
    log.warning(
        "numpy's BLAS may run several threads in this process; they compete with the "
        "detector's helper processes (about 2x slower measured). Set OPENBLAS_NUM_THREADS=1 "
        "before numpy is imported, as the edgeface command does, or use "
        "DetectorConfig(workers=1)."
    )


#: counts work shares, so that a second detector in the process starts on other CPUs
_plans = itertools.count()


def _cpu_plan(parties: int) -> list[int] | None:
    """One CPU per party (the caller's first), or None where that cannot be done.

    Successive plans start further along the allowed CPUs, so two detectors on a 4-core
    device do not pile onto the same two cores.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < parties:
        return None
    start = next(_plans) * parties
    return [cpus[(start + k) % len(cpus)] for k in range(parties)]


def _set_affinity(pid: int, cpu: int) -> bool:
    """Bind ``pid`` (0: the calling thread) to ``cpu``; False where the system refuses."""
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError as exc:  # e.g. a CPU taken away by a cgroup since the plan was made
        log.debug("could not bind %s to CPU %d: %s", pid or "caller", cpu, exc)
        return False
    return True


def _balance(costs: list[float], parties: int) -> list[list[int]]:
    """Indices of ``costs`` per party, largest first to the least loaded (greedy)."""
    loads = [0.0] * parties
    shares: list[list[int]] = [[] for _ in range(parties)]
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        least = loads.index(min(loads))
        shares[least].append(i)
        loads[least] += costs[i]
    return [sorted(share) for share in shares]


# -- helper-process side ----------------------------------------------------------------------


def serve(
    weights: Path, fd: int, requests: BinaryIO, replies: BinaryIO, backend: str = "numpy"
) -> None:
    """Answer requests until ``requests`` ends.

    ``backend`` is a whole-cascade backend (one ``weights`` file, the net chosen by name);
    the stages are built as the detector builds its own.
    """
    from edgeface.backends.base import open_session
    from edgeface.detector.stages import cascade_stages

    pnet, rnet, onet = cascade_stages(lambda net: open_session(weights, backend, net=net))
    crop_stages: dict[str, CropStage] = {"rnet": rnet, "onet": onet}
    frame = SharedFrame(fd)
    while (message := read_message(requests)) is not None:
        header, arrays = message
        try:
            cmd = header["cmd"]
            if cmd == "frame":
                frame.map(tuple(header["shape"]), grow=False)  # type: ignore[arg-type]
                continue  # no answer: the next request shows whether it worked
            if cmd == "levels":
                found = pnet.levels(
                    frame.image,
                    frame.normalized,
                    header["scales"],
                    header["threshold"],
                    header["nms"],
                )
                out = [a for cand in found for a in (cand.boxes, cand.scores)]
            elif cmd == "crops":
                out = crop_stages[header["net"]].run_on_crops(frame.normalized, arrays[0])
            else:
                raise ValueError(f"unknown request {cmd!r}")
            write_message(replies, {}, out)
        except Exception as exc:  # reported to the main process, which does the share itself
            write_message(replies, {"error": f"{type(exc).__name__}: {exc}"})
