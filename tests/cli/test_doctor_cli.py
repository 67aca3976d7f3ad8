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
