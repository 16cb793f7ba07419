"""Signed model bundles and their installation on a device.

An operator builds one file holding the runtime's models, the embedder's own FAR calibration,
the accuracy report and self-test vectors, signs it with Ed25519 (:mod:`.keys`,
:mod:`.envelope`, :mod:`.build`); a device verifies it against its trusted keys, unpacks it
safely (:mod:`.unpack`), proves it works there (:mod:`.selftest`) and switches to it
atomically, rolling back on failure (:mod:`.device`). Layout and flow: ``docs/deploy.md``.
"""
