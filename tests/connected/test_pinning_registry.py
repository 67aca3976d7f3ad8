"""The live check of a pinned install against a real docker-registry (TLS, htpasswd) through skopeo."""

# ruff: noqa: F811  (fixtures imported from tests.registry_fixtures)

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airgap.connected.pinning import RegistryFlags, check_served
from airgap.errors import InvalidInput, NetworkError, NotServed, Refused, VerificationError
from tests.pin_fixtures import pin_digest
from tests.registry_fixtures import PIN_PASSWORD, PinRegistry, pin_registry  # noqa: F401


def _access(reg: PinRegistry) -> RegistryFlags:
    return RegistryFlags(authfile=reg.authfile, ca_bundle=reg.ca_pem)


def test_served_digests_pass_and_are_rehashed(pin_registry: PinRegistry) -> None:
    pilot = pin_registry.seed("mesh", "pilot", "1.8.6-asm.8")
    proxy = pin_registry.seed("mesh", "proxyv2", "1.8.6-asm.8")
    notes: list[str] = []
    refs = {"pilot": f"{pin_registry.host}/mesh/pilot@{pilot}", "proxyv2": f"{pin_registry.host}/mesh/proxyv2@{proxy}"}
    check_served(refs, _access(pin_registry), notify=notes.append)
    assert notes == [f"checking the registry serves {r}" for r in refs.values()]


def test_missing_digests_are_refused_naming_each(pin_registry: PinRegistry) -> None:
    pilot = pin_registry.seed("mesh", "pilot", "1.8.6-asm.8")
    absent_digest = f"{pin_registry.host}/mesh/pilot@{pin_digest('other')}"
    absent_repo = f"{pin_registry.host}/mesh/proxyv2@{pin_digest('proxy')}"
    refs = {"pilot": f"{pin_registry.host}/mesh/pilot@{pilot}", "x": absent_digest, "proxyv2": absent_repo}
    with pytest.raises(Refused) as exc:
        check_served(refs, _access(pin_registry))
    assert exc.value.exit_code == 4
    assert f"does not serve 2 pinned image(s): {absent_digest}, {absent_repo}" in exc.value.message


def test_an_absent_manifest_or_repository_is_typed_not_served(pin_registry: PinRegistry) -> None:
    from airgap.connected.skopeo import inspect_raw, registry_access

    pin_registry.seed("mesh", "pilot", "1.8.6-asm.8")
    with registry_access(pin_registry.ca_pem, pin_registry.authfile) as wire:
        for ref in (f"{pin_registry.host}/mesh/pilot@{pin_digest('other')}", f"{pin_registry.host}/mesh/none:1"):
            with pytest.raises(NotServed) as exc:
                inspect_raw(ref, wire)
            assert exc.value.exit_code == 5 and ref in exc.value.message


def test_no_credentials_or_untrusted_tls_is_a_network_error(pin_registry: PinRegistry, tmp_path: Path) -> None:
    pilot = pin_registry.seed("mesh", "pilot", "1.8.6-asm.8")
    refs = {"pilot": f"{pin_registry.host}/mesh/pilot@{pilot}"}
    empty = tmp_path / "empty-auth.json"
    empty.write_text('{"auths": {}}')
    with pytest.raises(NetworkError) as exc:
        check_served(refs, RegistryFlags(authfile=empty, ca_bundle=pin_registry.ca_pem))
    assert exc.value.exit_code == 5 and "the registry refused access (401" in exc.value.message
    assert "unauthorized" in exc.value.message and PIN_PASSWORD not in exc.value.message
    with pytest.raises(
        NetworkError, match="x509: certificate signed by unknown authority"
    ):  # the system CAs do not know its CA
        check_served(refs, RegistryFlags(authfile=pin_registry.authfile))


def test_bad_auth_file_or_ca_bundle_is_invalid_input(pin_registry: PinRegistry, tmp_path: Path) -> None:
    refs = {"pilot": f"{pin_registry.host}/mesh/pilot@{pin_digest('p')}"}
    with pytest.raises(InvalidInput, match=r"nope\.json: registry auth file not found"):
        check_served(refs, RegistryFlags(authfile=tmp_path / "nope.json"))
    junk = tmp_path / "auth.json"
    junk.write_text("user:password\n")
    with pytest.raises(InvalidInput, match=r"auth\.json: registry auth file is not valid JSON") as exc:
        check_served(refs, RegistryFlags(authfile=junk))
    assert "password" not in exc.value.message.replace("auth file", "")
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(InvalidInput, match=r"ca\.pem"):
        check_served(refs, RegistryFlags(ca_bundle=bad))


def test_other_bytes_than_the_digest_are_a_verification_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry answering a digest with other bytes (what skopeo printed): exit 1."""
    import airgap.connected.skopeo as skopeo

    body = b'{"schemaVersion": 2}'
    monkeypatch.setattr(skopeo, "run_skopeo", lambda _args, **_kw: body)
    good = "r.example/mesh/pilot@sha256:" + hashlib.sha256(body).hexdigest()
    check_served({"pilot": good})
    bad = f"r.example/mesh/pilot@{pin_digest('x')}"
    with pytest.raises(VerificationError, match="serves other bytes than this digest"):
        check_served({"pilot": bad})
