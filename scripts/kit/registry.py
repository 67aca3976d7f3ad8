"""Run a packaging command (pip, uv) isolated from this machine's pip configuration.

The lock and the kit must not depend on local wheel folders, extra indexes or constraint files
that a machine's pip configuration may add (``PIP_FIND_LINKS``, ``extra-index-url``,
``constraint``): those are not what a fresh machine, CI or the officer's build host would see.
Yet the command must still reach the package registry the machine uses. So, at run time, this
reads only the settings that say *how* to reach the registry (index URL, CA bundle, proxy, trusted
host, timeout, retries) from pip's own view of its configuration (``pip config list``, which
covers files and ``PIP_*`` variables), drops everything else, and runs the command with
``PIP_CONFIG_FILE=/dev/null`` plus just those settings, for pip and for uv alike. No registry
host is written anywhere: with no index URL configured, pip and uv use their built-in default.

Usage: python scripts/kit/registry.py COMMAND [ARG ...]
"""

from __future__ import annotations

import os
import subprocess
import sys

# pip option name -> (pip variable, uv variable or None)
_KEEP = {
    "index-url": ("PIP_INDEX_URL", "UV_DEFAULT_INDEX"),
    "cert": ("PIP_CERT", "SSL_CERT_FILE"),
    "client-cert": ("PIP_CLIENT_CERT", None),
    "proxy": ("PIP_PROXY", "HTTPS_PROXY"),
    "trusted-host": ("PIP_TRUSTED_HOST", "UV_INSECURE_HOST"),
    "timeout": ("PIP_DEFAULT_TIMEOUT", "UV_HTTP_TIMEOUT"),
    "default-timeout": ("PIP_DEFAULT_TIMEOUT", "UV_HTTP_TIMEOUT"),
    "retries": ("PIP_RETRIES", None),
}


def registry_settings(env: dict[str, str] | None = None, python: str = sys.executable) -> dict[str, str]:
    """The machine's pip settings for reaching the registry, by pip option name (nothing else)."""
    out = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False, env=env
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        option = key.rsplit(".", 1)[-1]
        if option in _KEEP:
            value = value.strip().strip("'\"")
            # pip lists files first and variables (":env:") last; a variable wins, as in pip.
            if key.startswith(":env:") or option not in found:
                found[option] = value
    return found


def isolated_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) without any pip/uv setting, plus the registry settings only."""
    base = dict(os.environ if base is None else base)
    settings = registry_settings(base)
    env = {
        k: v
        for k, v in base.items()
        if not k.startswith(("PIP_", "UV_")) and k not in ("SSL_CERT_FILE", "PYTHONPATH")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["UV_NO_CONFIG"] = "1"
    for option, value in settings.items():
        pip_var, uv_var = _KEEP[option]
        env[pip_var] = value
        if uv_var is not None:
            env[uv_var] = value
    return env


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    return subprocess.run(argv, env=isolated_env(), check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
