"""`ca list --prometheus` and `--prometheus-file`: the PKI folder's expiry for monitoring (issue 24 item 4)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core.atomic import TMP_PREFIX
from tests.helpers import REPO, one_error_line, run_cli, run_proc, tree
from tests.promtool_fixtures import check_metrics_clean, needs_promtool, samples

EC = ("--key-type", "ecdsa-p256")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _fp(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _expected(cert: x509.Certificate, cluster: str, role: str) -> tuple[tuple[str, str], ...]:
    labels = {"cluster": cluster, "role": role, "serial": format(cert.serial_number, "x"), "fingerprint": _fp(cert)}
    return tuple(sorted(labels.items()))


def _by_name(data: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for n, labels, value in samples(data) if n == name}


def test_ca_list_prometheus_exact_values_and_labels(pki: Path) -> None:
    r = run_cli("ca", "list", "--dir", pki, "--prometheus")  # no passphrase: certificates only
    assert r.code == 0, r.err
    data = r.out.encode()
    for name in ("x509_cert_not_after", "x509_cert_not_before", "airgap_crl_next_update"):
        assert f"# HELP {name} " in r.out and f"# TYPE {name} gauge" in r.out
    after, before = _by_name(data, "x509_cert_not_after"), _by_name(data, "x509_cert_not_before")
    certs = {
        _expected(_cert(pki / "root-cert.pem"), "", "root"): _cert(pki / "root-cert.pem"),
        **{
            _expected(_cert(pki / c / "ca-cert.pem"), c, "intermediate"): _cert(pki / c / "ca-cert.pem")
            for c in ("c1", "c2")
        },
    }
    assert set(after) == set(certs) == set(before)  # one sample per certificate, nothing else
    for labels, cert in certs.items():
        assert after[labels] == cert.not_valid_after_utc.timestamp()  # exact to the second
        assert before[labels] == cert.not_valid_before_utc.timestamp()
        fp = dict(labels)["fingerprint"]
        assert len(fp) == 64 and fp == fp.lower()
    assert _by_name(data, "airgap_crl_next_update") == {}  # no CRL yet


def test_ca_list_prometheus_is_byte_stable_across_time(pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_cli("ca", "list", "--dir", pki, "--prometheus")
    second = run_cli("ca", "list", "--dir", pki, "--prometheus")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    monkeypatch.setattr("airgap.core.x509.now", lambda: later)
    third = run_cli("ca", "list", "--dir", pki, "--prometheus")  # another day, another status; same metrics
    assert first.code == second.code == third.code == 0
    assert first.out == second.out == third.out


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime not installed (scripts/system-deps.sh)")
def test_ca_list_prometheus_same_bytes_under_another_clock(pki: Path) -> None:
    """Real processes; faketime moves the whole second process's clock 700 days on (not one function)."""
    later = ("faketime", "-f", "+700d", sys.executable, "-m", "airgap", "ca", "list", "--dir", str(pki))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)

    assert "expiring" in run(*later).stdout  # the clock really moved (intermediates: 730 days) ...
    now, moved = run_proc("ca", "list", "--dir", pki, "--prometheus"), run(*later, "--prometheus")
    assert now.code == moved.returncode == 0, moved.stderr
    assert now.out == moved.stdout  # ... and the metrics did not


def test_ca_list_prometheus_after_rotate_root_and_revoke(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    assert (
        run_cli("ca", "revoke", "c2", "--reason", "keyCompromise", "--dir", pki, "--next-update-days", "9", *pf).code
        == 0
    )
    r = run_cli("ca", "rotate-root", "--dir", pki, *EC, "--cn", "Root CA 2", *pf)
    assert r.code == 0, r.err
    r = run_cli("ca", "list", "--dir", pki, "--prometheus")
    assert r.code == 1, r.err  # c2 revoked and still current: a failed check (issue 23); metrics all the same
    assert "c2 (revoked (keyCompromise)" in one_error_line(r.err)
    data = r.out.encode()
    root, nxt = _cert(pki / "root-cert.pem"), _cert(pki / "next-root" / "root-cert.pem")
    after = _by_name(data, "x509_cert_not_after")
    assert after[_expected(nxt, "", "next-root")] == nxt.not_valid_after_utc.timestamp()
    assert after[_expected(root, "", "root")] == root.not_valid_after_utc.timestamp()
    assert sorted(dict(k)["role"] for k in after) == ["intermediate", "intermediate", "next-root", "root"]
    crl = x509.load_pem_x509_crl((pki / "ca-crl.pem").read_bytes())
    assert crl.next_update_utc is not None
    assert _by_name(data, "airgap_crl_next_update") == {
        (("cluster", ""), ("issuer", _fp(root))): crl.next_update_utc.timestamp()
    }


def test_ca_list_broken_pki_still_prints_metrics_and_exits_1(pki: Path, tmp_path: Path) -> None:
    (pki / "c1" / "ca-key.pem").unlink()  # istiod would not accept c1 (no key)
    out = tmp_path / "airgap.prom"
    r = run_cli("ca", "list", "--dir", pki, "--prometheus", "--prometheus-file", out)
    assert r.code == 1
    assert "c1 (ca-key.pem is missing)" in one_error_line(r.err)
    assert len(_by_name(r.out.encode(), "x509_cert_not_after")) == 3
    assert out.read_text() == r.out


def test_ca_list_prometheus_file(pki: Path, tmp_path: Path) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "airgap-pki.prom"
    target.write_text("# stale\n")
    r = run_cli("ca", "list", "--dir", pki, "--prometheus-file", target)
    assert r.code == 0, r.err
    assert "Root:" in r.out and "x509_cert" not in r.out  # the report as usual on stdout
    printed = run_cli("ca", "list", "--dir", pki, "--prometheus").out
    assert target.read_text() == printed
    assert [p.name for p in folder.iterdir()] == ["airgap-pki.prom"]  # no temp left beside it


def test_ca_list_prometheus_file_symlink_refused(pki: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "airgap.prom"
    link.symlink_to(victim)
    before = tree(tmp_path)
    r = run_cli("ca", "list", "--dir", pki, "--prometheus-file", link)
    assert r.code == 4
    one_error_line(r.err, str(link), "not a regular file")
    assert victim.read_text() == "keep me\n" and link.is_symlink() and tree(tmp_path) == before


def test_ca_list_prometheus_usage_and_bad_input(pki: Path, tmp_path: Path) -> None:
    r = run_cli("ca", "list", "--dir", pki, "--prometheus", "--json")
    assert r.code == 2 and "--json and --prometheus" in r.err and r.out == ""
    r = run_cli("ca", "list", "--dir", tmp_path / "nothing", "--prometheus", "--prometheus-file", tmp_path / "a.prom")
    assert r.code == 4 and r.out == "" and not (tmp_path / "a.prom").exists()
    one_error_line(r.err, "no root here")
    (pki / "ca-crl.pem").write_text("-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n")
    r = run_cli("ca", "list", "--dir", pki, "--prometheus")
    assert r.code == 3 and r.out == ""
    one_error_line(r.err, "ca-crl.pem", "not a valid PEM CRL")


@needs_promtool
def test_ca_list_promtool_check_metrics_clean(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    assert run_cli("ca", "revoke", "c1", "--reason", "superseded", "--dir", pki, *pf).code == 0
    assert run_cli("ca", "rotate-root", "--dir", pki, *EC, *pf).code == 0
    r = run_cli("ca", "list", "--dir", pki, "--prometheus")
    assert r.code == 1, r.err  # c1 is revoked and still current: a failed check (issue 23); the metrics are whole
    check_metrics_clean(r.out.encode())


def test_prometheus_client_imported_only_when_asked(pki: Path) -> None:
    code = (
        "import sys\n"
        "from airgap.cli import main\n"
        "def run(*a):\n"
        "    try:\n"
        "        main(list(a))\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        f"run('ca', 'list', '--dir', {str(pki)!r}, '--json')\n"
        "assert 'prometheus_client' not in sys.modules\n"
        f"run('ca', 'list', '--dir', {str(pki)!r}, '--prometheus')\n"
        "assert 'prometheus_client' in sys.modules\n"
        "assert 'requests' not in sys.modules and 'kubernetes' not in sys.modules\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "x509_cert_not_after{" in p.stdout


@pytest.mark.parametrize("dangling", [False, True])
def test_ca_list_prometheus_file_link_at_the_temp_name(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dangling: bool
) -> None:
    """A link planted at the (made predictable) temporary name: refused, nothing written through it."""
    monkeypatch.setattr("airgap.core.atomic.secrets.token_hex", lambda n=6: "0" * (2 * n))
    folder = tmp_path / "textfile"
    folder.mkdir()
    victim = tmp_path / ("missing" if dangling else "victim.txt")
    if not dangling:
        victim.write_text("keep me\n")
    (folder / f"{TMP_PREFIX}airgap.prom.{os.getpid()}.{'0' * 12}").symlink_to(victim)
    r = run_cli("ca", "list", "--dir", pki, "--prometheus-file", folder / "airgap.prom")
    assert r.code == 4
    one_error_line(r.err, "already exists")
    assert not (folder / "airgap.prom").exists()
    assert (not victim.exists()) if dangling else victim.read_text() == "keep me\n"
