"""airgap.core.expiry_metrics: the exposition (prometheus-client's), de-duplication, escaping, the textfile."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from airgap.core.atomic import TMP_PREFIX
from airgap.core.expiry_metrics import (
    CRL_NEXT_UPDATE,
    NOT_AFTER,
    NOT_BEFORE,
    STATUS_OK,
    CertSample,
    CrlSample,
    Metrics,
    exposition,
    write_textfile,
)
from airgap.errors import InvalidInput, NotFound, WouldOverwrite

FP = "ab" * 32


def _cert(cluster: str = "c1", role: str = "intermediate", fp: str = FP, after: int = 1_900_000_007) -> CertSample:
    return CertSample(cluster, role, "1f", fp, 1_800_000_003, after)


def _samples(data: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(data.decode()):
        out[fam.name] = [(s.labels, s.value) for s in fam.samples]
    return out


def test_help_type_and_exact_values() -> None:
    data = exposition(Metrics((_cert(),), (CrlSample("", FP, 1_799_999_999),)))
    text = data.decode()
    for name in (NOT_AFTER, NOT_BEFORE, CRL_NEXT_UPDATE):
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge\n" in text
    got = _samples(data)
    labels = {"cluster": "c1", "role": "intermediate", "serial": "1f", "fingerprint": FP}
    assert got[NOT_AFTER] == [(labels, 1_900_000_007.0)]
    assert got[NOT_BEFORE] == [(labels, 1_800_000_003.0)]
    assert got[CRL_NEXT_UPDATE] == [({"cluster": "", "issuer": FP}, 1_799_999_999.0)]
    assert STATUS_OK not in text  # only mesh status reports a status


def test_duplicates_collapse_and_order_is_stable() -> None:
    a, b = _cert("c2"), _cert("c1", fp="cd" * 32)
    one = exposition(Metrics((a, b, a), (CrlSample("c1", FP, 20), CrlSample("c1", FP, 10))))
    two = exposition(Metrics((b, a)) + Metrics((), (CrlSample("c1", FP, 10),)))
    assert one == two
    got = _samples(one)
    assert [s[0]["cluster"] for s in got[NOT_AFTER]] == ["c1", "c2"]
    assert got[CRL_NEXT_UPDATE] == [({"cluster": "c1", "issuer": FP}, 10.0)]  # the earlier nextUpdate counts


def test_status_worst_wins() -> None:
    got = _samples(exposition(Metrics(status=(("b", True), ("a", True), ("b", False)))))
    assert got[STATUS_OK] == [({"context": "a"}, 1.0), ({"context": "b"}, 0.0)]


def test_hostile_label_values_are_escaped() -> None:
    evil = 'x"} 1\nx509_cert_not_after{cluster="forged'
    data = exposition(Metrics((_cert(evil),)))
    got = _samples(data)
    assert len(got[NOT_AFTER]) == 1 and got[NOT_AFTER][0][0]["cluster"] == evil
    assert data.decode().count("\n") == 8  # HELP + TYPE of three families, one sample in two; no injected line


def _self_signed(not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(0xABC).not_valid_before(not_before).not_valid_after(not_after)
    return builder.sign(key, hashes.SHA256())


def test_sample_of_a_certificate() -> None:
    start = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cert = _self_signed(start, start + dt.timedelta(days=700, seconds=1))
    s = CertSample.of(cert, cluster="c9", role="next-root")
    assert (s.serial, s.role, s.cluster) == ("abc", "next-root", "c9")
    assert s.fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert s.not_before == int(cert.not_valid_before_utc.timestamp()) == 1_767_323_045
    assert s.not_after == int(cert.not_valid_after_utc.timestamp())
    with pytest.raises(ValueError, match="unknown certificate role"):
        CertSample.of(cert, cluster="c", role="leaf")


def test_textfile_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "airgap.prom"
    target.write_bytes(b"old\n")
    inode = target.stat().st_ino
    write_textfile(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_ino != inode  # a new file renamed into place, not rewritten in place
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["airgap.prom"]  # no temp left


def test_textfile_symlink_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    link = tmp_path / "airgap.prom"
    link.symlink_to(victim)
    with pytest.raises(WouldOverwrite, match="not a regular file"):
        write_textfile(link, b"new\n")
    assert victim.read_bytes() == b"keep\n" and link.is_symlink()
    dangling = tmp_path / "d.prom"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(WouldOverwrite):
        write_textfile(dangling, b"new\n")
    assert not (tmp_path / "nowhere").exists()


def test_textfile_bad_targets(tmp_path: Path) -> None:
    (tmp_path / "dir.prom").mkdir()
    with pytest.raises(WouldOverwrite, match="not a regular file"):
        write_textfile(tmp_path / "dir.prom", b"x")
    with pytest.raises(NotFound, match="no such folder"):
        write_textfile(tmp_path / "missing" / "a.prom", b"x")
    assert not (tmp_path / "missing").exists()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(InvalidInput, match="not writable"):
            write_textfile(ro / "a.prom", b"x")
        assert not any(p.name.startswith(TMP_PREFIX) for p in ro.iterdir())
