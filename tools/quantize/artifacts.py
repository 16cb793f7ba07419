"""The output directory of a quantization run and its manifest.

Every artifact is written under a temporary name in the output directory and renamed only
when it is complete, so an interrupted run (Ctrl-C, full disk, converter crash) never leaves a
file with a final name that a device could pick up. The manifest records enough to rebuild or
audit an artifact: its sha256, the float source's sha256, the calibration set, tool versions,
preprocessing and quantization parameters.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeface.errors import StorageError
from edgeface.modelstore.resolver import sha256_file
from edgeface.storage import atomic_write, staged_path

MANIFEST_NAME = "artifacts.json"
TOOL_PACKAGES = (
    "edgeface",
    "onnx",
    "onnxruntime",
    "onnx2tf",
    "tensorflow",
    "tensorflow-cpu",
    "tf_keras",
    "ai-edge-litert",
    "numpy",
)


def tool_versions() -> dict[str, str]:
    """Installed versions of the packages that shape an artifact's bytes."""
    versions: dict[str, str] = {}
    for name in TOOL_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass
class ArtifactRecord:
    """One line of the manifest."""

    name: str
    file: str
    model: str
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "fp16" | "int8"
    sha256: str
    size: int
    source: str
    source_sha256: str
    input_layout: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)


class ArtifactDir:
    """An output directory that only ever shows complete artifacts under their final names."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe."):
                pass
        except OSError as exc:
            raise StorageError(
                f"output directory {self.root} is not writable: {exc.strerror or exc}"
            ) from exc
        self.records: dict[str, ArtifactRecord] = self._load()

    def _load(self) -> dict[str, ArtifactRecord]:
        path = self.root / MANIFEST_NAME
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return {a["name"]: ArtifactRecord(**a) for a in raw.get("artifacts", [])}
        except (OSError, ValueError, TypeError, KeyError):
            return {}  # a foreign or old manifest is rebuilt, never half-trusted

    @contextlib.contextmanager
    def staging(self, final_name: str) -> Iterator[Path]:
        """Yield a temporary path in the output dir; renamed to ``final_name`` on success.

        On any exception (KeyboardInterrupt included) the temporary file is removed and the
        final name is left untouched, so a previous good artifact survives a failed rebuild.
        """
        with staged_path(self.root / final_name) as tmp:
            yield tmp

    def add(self, record: ArtifactRecord) -> ArtifactRecord:
        self.records[record.name] = record
        self.write_manifest()
        return record

    def record_file(self, name: str, file_name: str, **fields: Any) -> ArtifactRecord:
        """Hash a finished artifact and add it to the manifest."""
        path = self.root / file_name
        return self.add(
            ArtifactRecord(
                name=name,
                file=file_name,
                sha256=sha256_file(path),
                size=path.stat().st_size,
                **fields,
            )
        )

    def write_manifest(self) -> Path:
        payload = {
            "schema": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tools": tool_versions(),
            "artifacts": [asdict(r) for _, r in sorted(self.records.items())],
        }
        dest = self.root / MANIFEST_NAME
        text = json.dumps(payload, indent=2) + "\n"
        # 0644: the manifest is read by other users
        atomic_write(dest, text.encode("utf-8"), mode=0o644, what="artifact manifest")
        return dest

    def path(self, name: str) -> Path:
        return self.root / self.records[name].file
