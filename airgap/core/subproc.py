"""Every child process airgap starts (istioctl, openssl, age, ...) is started here, scrubbed.

A child inherits airgap's environment minus its secrets: every ``AIRGAP_*`` variable (the PKI
passphrase, the PKCS#11 PIN, the log key, ...) and any variable whose name says it holds a
passphrase, password or PIN. Credentials a child legitimately needs to reach a cluster (a cloud
CLI's token that a kubeconfig exec plugin reads, proxies) are kept. Nothing else in airgap may call
:mod:`subprocess` directly (a test checks this).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

_SECRET_NAME = re.compile(r"^AIRGAP_|PASSPHRASE|PASSWORD|PASSWD|(^|_)PIN($|_)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True for environment variable names a child must never see."""
    return bool(_SECRET_NAME.search(name))


def child_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without secrets, plus ``extra``.

    ``extra`` is what the caller sets on purpose (``KUBECONFIG``); it is scrubbed too.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not is_secret_name(k)}
    for k, v in (extra or {}).items():
        if is_secret_name(k):
            raise ValueError(f"refusing to pass {k} to a child process")
        env[k] = v
    return env


def popen(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, inherit: bool = True, **kwargs: Any
) -> subprocess.Popen[Any]:
    """:class:`subprocess.Popen` with a scrubbed environment (``env`` adds variables; ``inherit=False``:
    the child gets ``env`` only)."""
    return subprocess.Popen(list(argv), env=child_env(env, base=None if inherit else {}), **kwargs)


def run(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, inherit: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """:func:`subprocess.run` with a scrubbed environment (``env`` adds variables; ``inherit=False``:
    the child gets ``env`` only)."""
    return subprocess.run(list(argv), env=child_env(env, base=None if inherit else {}), **kwargs)


__all__ = ["child_env", "is_secret_name", "popen", "run"]
