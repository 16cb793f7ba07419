"""Carrying signed bundles to devices over OpenSSH (``edgeface deploy push``)."""
