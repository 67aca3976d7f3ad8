"""Release verification against the real openssl CLI, the keys folder, RELEASE.json and its re-check."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from airgap.core.release import (
    RECORD_NAME,
    check_release_file,
    extract_release,
    known_keys,
    pinned_keys,
    release_file_name,
    release_root,
    select_keys,
    verify_release,
)
from airgap.errors import InvalidInput, Malformed, Refused, SignatureMismatch, VerificationError
from tests.helpers import openssl, tree
from tests.release_fixtures import make_signed_release, openssl_keypair, openssl_sign

ALGS = {"P-256": "sha256", "P-384": "sha384", "RSA": "sha256"}


@pytest.fixture(scope="session")
def openssl_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("openssl-keys")
    keys = {alg: openssl_keypair(d, alg.lower(), algorithm=alg) for alg in ALGS}
    keys["other"] = openssl_keypair(d, "other", algorithm="P-256")
    return keys


@pytest.fixture(scope="session")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("data") / "istio-1.8.6-asm.8-linux-amd64.tar.gz"
    p.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several chunks, not a multiple of the chunk size
    return p


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_signed_release(tmp_path_factory.mktemp("release"))


def openssl_verdict(pub: Path, sig: Path, data: Path, digest: str) -> bool:
    p = openssl("dgst", f"-{digest}", "-verify", pub, "-signature", sig, data, check=False)
    return p.returncode == 0 and b"Verified OK" in p.stdout


# --- openssl interop -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", list(ALGS))
def test_openssl_signatures_verify(
    alg: str, openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path
) -> None:
    priv, pub = openssl_keys[alg]
    sig = openssl_sign(priv, data_file, tmp_path / "x.sig", digest=ALGS[alg])
    assert openssl_verdict(pub, sig, data_file, ALGS[alg])
    v = verify_release(data_file, sig, key=pub)
    assert v.sha256 == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert v.size == data_file.stat().st_size
    assert v.key.algorithm == {"P-256": "ecdsa-p256", "P-384": "ecdsa-p384", "RSA": "rsa-2048"}[alg]
    der = openssl("pkey", "-pubin", "-in", pub, "-outform", "DER").stdout
    assert v.key.fingerprint == hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("alg", list(ALGS))
def test_one_byte_change_fails_like_openssl(
    alg: str, openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path
) -> None:
    priv, pub = openssl_keys[alg]
    sig = openssl_sign(priv, data_file, tmp_path / "x.sig", digest=ALGS[alg])
    changed = tmp_path / data_file.name
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    assert not openssl_verdict(pub, sig, changed, ALGS[alg])
    with pytest.raises(SignatureMismatch, match="signature does not verify") as err:
        verify_release(changed, sig, key=pub)
    assert err.value.subject == str(changed)
    assert err.value.reason.startswith("signature does not verify with ")
    assert err.value.message == f"{changed}: {err.value.reason}"


def test_wrong_key_fails(openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path) -> None:
    sig = openssl_sign(openssl_keys["P-256"][0], data_file, tmp_path / "x.sig")
    other = openssl_keys["other"][1]
    assert not openssl_verdict(other, sig, data_file, "sha256")
    with pytest.raises(VerificationError):
        verify_release(data_file, sig, key=other)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped"])
def test_broken_signature_fails(
    damage: str, openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path
) -> None:
    priv, pub = openssl_keys["P-256"]
    sig = openssl_sign(priv, data_file, tmp_path / "x.sig")
    raw = sig.read_bytes()
    bad = {
        "truncated": raw[: len(raw) // 2],
        "garbage": b"\x17" + os.urandom(70),
        "flipped": raw[:-1] + bytes([raw[-1] ^ 0x01]),
    }[damage]
    sig.write_bytes(bad)
    assert not openssl_verdict(pub, sig, data_file, "sha256")
    with pytest.raises(VerificationError):
        verify_release(data_file, sig, key=pub)


@pytest.mark.parametrize("alg", ["P-256", "P-384", "RSA"])
def test_base64_signature_verifies(
    alg: str, openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path
) -> None:
    """cosign sign-blob prints the signature base64-encoded, with a trailing newline."""
    priv, pub = openssl_keys[alg]
    sig = openssl_sign(priv, data_file, tmp_path / "x.sig", digest=ALGS[alg])
    b64 = tmp_path / "x.sig.b64"
    b64.write_bytes(base64.b64encode(sig.read_bytes()) + b"\n")
    verify_release(data_file, b64, key=pub)


def test_p384_needs_sha384(openssl_keys: dict[str, tuple[Path, Path]], data_file: Path, tmp_path: Path) -> None:
    """The hash follows the key: a P-384 signature over SHA-256 is not what we (or the key) expect."""
    priv, pub = openssl_keys["P-384"]
    sig = openssl_sign(priv, data_file, tmp_path / "x.sig", digest="sha256")
    with pytest.raises(VerificationError):
        verify_release(data_file, sig, key=pub)


def test_default_signature_name(release: tuple[Path, Path, Path]) -> None:
    tarball, sig, pub = release
    assert sig.name == tarball.name + ".1.sig"
    assert verify_release(tarball, key=pub).key.source == str(pub)


def test_missing_inputs_are_invalid_input(release: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = release
    with pytest.raises(InvalidInput, match="file not found"):
        verify_release(tmp_path / "nope.tar.gz", sig, key=pub)
    with pytest.raises(InvalidInput, match="signature file not found"):
        verify_release(tarball, tmp_path / "nope.sig", key=pub)
    with pytest.raises(InvalidInput, match="not found"):
        verify_release(tarball, sig, key=tmp_path / "nope.pem")
    (tmp_path / "bad.pem").write_text("not a key\n")
    with pytest.raises(InvalidInput, match="not a valid PEM public key"):
        verify_release(tarball, sig, key=tmp_path / "bad.pem")
    (tmp_path / "empty.sig").write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        verify_release(tarball, tmp_path / "empty.sig", key=pub)


def test_streaming_memory_is_bounded(tmp_path: Path, openssl_keys: dict[str, tuple[Path, Path]]) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(32):
            fh.write(os.urandom(1024 * 1024))
    sig = openssl_sign(openssl_keys["P-256"][0], big, tmp_path / "big.sig")
    tracemalloc.start()
    try:
        verify_release(big, sig, key=openssl_keys["P-256"][1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # a 32 MiB file, read ahead in three 1 MiB buffers


# --- keys ----------------------------------------------------------------------------------------


def test_pinned_asm_key_matches_the_guide() -> None:
    (k,) = pinned_keys()
    assert k.id == "asm-release"
    assert k.algorithm == "ecdsa-p256"
    guide = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWZrGCUaJJr1H8a36sG4UUoXvlXvZwQfk16sxprI2gOJ2vFFggdq3ixF2h4qNBt0kI7ciDhgp"
        "wS8t+/960IsIgw=="
    )
    assert k.fingerprint == hashlib.sha256(base64.b64decode(guide)).hexdigest()


def test_keys_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, release: tuple[Path, Path, Path], data_file: Path
) -> None:
    tarball, _, pub = release
    folder = tmp_path / "keys"
    folder.mkdir()
    shutil.copy(pub, folder / "corp-mirror.pem")
    monkeypatch.setenv("AIRGAP_RELEASE_KEYS", str(folder))
    ids = [k.id for k in known_keys()]
    assert ids == ["asm-release", "corp-mirror"]
    # Default: every known key is tried; the folder key verifies.
    assert verify_release(tarball).key.id == "corp-mirror"
    assert verify_release(tarball, key_id="corp-mirror").key.id == "corp-mirror"
    fp = select_keys(key_id="corp-mirror")[0].fingerprint
    assert verify_release(tarball, key_id=fp).key.id == "corp-mirror"
    with pytest.raises(VerificationError, match="asm-release"):
        verify_release(tarball, key_id="asm-release")
    with pytest.raises(InvalidInput, match="unknown release key id"):
        verify_release(tarball, key_id="nobody")
    with pytest.raises(InvalidInput, match="either --key or --key-id"):
        select_keys(pub, "asm-release")
    shutil.copy(pub, folder / "asm-release.pem")
    with pytest.raises(InvalidInput, match="already used"):
        known_keys()


def test_keys_folder_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airgap.core.release import user_keys_dir

    monkeypatch.delenv("AIRGAP_RELEASE_KEYS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_keys_dir() == tmp_path / "airgap" / "release-keys"
    (tmp_path / "airgap" / "release-keys").mkdir(parents=True)
    (tmp_path / "airgap" / "release-keys" / "broken.pem").write_text("junk")
    with pytest.raises(InvalidInput, match=r"broken\.pem"):
        known_keys()


def test_release_file_names() -> None:
    assert release_file_name("1.8.6-asm.8", "linux-amd64") == "istio-1.8.6-asm.8-linux-amd64.tar.gz"
    assert release_file_name("1.8.6-asm.8", "osx") == "istio-1.8.6-asm.8-osx.tar.gz"
    assert release_file_name("1.8.6-asm.8", "win") == "istio-1.8.6-asm.8-win.zip"
    with pytest.raises(InvalidInput, match="unknown platform"):
        release_file_name("1.8.6-asm.8", "plan9")
    with pytest.raises(InvalidInput, match="invalid release version"):
        release_file_name("../../etc", "osx")
    with pytest.raises(InvalidInput, match="invalid release version"):
        release_file_name("1.8?x=#", "osx")


# --- extract, RELEASE.json and the re-check --------------------------------------------------------


@pytest.fixture
def extracted(release: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    tarball, sig, pub = release
    out = tmp_path / "asm"
    extract_release(tarball, out, sig, key=pub)
    return out


def test_extract_writes_the_record(release: tuple[Path, Path, Path], extracted: Path) -> None:
    tarball, sig, pub = release
    doc = json.loads((extracted / RECORD_NAME).read_text())
    assert doc["archive"]["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert doc["key"]["fingerprint"] == select_keys(pub)[0].fingerprint
    assert doc["root"] == "istio-1.8.6-asm.8"
    istioctl = extracted / "istio-1.8.6-asm.8" / "bin" / "istioctl"
    entry = doc["files"]["istio-1.8.6-asm.8/bin/istioctl"]
    assert entry["sha256"] == hashlib.sha256(istioctl.read_bytes()).hexdigest()
    assert entry["mode"] == "0755"
    assert base64.b64decode(doc["signature"]["base64"]) == sig.read_bytes()
    assert tree(extracted) == [
        RECORD_NAME,
        "istio-1.8.6-asm.8",
        "istio-1.8.6-asm.8/bin",
        "istio-1.8.6-asm.8/bin/istioctl",
        "istio-1.8.6-asm.8/manifests",
        "istio-1.8.6-asm.8/manifests/profiles",
        "istio-1.8.6-asm.8/manifests/profiles/asm-multicloud.yaml",
    ]


def test_check_release_file_accepts_out_and_root(extracted: Path) -> None:
    root = extracted / "istio-1.8.6-asm.8"
    assert check_release_file(extracted) == (root / "bin" / "istioctl").absolute()
    assert check_release_file(root) == (root / "bin" / "istioctl").absolute()
    yaml = check_release_file(root, "manifests/profiles/asm-multicloud.yaml")
    assert yaml == root / "manifests" / "profiles" / "asm-multicloud.yaml"
    assert release_root(extracted) == root
    assert release_root(root) == root


def test_fake_istioctl_runs_and_logs(extracted: Path, tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "istioctl.log"
    istioctl = check_release_file(extracted)
    p = subprocess.run(
        [str(istioctl), "install", "-f", "x.yaml"],
        capture_output=True,
        text=True,
        env={**os.environ, "ISTIOCTL_LOG": str(log)},
        check=True,
    )
    assert "Installation complete" in p.stdout
    assert [json.loads(line) for line in log.read_text().splitlines()] == [["install", "-f", "x.yaml"]]


def test_changed_istioctl_is_refused(extracted: Path) -> None:
    istioctl = extracted / "istio-1.8.6-asm.8" / "bin" / "istioctl"
    with open(istioctl, "ab") as fh:
        fh.write(b"# evil\n")
    with pytest.raises(VerificationError, match="changed since it was extracted"):
        check_release_file(extracted)


def test_mode_change_is_refused(extracted: Path) -> None:
    istioctl = extracted / "istio-1.8.6-asm.8" / "bin" / "istioctl"
    istioctl.chmod(0o777)
    with pytest.raises(VerificationError, match="mode changed"):
        check_release_file(extracted)


def test_istioctl_replaced_by_a_link_is_refused(extracted: Path, tmp_path: Path) -> None:
    istioctl = extracted / "istio-1.8.6-asm.8" / "bin" / "istioctl"
    copy = tmp_path / "copy"
    shutil.copy(istioctl, copy)
    istioctl.unlink()
    istioctl.symlink_to(copy)
    with pytest.raises(VerificationError, match="not a regular file"):
        check_release_file(extracted)


def test_missing_istioctl_is_refused(extracted: Path) -> None:
    (extracted / "istio-1.8.6-asm.8" / "bin" / "istioctl").unlink()
    with pytest.raises(VerificationError, match="missing"):
        check_release_file(extracted)


def test_member_not_in_record(extracted: Path) -> None:
    with pytest.raises(VerificationError, match="not in the release record"):
        check_release_file(extracted, "bin/kubectl")
    with pytest.raises(VerificationError, match="not a relative path"):
        check_release_file(extracted, "../RELEASE.json")


def test_missing_or_broken_record(extracted: Path, tmp_path: Path) -> None:
    record = extracted / RECORD_NAME
    record.write_text("{not json")
    with pytest.raises(Malformed, match="release record is not valid JSON"):  # malformed state: exit 3 (issue 23, 16)
        check_release_file(extracted)
    record.write_text(json.dumps({"format": "something-else", "files": {}}))
    with pytest.raises(VerificationError, match="not an airgap release record"):
        check_release_file(extracted)
    record.unlink()
    with pytest.raises(VerificationError, match=r"no RELEASE\.json"):
        check_release_file(extracted)
    with pytest.raises(VerificationError, match=r"no RELEASE\.json"):
        check_release_file(extracted / "istio-1.8.6-asm.8")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(VerificationError, match=r"no RELEASE\.json"):
        check_release_file(plain)


def test_extract_refuses_unverified(release: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, _ = release
    out = tmp_path / "asm"
    with pytest.raises(VerificationError):
        extract_release(tarball, out, sig)  # the pinned ASM key did not sign the test release
    assert tree(tmp_path) == []


def test_extract_refuses_non_empty_out(release: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = release
    out = tmp_path / "asm"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(Refused, match="not empty"):
        extract_release(tarball, out, sig, key=pub)
    assert tree(tmp_path) == ["asm", "asm/keep.txt"]
    (out / "keep.txt").unlink()
    extract_release(tarball, out, sig, key=pub)  # an empty folder is fine
    check_release_file(out)


def test_archive_with_its_own_record_is_refused(tmp_path: Path, openssl_keys: dict[str, tuple[Path, Path]]) -> None:
    import io

    tarball = tmp_path / "istio-x.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo(RECORD_NAME)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    priv, pub = openssl_keys["P-256"]
    sig = openssl_sign(priv, tarball, tmp_path / "istio-x.tar.gz.1.sig")
    with pytest.raises(InvalidInput, match="collide"):
        extract_release(tarball, tmp_path / "out", sig, key=pub)
    assert not (tmp_path / "out").exists()


def test_win_zip_release(tmp_path: Path) -> None:
    zipball, sig, pub = make_signed_release(tmp_path / "w", platform="win")
    assert zipball.name == "istio-1.8.6-asm.8-win.zip"
    out = tmp_path / "asm"
    extract_release(zipball, out, sig, key=pub)
    assert check_release_file(out).stat().st_mode & 0o111


def test_base64_signature_starting_with_zero(tmp_path: Path) -> None:
    """Base64 text may start with '0' (0x30, the DER SEQUENCE tag): it must still be read as base64.

    For RSA that happens when the signature's first byte is 0xD0-0xD3, so the modulus must be
    larger than that: pick such a key, then data whose signature starts that way."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    for _ in range(200):
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        if key.public_key().public_numbers().n >> (1024 - 8) >= 0xE0:
            break
    assert key.public_key().public_numbers().n >> (1024 - 8) >= 0xE0
    pub = tmp_path / "rsa.pem"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for i in range(20_000):
        data = f"release {i}\n".encode()
        b64 = base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        if b64.startswith(b"0"):
            break
    assert b64.startswith(b"0")
    target, sig = tmp_path / "data.bin", tmp_path / "data.sig"
    target.write_bytes(data)
    wrapped = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + b"\n"  # PEM-style line wrapping
    sig.write_bytes(wrapped)
    verify_release(target, sig, key=pub)
    raw = tmp_path / "raw.sig"
    raw.write_bytes(base64.b64decode(b64))
    assert openssl_verdict(pub, raw, target, "sha256")
