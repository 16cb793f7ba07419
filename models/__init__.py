"""Model manifest (``manifest.toml``), installed as ``edgeface_models``. No weights live here."""
