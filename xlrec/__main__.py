"""`python -m xlrec` and the `xlrec` command.

A SIGINT or SIGTERM while the command's modules are still being imported ends it at once with one
line: nothing exists yet to close, and an interrupt inside a library's import leaves a traceback or
a half-imported module behind. `xlrec.cli.main` installs the handler that closes runs.
"""

import os
import signal
import sys


def _before_main(signum, frame) -> None:
    sys.stderr.write(f"xlrec: interrupted ({signal.Signals(signum).name})\n")
    os._exit(130)


def run() -> None:
    signal.signal(signal.SIGINT, _before_main)
    signal.signal(signal.SIGTERM, _before_main)
    from xlrec.cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
