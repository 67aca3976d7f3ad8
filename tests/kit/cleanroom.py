"""A minimal Debian root (debootstrap) to install the kit into, with no network and a clean env.

The mirror is read at run time from this machine's apt sources (one-line ``.list`` and deb822
``.sources`` files); no mirror host is written in the repository. A built root is cached outside
the repository (``$AIRGAP_CLEANROOM_CACHE``, default ``/var/cache/airgap-tests``) so CI and later
runs pay debootstrap's time once; each test works on a copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCES = Path("/etc/apt")
CACHE = Path(os.environ.get("AIRGAP_CLEANROOM_CACHE", "/var/cache/airgap-tests"))


def _entries(root: Path = SOURCES) -> list[tuple[list[str], list[str], list[str]]]:
    """(URIs, suites, components) of every enabled ``deb`` source."""
    out: list[tuple[list[str], list[str], list[str]]] = []
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 4 and words[0] == "deb":
                rest = words[1:]
                if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if len(rest) >= 3:
                    out.append(([rest[0]], [rest[1]], rest[2:]))
    for f in sorted((root / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                out.append((fields.get("uris", "").split(), fields.get("suites", "").split(),
                            fields.get("components", "").split()))
    return out


def debian_mirror(root: Path = SOURCES) -> str | None:
    """The URI of the machine's Debian archive (a source with a bookworm/trixie suite and main)."""
    for uris, suites, components in _entries(root):
        if "main" in components and any(s in ("bookworm", "trixie", "stable", "testing") for s in suites) and uris:
            return uris[0]
    return None


def debootstrap_root(suite: str, mirror: str) -> Path:
    """A cached ``debootstrap --variant=minbase --include=python3,python3-venv SUITE`` root."""
    final = CACHE / f"debootstrap-{suite}"
    if (final / "usr" / "bin" / "python3").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f"debootstrap-{suite}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    proc = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", suite, str(partial), mirror],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"debootstrap {suite} failed:\n{tail}")
    shutil.rmtree(partial / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    partial.rename(final)
    return final


def in_chroot(root: Path, argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted in ``root`` with no network (new net namespace), its own /proc, and
    an empty environment apart from ``env`` (``env -i``)."""
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    pairs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
    cmd = [
        "unshare", "--net", "--mount", "--pid", "--fork", f"--mount-proc={root / 'proc'}",
        "chroot", str(root), "/usr/bin/env", "-i", *pairs, *argv,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
