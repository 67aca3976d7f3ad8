"""`airgap ca init | issue | list`: the offline root and per-cluster intermediates."""

from __future__ import annotations

from pathlib import Path

import typer

from airgap.cli._app import info, new_app, print_json

app = new_app(help="Offline root CA and per-cluster intermediate CAs (Istio's cacerts layout).")

DirOpt = typer.Option(..., "--dir", help="The PKI folder (created when missing).")
PassFileOpt = typer.Option(
    None,
    "--passphrase-file",
    help="File whose first line is the PKI passphrase (read like openssl -passin file:). "
    "Also: $AIRGAP_PASSPHRASE, or a prompt on a terminal.",
)
NoPassOpt = typer.Option(False, "--no-passphrase", help="Write keys unencrypted (not recommended).")


@app.command("init")
def init(
    dir: Path = DirOpt,
    key_type: str = typer.Option("rsa-4096", "--key-type", help="rsa-4096 | rsa-3072 | ecdsa-p256 | ecdsa-p384"),
    days: int = typer.Option(3650, "--days", help="Validity of the root in days."),
    org: str = typer.Option("Istio", "--org"),
    cn: str = typer.Option("Root CA", "--cn"),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = NoPassOpt,
) -> None:
    """Create the root: PKI/root-key.pem (0600, encrypted) and PKI/root-cert.pem.

    Example: airgap ca init --dir pki --passphrase-file pass.txt
    """
    from airgap.core.keys import check_key_type
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.ca import CAStore

    kt = check_key_type(key_type)
    pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True)
    rec = CAStore(dir).init_root(key_type=kt, days=days, org=org, cn=cn, passphrase=pw)
    typer.echo(f"Root CA created in {dir}")
    typer.echo(f"  subject      {rec.subject}")
    typer.echo(f"  key          {kt}, {'encrypted' if pw else 'UNENCRYPTED'}")
    typer.echo(f"  valid until  {rec.not_after}")
    typer.echo(f"  fingerprint  {rec.fingerprint}")


@app.command("issue")
def issue(
    clusters: list[str] = typer.Argument(..., help="One or more cluster names (Kubernetes label values)."),
    dir: Path = DirOpt,
    key_type: str = typer.Option("rsa-4096", "--key-type", help="rsa-4096 | rsa-3072 | ecdsa-p256 | ecdsa-p384"),
    days: int = typer.Option(
        730, "--days", help="Validity in days. Refused (exit 4) if it would outlive the root: never clamped."
    ),
    org: str = typer.Option("Istio", "--org"),
    cn: str = typer.Option("Intermediate CA", "--cn"),
    san: list[str] = typer.Option(["DNS:istiod.istio-system.svc"], "--san", help="Subject alternative names."),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Root key is unencrypted and new keys are written unencrypted."
    ),
    workers: int = typer.Option(0, "--workers", help="Key-generation processes (0: every core)."),
) -> None:
    """Issue an intermediate CA per cluster: PKI/CLUSTER/{ca-cert,ca-key,cert-chain,root-cert}.pem.

    Example: airgap ca issue cluster1 cluster2 --dir pki --passphrase-file pass.txt
    """
    from airgap.core.keys import check_key_type
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.ca import CAStore

    kt = check_key_type(key_type)
    pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase)
    records = CAStore(dir).issue(
        clusters,
        key_type=kt,
        days=days,
        org=org,
        cn=cn,
        sans=san,
        passphrase=pw,
        key_passphrase=pw,
        workers=workers or None,
    )
    for r in records:
        typer.echo(f"Issued {r.cluster}: {r.subject}, until {r.not_after}, sha256 {r.fingerprint}")
    info(f"{len(records)} intermediate(s) written under {dir}")


@app.command("list")
def list_(
    dir: Path = DirOpt,
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="Open each ca-key.pem to check it matches (otherwise: skipped)."
    ),
) -> None:
    """List the root and every intermediate with its checks and status (valid/expiring/expired).

    Example: airgap ca list --dir pki --json
    """
    from airgap.core.passphrase import read_passphrase_file
    from airgap.core.x509 import fingerprint, status_of
    from airgap.offline.ca import CAStore

    store = CAStore(dir)
    root = store.load_root_cert()
    pw = read_passphrase_file(passphrase_file) if passphrase_file else None
    rows = store.status(pw)
    root_doc = {
        "subject": root.subject.rfc4514_string(),
        "fingerprint": fingerprint(root),
        "not_after": root.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": status_of(root),
    }
    if json_out:
        print_json(
            {
                "root": root_doc,
                "intermediates": [
                    {
                        "cluster": r.cluster,
                        "serial": r.serial,
                        "fingerprint": r.fingerprint,
                        "not_after": r.not_after,
                        "key_type": r.key_type,
                        "status": r.status,
                        "chains_to_root": r.chains_to_root,
                        "is_ca": r.is_ca,
                        "key_check": r.key_check,
                        "problems": list(r.problems),
                    }
                    for r in rows
                ],
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"Root: {root_doc['subject']}  until {root_doc['not_after']}  status {root_doc['status']}", markup=False
    )
    console.print(f"      sha256 {root_doc['fingerprint']}")
    table = Table("cluster", "status", "not after", "key", "chain", "CA", "key check", "fingerprint")
    for r in rows:
        table.add_row(
            r.cluster,
            r.status,
            r.not_after,
            r.key_type,
            "ok" if r.chains_to_root else "BROKEN",
            "yes" if r.is_ca else "NO",
            r.key_check,
            r.fingerprint[:16] + "…",
        )
    console.print(table)
    for r in rows:
        for p in r.problems:
            console.print(f"{r.cluster}: {p}")
