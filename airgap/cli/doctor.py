"""`airgap doctor`: this host and this install of airgap, checked offline (no traffic sent)."""

from __future__ import annotations

from pathlib import Path

import typer

from airgap.cli._app import print_json


def _shown(text: str) -> str:
    """Text from the host (tool output, paths) with control characters escaped (``display.clean``)."""
    from airgap.core.display import clean

    return clean(text)


def doctor(
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    pkcs11_module: Path | None = typer.Option(
        None, "--pkcs11-module", help="A PKCS#11 module to load and describe (no token is opened)."
    ),
    pki: Path | None = typer.Option(
        None, "--pki", help="A PKI folder: the PKCS#11 module its root key is recorded in is checked."
    ),
    verify_key: Path | None = typer.Option(
        None, "--verify-key", help="The kit's public key: also verify the installed kit's SHA256SUMS.sig."
    ),
    prefix: Path | None = typer.Option(
        None, "--prefix", help="The kit install to re-check (default: the one running this airgap)."
    ),
) -> None:
    """Check this host and this airgap install, offline: Python and platform, cryptography and its
    OpenSSL, whether a default route exists, openssl, age, a PKCS#11 module, and the offline kit's
    SHA256SUMS re-checked against the installed files. Exits 1 if a check fails.

    Examples:

      airgap doctor

      airgap doctor --json --verify-key kit.pub

      airgap doctor --pki pki
    """
    from airgap.core.doctor import run_checks

    module = pkcs11_module
    if module is None and pki is not None:
        from airgap.offline.pkcs11 import read_key_record

        record = read_key_record(pki)
        if record is not None:
            module = Path(record.module)
    report = run_checks(prefix=prefix, pkcs11_module=module, verify_key=verify_key)
    if as_json:
        print_json(report.as_json())
    else:
        for c in report.checks:
            typer.echo(f"{c.status:<5} {c.name:<13} {_shown(c.detail)}")
            for problem in c.data.get("problems", [])[1:]:
                typer.echo(f"{'':<19} {_shown(problem)}")
    if not report.ok:
        from airgap.errors import VerificationError

        failed = [c.name for c in report.checks if c.status == "fail"]
        raise VerificationError(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")


def register(root: typer.Typer) -> None:
    """``airgap doctor`` sits at the top level."""
    root.command("doctor")(doctor)
