"""The offline kit: layout, signature, lock, SBOM, offline install, tampering, reproducibility."""

from __future__ import annotations

import gzip
import hashlib
import json
import marshal
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.kit.conftest import REPO, Kit, build_kit, install, needs_root_and_unshare

# Slow: the first test here builds (registry) and installs a kit; later ones share it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _commit_time() -> int:
    return int(subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
                              capture_output=True, text=True, check=True).stdout)


def test_tarball_is_named_and_laid_out_as_the_contract_says(kit: Kit) -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]  # type: ignore[index]
    assert re.fullmatch(rf"airgap-offline-{re.escape(version)}-cp3\d+-manylinux_2_28_\w+\.tar\.gz", kit.tarball.name)
    assert kit.top == f"airgap-offline-{version}"
    raw = kit.tarball.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[3] & 0x08 == 0, "gzip header must carry no file name"
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    with tarfile.open(kit.tarball) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == kit.top
    assert all(n == kit.top or n.startswith(kit.top + "/") for n in names)
    epoch = _commit_time()
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", epoch), m.name
        assert m.isdir() or m.isfile(), m.name
    top_files = {p.name for p in kit.tree.iterdir()}
    assert top_files == {"install.sh", "README", "requirements.lock", "sbom.cdx.json", "SHA256SUMS",
                         "SHA256SUMS.sig", "wheels"}
    wheels = sorted(p.name for p in (kit.tree / "wheels").iterdir())
    assert wheels and all(w.endswith(".whl") for w in wheels), "wheels only, no sdist"
    assert any(w.startswith(f"airgap-{version}-py3-none-any") for w in wheels)
    assert any(w.startswith("cryptography-") for w in wheels)


def test_signature_verifies_with_openssl_and_the_public_key_is_not_in_the_kit(kit: Kit) -> None:
    proc = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(kit.pub), "-signature",
         str(kit.tree / "SHA256SUMS.sig"), str(kit.tree / "SHA256SUMS")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "Verified OK", proc.stdout + proc.stderr
    pub = serialization.load_pem_public_key(kit.pub.read_bytes())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    point = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pem_body = b"".join(kit.pub.read_bytes().splitlines()[1:-1])
    for f in kit.tree.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert der not in data and point not in data and pem_body[:40] not in data, f
    # make kit made the key itself (no KIT_SIGN_KEY): 0600, and printed its SPKI SHA-256.
    assert kit.key.stat().st_mode & 0o777 == 0o600
    assert f"SPKI SHA-256 {hashlib.sha256(der).hexdigest()}" in kit.stdout
    assert kit.pub.read_text().strip() in kit.stdout


def test_sha256sums_lists_every_other_file(kit: Kit) -> None:
    lines = (kit.tree / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(kit.tree).as_posix() for p in kit.tree.rglob("*") if p.is_file()}
    assert set(listed) == files - {"SHA256SUMS", "SHA256SUMS.sig"}
    assert [line.split("  ", 1)[1] for line in lines] == sorted(listed)
    for name, digest in listed.items():
        assert _sha256(kit.tree / name) == digest, name


def test_lock_pins_every_wheel_by_its_hash(kit: Kit) -> None:
    text = (kit.tree / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9-]+)==\S+ \\\n    --hash=sha256:([0-9a-f]{64})$", text, re.M))
    by_hash = {_sha256(w): w.name for w in (kit.tree / "wheels").iterdir()}
    assert set(pins.values()) == set(by_hash), "one hash per wheel, every wheel pinned"
    assert len(pins) == len(by_hash) == text.count("==")
    for name, digest in pins.items():
        assert re.sub(r"[-_.]+", "-", by_hash[digest].split("-")[0]).lower() == name


def test_sbom_is_cyclonedx_with_every_component_hashed(kit: Kit) -> None:
    doc = json.loads((kit.tree / "sbom.cdx.json").read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    top = doc["metadata"]["component"]
    own = next((kit.tree / "wheels").glob("airgap-*.whl"))
    assert top["name"] == "airgap" and top["purl"] == f"pkg:pypi/airgap@{top['version']}"
    assert top["hashes"] == [{"alg": "SHA-256", "content": _sha256(own)}]
    wheels = {_sha256(w) for w in (kit.tree / "wheels").iterdir()} - {_sha256(own)}
    comps = doc["components"]
    assert len(comps) == len(wheels)
    for c in comps:
        assert c["version"] and c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}"
        assert [h["alg"] for h in c["hashes"]] == ["SHA-256"]
        assert c["hashes"][0]["content"] in wheels
    assert {c["hashes"][0]["content"] for c in comps} == wheels


def test_installs_with_no_network_and_runs(kit: Kit, installed: Path, tmp_path: Path) -> None:
    airgap = installed / "bin" / "airgap"
    assert not installed.with_name(installed.name + ".partial").exists()
    assert subprocess.run([str(airgap), "--version"], capture_output=True, text=True,
                          check=True).stdout.startswith("airgap ")
    # The venv is a fresh one: its own python, no dev-venv path leaking in.
    assert airgap.read_text().splitlines()[0] == f"#!{installed}/bin/python"
    assert ".partial" not in (installed / "pyvenv.cfg").read_text()
    # Compiled modules name the final folder (tracebacks point at real files).
    pyc = next(installed.glob("lib/python3*/site-packages/airgap/__pycache__/__init__.*.pyc"))
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == str(next(installed.glob("lib/python3*/site-packages/airgap/__init__.py")))
    proc = subprocess.run(
        ["unshare", "--net", str(airgap), "ca", "init", "--dir", str(tmp_path / "pki"), "--key-type",
         "ecdsa-p256", "--no-passphrase"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pki" / "root-cert.pem").exists()
    proc = subprocess.run(["unshare", "--net", str(airgap), "doctor", "--json", "--verify-key", str(kit.pub)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["kit"]["status"] == "ok", checks["kit"]
    assert checks["kit"]["data"]["kit_folder_checked"] is True
    assert checks["kit"]["data"]["signature"].startswith("verified by ")
    assert checks["kit"]["data"]["files_checked"] > 1000
    assert checks["network"]["status"] == "ok", "unshare -n leaves no default route"
    assert (installed / "share" / "airgap-kit" / "SHA256SUMS").read_bytes() == (kit.tree / "SHA256SUMS").read_bytes()


def test_doctor_finds_an_installed_file_changed_after_the_install(installed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(installed, copy, symlinks=True)
    (copy / "share" / "airgap-kit" / "source").write_text("/nonexistent\n")  # the kit folder is gone
    target = next(copy.glob("lib/python3*/site-packages/airgap/core/keys.py"))
    target.write_text(target.read_text() + "\n# changed\n")
    proc = subprocess.run([str(installed / "bin" / "airgap"), "doctor", "--prefix", str(copy), "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    kit_check = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "kit")
    assert kit_check["status"] == "fail"
    assert kit_check["data"]["problems"] == ["airgap/core/keys.py: changed since the install"]


def _break_one_wheel_byte(tree: Path) -> None:
    whl = sorted((tree / "wheels").glob("cryptography-*.whl"))[0]
    data = bytearray(whl.read_bytes())
    data[len(data) // 2] ^= 0x01
    whl.write_bytes(bytes(data))


def _remove_a_wheel(tree: Path) -> None:
    sorted((tree / "wheels").glob("pyyaml-*.whl"))[0].unlink()


def _add_a_file(tree: Path) -> None:
    shutil.copy(sorted((tree / "wheels").glob("airgap-*.whl"))[0], tree / "wheels" / "airgap-9.9-py3-none-any.whl")


def _change_the_lock(tree: Path) -> None:
    lock = tree / "requirements.lock"
    lock.write_text(lock.read_text() + "six\n")


def _remove_the_sums(tree: Path) -> None:
    (tree / "SHA256SUMS").unlink()


def _list_a_file_outside(tree: Path) -> None:
    (tree.parent / "outside").write_text("x")
    with open(tree / "SHA256SUMS", "a") as fh:
        fh.write(f"{hashlib.sha256(b'x').hexdigest()}  ../outside\n")


def _garble_a_sums_line(tree: Path) -> None:
    sums = tree / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("  ", " *", 1))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_break_one_wheel_byte, r"kit file changed: wheels/cryptography-.*\.whl: nothing installed"),
        (_remove_a_wheel, r"kit file missing: wheels/pyyaml-.*\.whl: nothing installed"),
        (_add_a_file, r"kit has a file not in SHA256SUMS: wheels/airgap-9\.9-py3-none-any\.whl: nothing installed"),
        (_change_the_lock, r"kit file changed: requirements\.lock: nothing installed"),
        (_remove_the_sums, r"SHA256SUMS is missing: nothing installed"),
        (_list_a_file_outside, r"kit file missing: \.\./outside: nothing installed"),
        (_garble_a_sums_line, r"SHA256SUMS has a malformed line: nothing installed"),
    ],
    ids=["one-byte-in-a-wheel", "wheel-removed", "extra-file", "lock-changed", "sums-removed",
         "sums-lists-a-file-outside", "sums-line-malformed"],
)
def test_tampered_kit_installs_nothing(kit: Kit, tmp_path: Path, tamper: object, message: str) -> None:
    needs_root_and_unshare()
    tree = tmp_path / kit.top
    shutil.copytree(kit.tree, tree)
    tamper(tree)  # type: ignore[operator]
    prefix = tmp_path / "dest" / "airgap"
    prefix.parent.mkdir()
    proc = install(tree, prefix)
    assert proc.returncode != 0
    assert re.fullmatch(rf"install\.sh: error: {message}\n", proc.stderr), proc.stderr
    assert list(prefix.parent.iterdir()) == [], "neither DIR nor DIR.partial may be left"


def test_sums_rewritten_to_match_a_change_fail_the_signature(kit: Kit, tmp_path: Path) -> None:
    """Whoever can change the kit can rewrite SHA256SUMS too: only the signature catches that."""
    needs_root_and_unshare()
    tree = tmp_path / kit.top
    shutil.copytree(kit.tree, tree)
    _change_the_lock(tree)
    sums = tree / "SHA256SUMS"
    lines = [f"{_sha256(tree / 'requirements.lock')}  requirements.lock" if line.endswith("  requirements.lock")
             else line for line in sums.read_text().splitlines()]
    sums.write_text("\n".join(lines) + "\n")
    prefix = tmp_path / "airgap"
    proc = install(tree, prefix, "--verify-key", str(kit.pub))
    assert proc.returncode != 0
    assert proc.stderr == f"install.sh: error: SHA256SUMS.sig does not verify with {kit.pub}: nothing installed\n"
    assert not prefix.exists() and not prefix.with_name("airgap.partial").exists()


def test_install_refuses_an_existing_dir(kit: Kit, tmp_path: Path) -> None:
    needs_root_and_unshare()
    prefix = tmp_path / "airgap"
    prefix.mkdir()
    (prefix / "keep").write_text("x")
    proc = install(kit.tree, prefix)
    assert proc.returncode == 4
    assert proc.stderr == f"install.sh: error: {prefix} already exists; refusing to install over it\n"
    assert [p.name for p in prefix.iterdir()] == ["keep"]


def test_two_builds_from_fresh_clones_are_byte_identical(kit: Kit, tmp_path: Path) -> None:
    """A second clone of the same commit, built elsewhere with the same key: the same bytes."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    proc = build_kit(clone, tmp_path / "out", "--sign-key", str(kit.key))
    assert proc.returncode == 0, proc.stderr
    (second,) = (tmp_path / "out").glob("*.tar.gz")
    assert second.name == kit.tarball.name
    assert _sha256(second) == _sha256(kit.tarball)
    assert not (tmp_path / "out" / "kit-signing.key").exists(), "an explicit key: no key made"
    with gzip.open(second) as g:
        assert g.read(1)


def test_doctor_with_the_wrong_key_fails(installed: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "other.pub"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    proc = subprocess.run([str(installed / "bin" / "airgap"), "doctor", "--json", "--verify-key", str(other)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    kit_check = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "kit")
    assert kit_check["data"]["signature"] == "bad"
    assert kit_check["detail"].startswith(f"kit install re-check failed: SHA256SUMS.sig does not verify with {other}")
