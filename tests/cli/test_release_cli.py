"""`airgap release keys | verify | extract` from the command line: exit codes, stdout, one stderr line."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_error_line, openssl, run_cli, run_proc, tree
from tests.release_fixtures import EVIL_KINDS, evil_archive, make_signed_release, openssl_keypair, openssl_sign

ASM_FP = hashlib.sha256(
    base64.b64decode(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWZrGCUaJJr1H8a36sG4UUoXvlXvZwQfk16sxprI2gOJ2vFFggdq3ixF2h4qNBt0kI7ciDhgp"
        "wS8t+/960IsIgw=="
    )
).hexdigest()


@pytest.fixture(scope="session")
def rel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_signed_release(tmp_path_factory.mktemp("cli-release"))


@pytest.fixture(autouse=True)
def _no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_RELEASE_KEYS", str(tmp_path / "no-such-keys-folder"))


@pytest.fixture(autouse=True)
def _own_history(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """release extract records itself in the jump host's history: not in the user's own."""
    monkeypatch.setenv("AIRGAP_STATE_DIR", str(tmp_path_factory.mktemp("state")))


# --- keys -----------------------------------------------------------------------------------------


def test_keys_lists_the_pinned_asm_key() -> None:
    r = run_cli("release", "keys")
    assert r.code == 0
    assert r.out.split() == ["asm-release", "ecdsa-p256", ASM_FP, "pinned"]


def test_keys_json_includes_the_keys_folder(tmp_path: Path, rel: tuple[Path, Path, Path]) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    shutil.copy(rel[2], folder / "mirror.pem")
    r = run_cli("release", "keys", "--json", env={"AIRGAP_RELEASE_KEYS": str(folder)})
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [k["id"] for k in doc["keys"]] == ["asm-release", "mirror"]
    assert doc["keys"][0] == {
        "id": "asm-release",
        "algorithm": "ecdsa-p256",
        "fingerprint": ASM_FP,
        "source": "pinned",
        "description": "Anthos Service Mesh release key (ASM install guide)",
    }
    assert doc["keys_folder"] == str(folder)


def test_keys_broken_folder_key(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "junk.pem").write_text("junk")
    r = run_cli("release", "keys", env={"AIRGAP_RELEASE_KEYS": str(folder)})
    assert r.code == 3
    assert one_error_line(r.err) == f"airgap: error: {folder / 'junk.pem'}: not a valid PEM public key"


# --- verify ---------------------------------------------------------------------------------------


def test_verify_ok(rel: tuple[Path, Path, Path]) -> None:
    tarball, _, pub = rel
    r = run_cli("release", "verify", tarball, "--key", pub)
    assert (r.code, r.out) == (0, "Verified OK\n")


def test_verify_agrees_with_openssl_on_the_same_files(rel: tuple[Path, Path, Path]) -> None:
    tarball, sig, pub = rel
    ours = run_cli("release", "verify", tarball, "--signature", sig, "--key", pub)
    theirs = openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, tarball, check=False)
    assert (ours.code, ours.out) == (theirs.returncode, theirs.stdout.decode())


def test_verify_failure_like_openssl(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    changed = tmp_path / tarball.name
    data = bytearray(tarball.read_bytes())
    data[100] ^= 0xFF
    changed.write_bytes(bytes(data))
    theirs = openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, changed, check=False)
    r = run_cli("release", "verify", changed, "--signature", sig, "--key", pub)
    assert r.code == 1
    assert r.out == "Verification Failure\n"
    # OpenSSL 1.1 prints "Verification Failure", 3.x "Verification failure": the contract keeps 1.1's text.
    assert theirs.returncode == 1
    assert theirs.stdout.decode().splitlines()[0].lower() == "verification failure"
    assert one_error_line(r.err) == f"airgap: error: {changed}: signature does not verify with release"


def test_verify_with_the_pinned_key_by_default(rel: tuple[Path, Path, Path]) -> None:
    """The test release is not signed by the ASM key: the default trust refuses it."""
    r = run_cli("release", "verify", rel[0])
    assert (r.code, r.out) == (1, "Verification Failure\n")
    assert "signature does not verify with asm-release" in one_error_line(r.err)


@pytest.mark.parametrize("form", ["truncated", "garbage", "base64"])
def test_verify_signature_forms(form: str, rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    raw = sig.read_bytes()
    bad = tmp_path / "x.sig"
    bad.write_bytes(
        {"truncated": raw[:-5], "garbage": b"\x01\x02garbage\xff", "base64": base64.b64encode(raw) + b"\n"}[form]
    )
    r = run_cli("release", "verify", tarball, "--signature", bad, "--key", pub)
    if form == "base64":
        assert (r.code, r.out) == (0, "Verified OK\n")
    else:
        assert (r.code, r.out) == (1, "Verification Failure\n")
        one_error_line(r.err)


def test_verify_json(rel: tuple[Path, Path, Path]) -> None:
    tarball, _, pub = rel
    r = run_cli("release", "verify", tarball, "--key", pub, "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["verdict"] == "verified"
    assert doc["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    der = openssl("pkey", "-pubin", "-in", pub, "-outform", "DER").stdout
    assert doc["fingerprint"] == hashlib.sha256(der).hexdigest()
    assert doc["key_id"] == "release"
    r = run_cli("release", "verify", tarball, "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["verdict"] == "failure" and "asm-release" in doc["error"]


def test_verify_key_id_from_folder(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, _, pub = rel
    folder = tmp_path / "keys"
    folder.mkdir()
    shutil.copy(pub, folder / "corp.pem")
    env = {"AIRGAP_RELEASE_KEYS": str(folder)}
    assert run_cli("release", "verify", tarball, "--key-id", "corp", env=env).code == 0
    r = run_cli("release", "verify", tarball, "--key-id", "asm-release", env=env)
    assert (r.code, r.out) == (1, "Verification Failure\n")
    r = run_cli("release", "verify", tarball, "--key-id", "nobody", env=env)
    assert r.code == 3
    assert one_error_line(r.err) == (
        "airgap: error: unknown release key id 'nobody'; known: asm-release, corp (see: airgap release keys)"
    )


def test_verify_p384_and_rsa_from_openssl(tmp_path: Path, rel: tuple[Path, Path, Path]) -> None:
    tarball = rel[0]
    for alg, digest in (("P-384", "sha384"), ("RSA", "sha256")):
        priv, pub = openssl_keypair(tmp_path, alg.lower(), algorithm=alg)
        sig = openssl_sign(priv, tarball, tmp_path / f"{alg}.sig", digest=digest)
        r = run_cli("release", "verify", tarball, "--signature", sig, "--key", pub)
        assert (r.code, r.out) == (0, "Verified OK\n"), (alg, r.err)


def test_verify_missing_things_are_exit_3(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    cases = [
        (("release", "verify", tmp_path / "nope.tar.gz", "--signature", sig, "--key", pub), "file not found"),
        (("release", "verify", tmp_path / "nope.tar.gz", "--key", pub), "nope.tar.gz: file not found"),
        (("release", "verify", tarball, "--signature", tmp_path / "x.sig", "--key", pub), "signature file not found"),
        (("release", "verify", tarball, "--key", tmp_path / "k.pem"), "public key not found"),
        (("release", "verify", tmp_path, "--signature", sig, "--key", pub), "is a folder"),
    ]
    for args, text in cases:
        r = run_cli(*args)
        assert r.code == 3, (args, r.err)
        assert text in one_error_line(r.err)
        assert r.out == ""  # not "Verification Failure": the question was never asked


def test_verify_unreadable_file_is_exit_3(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A real process that may not read the file (as root: with the DAC capabilities dropped)."""
    import subprocess
    import sys

    from tests.helpers import REPO, without_file_override

    prefix = without_file_override()
    tarball, sig, pub = rel
    locked = tmp_path / tarball.name
    shutil.copy(tarball, locked)
    locked.chmod(0)
    p = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "airgap",
            "release",
            "verify",
            str(locked),
            "--signature",
            str(sig),
            "--key",
            str(pub),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert p.returncode == 3, p.stderr
    assert "cannot read" in one_error_line(p.stderr) and p.stdout == ""


def test_key_and_key_id_together_is_a_usage_error(rel: tuple[Path, Path, Path]) -> None:
    r = run_cli("release", "verify", rel[0], "--key", rel[2], "--key-id", "asm-release")
    assert r.code == 2
    assert "either --key or --key-id" in r.err


# --- extract --------------------------------------------------------------------------------------


def test_extract_ok_and_record(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    out = tmp_path / "deep" / "asm"
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out)
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["Verified OK", f"Extracted 2 files to {out / 'istio-1.8.6-asm.8'}"]
    doc = json.loads((out / "RELEASE.json").read_text())
    assert doc["archive"]["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert set(doc["files"]) == {
        "istio-1.8.6-asm.8/bin/istioctl",
        "istio-1.8.6-asm.8/manifests/profiles/asm-multicloud.yaml",
    }
    assert not any(p.name.startswith(".airgap-tmp-") for p in out.parent.iterdir())


def test_extract_json(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["root"] == str(tmp_path / "o" / "istio-1.8.6-asm.8")
    assert doc["files"] == 2 and doc["verdict"] == "verified"


def test_extract_unverified_writes_nothing(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, _ = rel
    other = openssl_keypair(tmp_path / "k", "other")[1]
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", other, "--out", tmp_path / "out")
    assert (r.code, r.out) == (1, "Verification Failure\n")
    one_error_line(r.err)
    assert tree(tmp_path) == ["k", "k/other.key", "k/other.pem"]


def test_extract_into_non_empty_is_refused(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine").write_text("x")
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out)
    assert r.code == 4
    assert one_error_line(r.err) == f"airgap: error: {out}: already exists and is not empty; refusing to overwrite"
    assert tree(out) == ["mine"]


@pytest.mark.parametrize("kind", EVIL_KINDS)
def test_extract_hostile_archive_is_exit_3(kind: str, tmp_path: Path) -> None:
    """A correctly signed but hostile archive: refused with exit 3, nothing written anywhere."""
    archive = evil_archive(kind, tmp_path / "src")
    priv, pub = openssl_keypair(tmp_path / "keys", "k")
    sig = openssl_sign(priv, archive, tmp_path / "src" / f"{archive.name}.1.sig")
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)
    r = run_cli("release", "extract", archive, "--signature", sig, "--key", pub, "--out", work / "out")
    assert r.code == 3, r.err
    line = one_error_line(r.err)
    assert str(archive) in line
    assert tree(tmp_path) == before
    assert not Path("/tmp/escaped-abs.txt").exists()


def test_release_help_has_examples() -> None:
    for sub in ("verify", "fetch", "extract", "keys"):
        r = run_cli("release", sub, "--help")
        assert r.code == 0
        assert "Example: airgap release" in r.out, sub


def test_verify_as_a_process_never_imports_requests(rel: tuple[Path, Path, Path]) -> None:
    tarball, _, pub = rel
    code = (
        "import sys\n"
        "from airgap.cli import main\n"
        "try:\n"
        f"    main(['release', 'verify', {str(tarball)!r}, '--key', {str(pub)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "assert 'requests' not in sys.modules and 'kubernetes' not in sys.modules\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Verified OK\n"


def test_verify_real_process(rel: tuple[Path, Path, Path]) -> None:
    r = run_proc("release", "verify", rel[0], "--key", rel[2])
    assert (r.code, r.out) == (0, "Verified OK\n")


# --- fetch from a file:// mirror: re-runs -------------------------------------------------------------


def test_fetch_rerun_json_status_from_a_file_mirror(rel: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, sig, pub = rel
    version = tarball.name.removeprefix("istio-").removesuffix("-linux-amd64.tar.gz")
    out = tmp_path / "out"
    args = ("release", "fetch", version, "--base-url", tarball.parent.as_uri(), "--key", pub, "--out", out, "--json")
    first = run_cli(*args)
    assert first.code == 0, first.err
    assert json.loads(first.out)["status"] == "fetched"
    again = run_cli(*args)
    assert again.code == 0, again.err
    assert json.loads(again.out)["status"] == "already-fetched"
    assert f"{out / tarball.name}: already fetched and verified" in again.err
    (out / sig.name).unlink()  # as if the first run had been stopped before its last step
    third = run_cli(*args)
    assert third.code == 0, third.err
    assert json.loads(third.out)["status"] == "completed"
    assert tree(out) == [tarball.name, sig.name]
    assert (out / sig.name).read_bytes() == sig.read_bytes()


# --- issue 23, fault 13: a rollback under a newer name, and a downgrade of a line ------------------------


def _fetch_cli(version: str, mirror: Path, pub: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    r = run_cli("release", "fetch", version, "--base-url", mirror.as_uri(), "--key", pub, "--out", out, *extra)
    return r.code, r.out, r.err


def test_fault_13_release_rollback_and_downgrade_are_refused(tmp_path: Path) -> None:
    """A signed 1.8.5-asm.1 published as 1.8.6-asm.8 is refused at fetch and at extract (exit 1, nothing
    kept); once 1.8.6-asm.8 was accepted, 1.8.5-asm.1 is refused (exit 4) unless --allow-downgrade."""
    old_tar, _, old_pub = make_signed_release(tmp_path / "old", "1.8.5-asm.1")
    priv = tmp_path / "old" / "keys" / "release.key"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    newer_name = "istio-1.8.6-asm.8-linux-amd64.tar.gz"
    shutil.copy(old_tar, mirror / newer_name)
    openssl_sign(priv, mirror / newer_name, mirror / f"{newer_name}.1.sig")
    code, out, err = _fetch_cli("1.8.6-asm.8", mirror, old_pub, tmp_path / "got")
    assert (code, out) == (1, "Verification Failure\n")
    assert one_error_line(err) == (
        f"airgap: error: {mirror.as_uri()}/{newer_name}: the archive's root folder is 'istio-1.8.5-asm.1', "
        "not 'istio-1.8.6-asm.8' of the release asked for; refusing it (a different release published under "
        "this name?); the download was removed"
    )
    assert not (tmp_path / "got").exists()
    # the same file, renamed by hand, at extract: refused before anything appears under --out
    r = run_cli("release", "extract", mirror / newer_name, "--key", old_pub, "--out", tmp_path / "x")
    assert r.code == 1
    assert one_error_line(r.err) == (
        f"airgap: error: {mirror / newer_name}: the archive's root folder is 'istio-1.8.5-asm.1', not "
        "'istio-1.8.6-asm.8' of the release asked for; refusing it (a different release published under this name?)"
    )
    assert not (tmp_path / "x").exists()
    # a file named otherwise: the version must be given, and is checked the same way
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(old_tar, odd / "release.tar.gz")
    shutil.copy(mirror / f"{newer_name}.1.sig", odd / "release.tar.gz.1.sig")
    r = run_cli("release", "extract", odd / "release.tar.gz", "--key", old_pub, "--out", tmp_path / "y")
    assert r.code == 3 and one_error_line(r.err) == (
        f"airgap: error: {odd / 'release.tar.gz'}: cannot tell the release version from the file name; pass --version"
    )
    r = run_cli("release", "extract", odd / "release.tar.gz", "--key", old_pub, "--out", tmp_path / "y",
                "--version", "1.8.6-asm.8")  # fmt: skip
    assert r.code == 1 and "the archive's root folder is 'istio-1.8.5-asm.1'" in one_error_line(r.err)
    assert not (tmp_path / "y").exists()
    # a jump host that accepted 1.8.6-asm.8 refuses 1.8.5-asm.1 of the same line, before any traffic
    new_tar, _, new_pub = make_signed_release(tmp_path / "new", "1.8.6-asm.8")
    assert _fetch_cli("1.8.6-asm.8", new_tar.parent, new_pub, tmp_path / "new-got")[0] == 0
    state = Path(os.environ["AIRGAP_STATE_DIR"])
    assert json.loads((state / "releases.json").read_text())["lines"] == {"asm-1.8": "1.8.6-asm.8"}
    code, out, err = _fetch_cli("1.8.5-asm.1", old_tar.parent, old_pub, tmp_path / "old-got")
    assert code == 4
    assert one_error_line(err) == (
        f"airgap: error: release 1.8.5-asm.1 is older than 1.8.6-asm.8, which this jump host already accepted "
        f"for line asm-1.8 ({state / 'releases.json'}); refusing a downgrade (pass --allow-downgrade if you mean it)"
    )
    assert not (tmp_path / "old-got").exists()
    r = run_cli("release", "extract", old_tar, "--key", old_pub, "--out", tmp_path / "old-x")
    assert r.code == 4 and "refusing a downgrade" in one_error_line(r.err)
    assert not (tmp_path / "old-x").exists()
    # told explicitly: accepted, and the line's mark stays at the newer release
    assert _fetch_cli("1.8.5-asm.1", old_tar.parent, old_pub, tmp_path / "old-got", "--allow-downgrade")[0] == 0
    r = run_cli("release", "extract", old_tar, "--key", old_pub, "--out", tmp_path / "old-x", "--allow-downgrade")
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "old-x" / "RELEASE.json").read_text())
    assert (record["root"], record["version"]) == ("istio-1.8.5-asm.1", "1.8.5-asm.1")
    assert json.loads((state / "releases.json").read_text())["lines"] == {"asm-1.8": "1.8.6-asm.8"}
