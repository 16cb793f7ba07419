"""Where model files come from: the manifest, the resolver that finds and checks them, fetch."""

from edgeface.modelstore.manifest import ModelEntry, load_manifest
from edgeface.modelstore.resolver import ModelResolver, resolve_model, sha256_file

__all__ = ["ModelEntry", "ModelResolver", "load_manifest", "resolve_model", "sha256_file"]
