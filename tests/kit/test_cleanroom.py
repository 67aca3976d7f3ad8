"""Clean room: the kit installs and runs in a minimal Debian with no network and an empty env.

``debootstrap --variant=minbase --include=python3,python3-venv SUITE`` (mirror read from this
machine's apt sources at run time; root cached outside the repo), then inside ``unshare`` (no
network, own mount and pid namespaces) + ``chroot`` + ``env -i``: unpack the kit, ``sh install.sh
--prefix /opt/airgap`` (dash, the host's sha256sum), ``airgap ca init`` and ``airgap doctor``.
bookworm gets the kit built for this machine's Python (3.11); trixie gets a kit built here with
``--python-version 3.13``, so a host whose Python differs from the build machine's is proven too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kit.cleanroom import debian_mirror, debootstrap_root, in_chroot
from tests.kit.conftest import Kit, _shared_kit, needs_root_and_unshare

# Slow: the first test here builds (registry) and installs a kit; later ones share it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.mark.parametrize(("suite", "python"), [("bookworm", "3.11"), ("trixie", "3.13")])
def test_kit_installs_and_runs_in_a_clean_debian_root_with_no_network(
    suite: str, python: str, kit: Kit, shared_tmp: Path, tmp_path: Path
) -> None:
    needs_root_and_unshare()
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (scripts/system-deps.sh installs it)")
    mirror = debian_mirror()
    if mirror is None:
        pytest.skip("no Debian archive in /etc/apt/sources.list(.d) to debootstrap from")
    this_kit = kit
    if python != "3.11":
        this_kit = _shared_kit(shared_tmp, f"kit-py{python}", "--python-version", python,
                               "--sign-key", str(kit.key))
        assert f"-cp{python.replace('.', '')}-" in this_kit.tarball.name
    cached = debootstrap_root(suite, mirror)
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(cached), str(root)], check=True)
    shutil.copy(this_kit.tarball, root / "tmp" / this_kit.tarball.name)

    proc = in_chroot(root, ["/bin/sh", "-c", f"cd /tmp && tar xzf {this_kit.tarball.name} && "
                            f"sh {this_kit.top}/install.sh --prefix /opt/airgap"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "opt" / "airgap" / "bin" / "airgap").exists()

    proc = in_chroot(root, ["/opt/airgap/bin/airgap", "ca", "init", "--dir", "/root/pki", "--key-type",
                            "ecdsa-p256", "--no-passphrase"])
    assert proc.returncode == 0, proc.stderr
    assert (root / "root" / "pki" / "root-cert.pem").exists()

    proc = in_chroot(root, ["/opt/airgap/bin/airgap", "doctor", "--json"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["python"]["data"]["version"].startswith(python + ".")
    assert checks["python"]["data"]["executable"] == "/opt/airgap/bin/python"
    assert checks["network"]["status"] == "ok" and checks["network"]["data"]["default_routes"] == []
    # without --verify-key the records are only consistent, not verified (issue 23, fault 19)
    assert checks["kit"]["status"] == "warn" and checks["kit"]["detail"].startswith("not verified"), checks["kit"]
    assert checks["kit"]["data"]["installed_from"] == f"/tmp/{this_kit.top}"
    assert checks["kit"]["data"]["kit_folder_checked"] is True
    # minbase has no age: doctor says so (a warning) instead of failing.
    assert checks["age"]["status"] == "warn" and checks["age"]["data"]["path"] is None
