"""`airgap doctor` on the command line: exit codes, --json, escaping, no network libraries imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airgap", "doctor", *args], capture_output=True, text=True,
                          check=False, env=env)


def test_json_report_and_exit_zero() -> None:
    proc = _run("--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    names = [c["name"] for c in doc["checks"]]
    assert names == ["python", "cryptography", "network", "openssl", "age", "pkcs11", "kit"]
    crypto = next(c for c in doc["checks"] if c["name"] == "cryptography")
    assert crypto["data"]["openssl"].startswith("OpenSSL")


def test_human_report_one_line_per_check() -> None:
    proc = _run()
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["python", "cryptography", "network", "openssl", "age", "pkcs11", "kit"]
    assert all(ln.split()[0] in ("ok", "warn", "info") for ln in lines)


def test_a_failed_check_exits_one(tmp_path: Path) -> None:
    proc = _run("--pkcs11-module", str(tmp_path / "missing.so"))
    assert proc.returncode == 1
    assert f"fail  pkcs11        {tmp_path / 'missing.so'}: PKCS#11 module not found" in proc.stdout


def test_pki_folder_names_its_token_module(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "root-key.pkcs11.json").write_text(json.dumps({
        "format": 1, "module": str(tmp_path / "gone.so"), "token_label": "t", "key_label": "k",
        "key_id": "0" * 64, "key_type": "ecdsa-p256"}))
    proc = _run("--pki", str(pki), "--json")
    assert proc.returncode == 1
    check = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "pkcs11")
    assert check["status"] == "fail" and check["data"]["module"] == str(tmp_path / "gone.so")


def test_tool_output_is_escaped(tmp_path: Path) -> None:
    fake = tmp_path / "openssl"
    fake.write_text("#!/bin/sh\nprintf 'OpenSSL \\033[31mred\\n'\n")
    fake.chmod(0o755)
    proc = _run(env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    line = next(ln for ln in proc.stdout.splitlines() if " openssl " in ln)
    assert "\x1b" not in proc.stdout
    assert "OpenSSL \\x1b[31mred" in line


def test_doctor_imports_no_network_library() -> None:
    code = (
        "import sys\nfrom airgap.cli import main\n"
        "try:\n    main(['doctor', '--json'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'kubernetes', 'urllib3')),"
        " file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_fault_19_kit_without_verify_key_is_not_verified_never_ok(tmp_path: Path) -> None:
    """A kit record whose SHA256SUMS and lock were rewritten together is consistent; without
    --verify-key the kit line says "not verified" (warn), and only a verified signature gives ok."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    record = tmp_path / "prefix" / "share" / "airgap-kit"
    record.mkdir(parents=True)
    (tmp_path / "prefix" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    files = {"requirements.lock": b"# rewritten around another wheel\n", "sbom.cdx.json": b"{}\n"}
    for name, data in files.items():
        (record / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items())).encode()
    (record / "SHA256SUMS").write_bytes(sums)
    prefix = str(tmp_path / "prefix")
    proc = _run("--prefix", prefix)
    assert proc.returncode == 0, proc.stderr  # a warning, not a failure
    kit = next(ln for ln in proc.stdout.splitlines() if ln.split()[1] == "kit")
    assert kit == (
        "warn  kit           not verified: the kit's signature was not checked (pass --verify-key KIT.pub); "
        f"0 locked packages, 0 files as installed from SHA256SUMS {hashlib.sha256(sums).hexdigest()}"
    )
    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "kit.pub"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (record / "SHA256SUMS.sig").write_bytes(key.sign(b"another file", ec.ECDSA(hashes.SHA256())))
    proc = _run("--prefix", prefix, "--verify-key", str(pub))
    assert (
        proc.returncode == 1
        and "fail  kit           kit install re-check failed: SHA256SUMS.sig does not verify" in (proc.stdout)
    )
    (record / "SHA256SUMS.sig").write_bytes(key.sign(sums, ec.ECDSA(hashes.SHA256())))
    proc = _run("--prefix", prefix, "--verify-key", str(pub), "--json")
    assert proc.returncode == 0, proc.stdout
    check = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "kit")
    assert check["status"] == "ok" and check["detail"].startswith("signature verified by ")
