"""airgap.core.doctor: routing table, tools, PKCS#11 module, kit records — all read locally."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap.core import doctor

IPV4_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
IPV4_DEFAULT = "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
IPV4_LOCAL = "eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
IPV6_LO_REJECT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                  "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
IPV6_DEFAULT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                "fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n")


def _tables(tmp_path: Path, v4: str, v6: str) -> tuple[Path, Path]:
    (tmp_path / "route").write_text(IPV4_HEADER + v4)
    (tmp_path / "ipv6_route").write_text(v6)
    return tmp_path / "route", tmp_path / "ipv6_route"


def test_no_default_route_is_ok(tmp_path: Path) -> None:
    check = doctor.check_default_route(_tables(tmp_path, IPV4_LOCAL, IPV6_LO_REJECT))
    assert check.status == "ok" and check.data["default_routes"] == []


@pytest.mark.parametrize(("v4", "v6", "found"), [
    (IPV4_DEFAULT, "", ["eth0 (IPv4)"]),
    (IPV4_LOCAL, IPV6_DEFAULT, ["eth0 (IPv6)"]),
    (IPV4_DEFAULT + IPV4_LOCAL, IPV6_LO_REJECT + IPV6_DEFAULT, ["eth0 (IPv4)", "eth0 (IPv6)"]),
])
def test_a_default_route_is_a_warning(tmp_path: Path, v4: str, v6: str, found: list[str]) -> None:
    check = doctor.check_default_route(_tables(tmp_path, v4, v6))
    assert check.status == "warn" and check.data["default_routes"] == found
    assert "this host can reach a network" in check.detail


def test_unreadable_routing_table_is_unknown_not_ok(tmp_path: Path) -> None:
    check = doctor.check_default_route([tmp_path / "missing"])
    assert check.status == "info" and "default route unknown" in check.detail


def test_missing_tool_is_a_warning() -> None:
    check = doctor.check_tool("age", ["--version"], "why", which=lambda _: None)
    assert check.status == "warn" and check.detail == "age not found on PATH (why)"


def test_tool_version_is_reported(tmp_path: Path) -> None:
    tool = tmp_path / "openssl"
    tool.write_text("#!/bin/sh\necho 'OpenSSL 9.9.9 test'\n")
    tool.chmod(0o755)
    check = doctor.check_tool("openssl", ["version"], "why", which=lambda _: str(tool))
    assert check.status == "ok" and check.data["version"] == "OpenSSL 9.9.9 test"


def test_failing_tool_is_a_warning(tmp_path: Path) -> None:
    tool = tmp_path / "age"
    tool.write_text("#!/bin/sh\nexit 3\n")
    tool.chmod(0o755)
    check = doctor.check_tool("age", ["--version"], "why", which=lambda _: str(tool))
    assert check.status == "warn" and "did not report a version" in check.detail


def test_pkcs11_not_configured_missing_and_softhsm(tmp_path: Path) -> None:
    assert doctor.check_pkcs11(None).status == "info"
    missing = doctor.check_pkcs11(tmp_path / "nope.so")
    assert missing.status == "fail" and "PKCS#11 module not found" in missing.detail
    not_a_module = tmp_path / "bad.so"
    not_a_module.write_bytes(b"not an ELF")
    assert doctor.check_pkcs11(not_a_module).status == "fail"
    softhsm = Path("/usr/lib/softhsm/libsofthsm2.so")
    if softhsm.exists():
        ok = doctor.check_pkcs11(softhsm)
        assert ok.status == "ok" and "SoftHSM" in ok.data["manufacturer"]


def test_not_installed_from_a_kit_is_info(tmp_path: Path) -> None:
    check = doctor.check_kit(tmp_path)
    assert check.status == "info" and "not installed from an offline kit" in check.detail


@pytest.mark.parametrize("line", [
    "0" * 64 + "  ../etc/passwd",
    "0" * 64 + "  /etc/passwd",
    "0" * 63 + "  short",
    "G" * 64 + "  upper",
    "0" * 64 + " one-space",
])
def test_parse_sums_refuses_malformed_and_escaping_lines(line: str) -> None:
    with pytest.raises(ValueError, match="line 1 is malformed"):
        doctor.parse_sums(line + "\n")


def test_kit_record_with_a_bad_sums_file_fails(tmp_path: Path) -> None:
    record = tmp_path / doctor.KIT_RECORD_DIR
    record.mkdir(parents=True)
    (record / "SHA256SUMS").write_text("nonsense\n")
    check = doctor.check_kit(tmp_path)
    assert check.status == "fail" and "unreadable" in check.detail


def test_report_fails_only_on_fail() -> None:
    ok = doctor.Report((doctor.Check("a", "ok", ""), doctor.Check("b", "warn", ""), doctor.Check("c", "info", "")))
    assert ok.ok and ok.as_json()["ok"] is True
    assert not doctor.Report((doctor.Check("a", "fail", ""),)).ok


def test_run_checks_names_every_check() -> None:
    names = [c.name for c in doctor.run_checks(prefix=Path(os.devnull)).checks]
    assert names == ["python", "cryptography", "network", "openssl", "age", "pkcs11", "kit"]
