"""A test hook that kills the process at the N-th atomic publish, to prove crash safety.

``AIRGAP_TEST_KILL_AT_WRITE=N`` makes the N-th call of :func:`crash_point` in this process send
itself SIGKILL: no ``finally``, no ``atexit``, exactly what a power cut or ``kill -9`` does.
:func:`airgap.core.atomic.publish` calls it just before every rename or link that publishes a
file or folder, and so does :func:`airgap.core.atomic.move`. Unset (always, outside tests) it
costs one environment lookup. It can only stop the process that has it set; it changes nothing.
"""

from __future__ import annotations

import os
import signal

ENV_KILL_AT_WRITE = "AIRGAP_TEST_KILL_AT_WRITE"
_calls = 0


def crash_point() -> None:
    """Die with SIGKILL here if this is the write ``$AIRGAP_TEST_KILL_AT_WRITE`` names."""
    global _calls
    want = os.environ.get(ENV_KILL_AT_WRITE)
    if not want:
        return
    _calls += 1
    if want.strip() == str(_calls):
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV_KILL_AT_WRITE", "crash_point"]
