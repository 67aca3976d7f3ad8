"""Process pools whose workers can neither hold their parent's locks nor outlive it.

:func:`worker_pool` starts workers with the ``spawn`` method: a fresh interpreter (fork + exec)
that inherits no descriptor but the ones multiprocessing passes, so a worker never holds the PKI
folder's lock (a ``fork`` child would keep the ``flock`` after a SIGKILLed parent and block every
later act). Each worker asks the kernel to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``
on Linux) and, as a second guard and elsewhere, watches its parent and exits when it is gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
_WATCH_SECONDS = 0.5


def _die_with(parent: int) -> None:
    """Worker initializer: exit as soon as ``parent`` is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watcher below still runs
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="airgap-parent-watch", daemon=True).start()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that die with this one (see the module docstring)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with,
        initargs=(os.getpid(),),
    )


__all__ = ["worker_pool"]
