"""The kit builder's pieces that need no registry: target markers, platform tags, pip isolation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "kit"))
from build_kit import Pin, pins_for_target, platform_tags, target_environment  # noqa: E402
from registry import isolated_env  # noqa: E402


def test_platform_tags_take_every_older_manylinux() -> None:
    tags = platform_tags("manylinux_2_28_aarch64")
    assert tags[0] == "manylinux_2_28_aarch64"
    assert "manylinux_2_17_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_29_aarch64" not in tags
    assert all(t.endswith("_aarch64") for t in tags)
    assert platform_tags("musllinux_1_2_x86_64") == ["musllinux_1_2_x86_64"]


def test_markers_are_evaluated_for_the_target_not_the_build_host() -> None:
    pins = [
        Pin("old-only", "1", "python_version < '3.12'", ["sha256:" + "0" * 64]),
        Pin("new-only", "1", "python_version >= '3.13'", ["sha256:" + "0" * 64]),
        Pin("win", "1", "sys_platform == 'win32'", ["sha256:" + "0" * 64]),
        Pin("arm", "1", "platform_machine == 'aarch64'", ["sha256:" + "0" * 64]),
        Pin("all", "1", None, ["sha256:" + "0" * 64]),
    ]
    names = [p.name for p in pins_for_target(pins, target_environment("3.13", "manylinux_2_28_aarch64"))]
    assert names == ["new-only", "arm", "all"]
    names = [p.name for p in pins_for_target(pins, target_environment("3.11", "manylinux_2_28_x86_64"))]
    assert names == ["old-only", "all"]


def test_isolation_keeps_how_to_reach_the_registry_and_drops_local_folders(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = file:///srv/index\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        "find-links = /opt/local-wheels\nextra-index-url = file:///opt/more\nconstraint = /etc/c.txt\n"
    )
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": str(conf),
            "PIP_FIND_LINKS": "/opt/wheels", "PIP_CONSTRAINT": "/etc/c.txt", "UV_FIND_LINKS": "/opt/wheels"}
    env = isolated_env(base)
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert env["PIP_INDEX_URL"] == env["UV_DEFAULT_INDEX"] == "file:///srv/index"
    assert env["PIP_CERT"] == env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    for dropped in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "UV_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        assert dropped not in env
    # And pip itself, run that way, sees none of the local folders.
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "find-links" not in out and "extra-index-url" not in out and "constraint" not in out
    assert "index-url='file:///srv/index'" in out


def _build(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "kit" / "build_kit.py"), "--repo", str(REPO),
                           "--out", str(tmp_path / "dist"), *args], capture_output=True, text=True, check=False,
                          env=env)


def test_a_key_that_is_not_p256_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "p384.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    proc = _build(tmp_path, "--sign-key", str(key))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"make kit: error: {key}: the kit signing key must be ECDSA P-256"
    assert not (tmp_path / "dist").exists()


def test_an_encrypted_key_needs_its_passphrase_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "k.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right")))
    env = {k: v for k, v in os.environ.items() if k != "KIT_SIGN_PASSPHRASE_FILE"}
    proc = _build(tmp_path, "--sign-key", str(key), env=env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"make kit: error: {key}: key is encrypted; set KIT_SIGN_PASSPHRASE_FILE"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("wrong\n")
    proc = _build(tmp_path, "--sign-key", str(key), env={**env, "KIT_SIGN_PASSPHRASE_FILE": str(wrong)})
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"make kit: error: {key}: wrong passphrase or corrupt key"


def test_bad_target_options_are_usage_errors(tmp_path: Path) -> None:
    assert _build(tmp_path, "--python-version", "3").returncode == 2
    assert _build(tmp_path, "--platform", "../x").returncode == 2
