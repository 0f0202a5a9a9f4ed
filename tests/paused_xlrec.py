"""`python paused_xlrec.py POINT ARGS...`: `xlrec ARGS...` held at a named point, so a test can signal the
process inside a narrow window deterministically. Test-only: production code has no hook for it.

Points: `start` (before the tracking store is checked: no run exists yet) and `setup` (the run exists,
its params are not logged yet). The process prints `[xlrec] paused at POINT` and sleeps 60 s there.
"""

from __future__ import annotations

import functools
import sys
import time


def _pause_before(module, name: str, point: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        print(f"[xlrec] paused at {point}", file=sys.stderr, flush=True)
        time.sleep(60)
        return original(*args, **kwargs)

    setattr(module, name, paused)


def main() -> int:
    point, argv = sys.argv[1], sys.argv[2:]
    if point == "start":
        from xlrec.platform.tracking import uri

        _pause_before(uri, "check_reachable", point)
    elif point == "setup":
        from xlrec.platform.tracking import train_run

        _pause_before(train_run, "flatten_config", point)
    else:
        raise SystemExit(f"unknown pause point {point!r}")
    from xlrec.cli import main as xlrec_main

    return xlrec_main(argv)


if __name__ == "__main__":
    sys.exit(main())
