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


def _forget_handled_interrupt(code: int) -> None:
    """CPython 3.11 marks a KeyboardInterrupt as unhandled when it passes through code that C runs
    with PyRun_String (inside an import, say), even once main() has handled it, and then ends the
    process by SIGINT (status -2, not 130): seen in 3 of 25 interrupts in the first seconds of
    `xlrec train`. The interrupt was handled, so the mark is cleared; where it cannot be reached
    (another CPython), an interrupted command exits 130 itself after the exit handlers."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):
        if code == 130:
            import atexit

            sys.stdout.flush()
            sys.stderr.flush()
            atexit._run_exitfuncs()
            os._exit(130)


def run() -> None:
    signal.signal(signal.SIGINT, _before_main)
    signal.signal(signal.SIGTERM, _before_main)
    from xlrec.cli import main

    code = main()
    _forget_handled_interrupt(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
