"""The touch-screen kiosk: verify hands-free, enroll with consent, forget me, operator screens.

``config`` (kiosk.toml), ``engine`` (camera + recognition threads, the screen's state
machine), ``guidance`` (what to tell the person), ``sessions`` and ``secrets_store`` (CSRF,
PIN and invitation hashes), ``app`` (Starlette routes and security headers), ``service``
(wiring and ``--check``). Only ``app`` needs the ``kiosk`` extra (Starlette, uvicorn).
"""
