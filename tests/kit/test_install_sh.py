"""install.sh on a small hand-made kit, with a stand-in python: fast, no registry, no real venv.

The stand-in (``--python``) makes a venv-shaped folder whose ``bin/airgap`` names it in its shebang,
as pip's scripts do, and its ``-m pip`` logs what it was asked to install from (the wheels folder,
the lock, and their SHA-256 at that moment). The real install of a real kit is tests/kit/test_kit.py
(slow); what is checked here is install.sh's own handling of the kit folder and of the prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.kit.conftest import REPO

FAKE_PYTHON = r"""#!/bin/sh
# A stand-in python for install.sh: venv, pip and compileall, nothing else.
log='@LOG@'
original='@ORIGINAL@'
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" "$3/lib"
  printf 'home = /usr/bin\ncommand = python -m venv %s\n' "$3" > "$3/pyvenv.cfg"
  cp "$0" "$3/bin/python" && chmod 755 "$3/bin/python"
  printf '#!%s/bin/python\n# -*- coding: utf-8 -*-\nimport sys\n' "$3" > "$3/bin/airgap"
  chmod 755 "$3/bin/airgap"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  # Someone swaps a wheel in the kit folder now, after install.sh checked it.
  printf 'swapped after the check\n' > "$original/wheels/demo-1.0-py3-none-any.whl"
  links=""; req=""
  while [ $# -gt 0 ]; do
    case "$1" in --find-links) links="$2"; shift 2 ;; -r) req="$2"; shift 2 ;; *) shift ;; esac
  done
  wheel=$(sha256sum "$links/demo-1.0-py3-none-any.whl" | cut -d' ' -f1)
  lock=$(sha256sum "$req" | cut -d' ' -f1)
  printf '{"find_links": "%s", "requirements": "%s", "wheel": "%s", "lock": "%s"}\n' \
    "$links" "$req" "$wheel" "$lock" >> "$log"
  exit 0
fi
[ "$1" = "-m" ] && [ "$2" = "compileall" ] && exit 0
exit 1
"""


def _kit(base: Path) -> Path:
    """A kit folder laid out as build_kit.py makes it, with one made-up wheel."""
    kit = base / "airgap-offline-0.0"
    (kit / "wheels").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "kit" / "install.sh", kit / "install.sh")
    (kit / "README").write_text("kit\n")
    (kit / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"PK the verified wheel\n")
    (kit / "requirements.lock").write_text("demo==1.0 --hash=sha256:" + "0" * 64 + "\n")
    (kit / "sbom.cdx.json").write_text("{}\n")
    (kit / "SHA256SUMS.sig").write_bytes(b"")
    _sums(kit)
    return kit


def _sums(kit: Path) -> None:
    names = sorted(
        p.relative_to(kit).as_posix()
        for p in kit.rglob("*")
        if not p.is_dir() and p.name not in ("SHA256SUMS", "SHA256SUMS.sig")
    )
    lines = [f"{hashlib.sha256((kit / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (kit / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _python(base: Path, kit: Path) -> tuple[Path, Path]:
    log = base / "pip.log"
    py = base / "fake-python"
    py.write_text(FAKE_PYTHON.replace("@LOG@", str(log)).replace("@ORIGINAL@", str(kit)))
    py.chmod(0o755)
    return py, log


def _install(kit: Path, prefix: Path, python: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)}
    return subprocess.run(
        ["sh", str(kit / "install.sh"), "--prefix", str(prefix), "--python", str(python)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


def test_fault_17_kit_links_are_refused_and_pip_installs_the_hashed_private_copy(tmp_path: Path) -> None:
    """A lock moved outside the kit and linked back (or a fifo) is refused, nothing installed; a clean
    kit is hashed and installed from one private copy, so a wheel swapped in the kit folder after the
    check is not what pip gets."""
    kit = _kit(tmp_path / "src")
    python, log = _python(tmp_path, kit)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    outside = tmp_path / "outside.lock"
    os.replace(kit / "requirements.lock", outside)
    (kit / "requirements.lock").symlink_to(outside)
    prefix = tmp_path / "dest" / "airgap"
    prefix.parent.mkdir()
    proc = _install(kit, prefix, python, tmp)
    assert proc.returncode == 1
    assert proc.stderr == (
        "install.sh: error: kit holds requirements.lock, which is not a regular file (a link, device or fifo): "
        "nothing installed\n"
    )
    (kit / "requirements.lock").unlink()
    os.mkfifo(kit / "wheels" / "pipe")
    proc = _install(kit, prefix, python, tmp)
    assert proc.returncode == 1 and "kit holds wheels/pipe, which is not a regular file" in proc.stderr
    assert list(prefix.parent.iterdir()) == [] and list(tmp.iterdir()) == [] and not log.exists()
    (kit / "wheels" / "pipe").unlink()
    os.replace(outside, kit / "requirements.lock")
    verified = hashlib.sha256((kit / "wheels" / "demo-1.0-py3-none-any.whl").read_bytes()).hexdigest()
    proc = _install(kit, prefix, python, tmp)
    assert proc.returncode == 0, proc.stderr
    (pip,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert not pip["find_links"].startswith(str(kit)) and pip["find_links"].startswith(str(tmp))
    assert pip["requirements"] == str(Path(pip["find_links"]).parent / "requirements.lock")
    assert pip["wheel"] == verified  # the copy that was hashed, not the kit file swapped meanwhile
    assert (kit / "wheels" / "demo-1.0-py3-none-any.whl").read_bytes() == b"swapped after the check\n"
    assert list(tmp.iterdir()) == []  # the private copy is gone
    assert (prefix / "share" / "airgap-kit" / "source").read_text() == f"{kit}\n"


def test_fault_18_a_prefix_with_backslashes_is_written_as_given(tmp_path: Path) -> None:
    """awk -v would read "\\t" in the prefix as a tab: the scripts' shebangs must name the prefix exactly."""
    kit = _kit(tmp_path / "src")
    python, _log = _python(tmp_path, kit)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    parent = tmp_path / "a\\tb\\\\c"
    parent.mkdir()
    prefix = parent / "air\\ngap"
    proc = _install(kit, prefix, python, tmp)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "bin" / "airgap").read_text().splitlines()[0] == f"#!{prefix}/bin/python"
    assert f"command = python -m venv {prefix}\n" in (prefix / "pyvenv.cfg").read_text()
    assert ".partial" not in (prefix / "bin" / "airgap").read_text()
