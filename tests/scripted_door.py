"""The real door daemon with a scripted identifier, as a process of its own (a test tool).

Fault-injection tests start it, kill it and unplug its camera without loading any model. It
was ``python -m edgeface.door.scripted`` in the runtime package until issue 14 moved the door's
test doubles into ``tests/doubles.py``; run it as ``python tests/scripted_door.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from doubles import ScriptedIdentifier, enrolled, stranger


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/scripted_door.py --config door.toml --script enrolled``: the real
    daemon (camera, actuator, audit, signals, sd_notify) with a scripted identifier, for
    fault-injection tests (kill it, unplug the camera) without loading models."""
    import argparse
    import logging

    from edgeface.door.config import load_config
    from edgeface.door.service import build_daemon

    p = argparse.ArgumentParser(prog="python tests/scripted_door.py")
    p.add_argument("--config", required=True)
    p.add_argument("--script", choices=["enrolled", "stranger"], default="enrolled")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(args.config)
    obs = enrolled() if args.script == "enrolled" else stranger()
    daemon = build_daemon(cfg, identifier=ScriptedIdentifier([obs]))
    daemon.install_signal_handlers()
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
