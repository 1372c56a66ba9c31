"""Ending a command's process without the interpreter's module teardown.

With torch and Lightning loaded, CPython's shutdown frees module state object by object: about 1.2 s on a
2-core machine, measured after `import torch, pytorch_lightning`. That is a fifth of a one-step run's whole
process, and it comes after every record is written. Python has no switch to skip only that part, so the entry
point ends the process the way the interpreter would, less the teardown:
1. Where a thread that is not a daemon is still alive, it takes the normal exit, which waits for that thread
   (thread-pool workers among them).
2. It runs the atexit handlers: logging's shutdown flushes and closes train.log, W&B stops its service
   process, multiprocessing reaps its children, weakref finalizers run.
3. It flushes stdout and stderr, then leaves with `os._exit` and the exit code `sys.exit` would give.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def exit_code(code: object) -> int:
    """The process exit code of `SystemExit(code)`; a message is printed as the interpreter prints it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _threads_still_running() -> bool:
    main = threading.main_thread()
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main)


def run_and_exit(entry: Callable[[], object]) -> NoReturn:
    """Run `entry`, then end the process with its exit code and without module teardown (module docstring).
    An exception other than SystemExit propagates: its traceback and the normal exit, as before."""
    try:
        entry()
        code: object = 0
    except SystemExit as err:
        code = err.code
    if _threads_still_running():
        raise SystemExit(code)
    status = exit_code(code)
    atexit._run_exitfuncs()  # the interpreter's own step, as at a normal exit (handlers run in reverse order)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to write
            pass
    os._exit(status)
