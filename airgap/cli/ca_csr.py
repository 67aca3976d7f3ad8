"""`airgap ca sign` and `airgap ca request`: keys that never cross the gap (registered on `ca`).

``ca request`` runs on the jump host: it makes the cluster's key there and a signed request file.
``ca sign`` runs on the root host: it certifies the public key of a PKCS#10 request (from openssl,
OpenBao, or inside a request file) and never sees a private key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from airgap.cli._app import info, print_json
from airgap.cli._custody import ShareOpt, SharePassOpt, TypeShareOpt
from airgap.cli.ca import (
    DirOpt,
    KeyLabelOpt,
    LogKeyOpt,
    LogPassOpt,
    ModuleOpt,
    PassFileOpt,
    PinFileOpt,
    TokenOpt,
    app,
)
from airgap.core.display import clean
from airgap.offline.root import RootOptions, open_root

if TYPE_CHECKING:
    from airgap.offline.sign import SignedBatch, SignItem

__all__ = ["app", "request", "sign"]


@app.command("sign")
def sign(
    requests: list[Path] = typer.Argument(
        ...,
        help="PKCS#10 CSRs (PEM or DER: openssl req, OpenBao intermediate/generate/internal) or, "
        "with --trust, signed request files from 'airgap ca request'.",
    ),
    cluster: list[str] | None = typer.Option(
        None,
        "--cluster",
        help="The cluster each CSR is for, in order (one per CSR); for request files optional and checked.",
    ),
    dir: Path = DirOpt,
    out: Path = typer.Option(
        ...,
        "--out",
        help="New folder for ca-cert.pem, cert-chain.pem, root-cert.pem (several requests: DIR/CLUSTER/).",
    ),
    trust: list[Path] | None = typer.Option(
        None, "--trust", help="Public key (.pub) of an operator whose signed request files are accepted."
    ),
    days: int = typer.Option(
        730, "--days", help="Validity in days. Refused (exit 4) if it would outlive the root: never clamped."
    ),
    org: str = typer.Option("Istio", "--org", help="O= of the intermediate (the request's subject is ignored)."),
    cn: str = typer.Option("Intermediate CA", "--cn", help="CN= of the intermediate."),
    san: list[str] = typer.Option(["DNS:istiod.istio-system.svc"], "--san", help="Subject alternative names."),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="The root key is unencrypted."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    skip_existing: bool = typer.Option(
        False,
        "--skip-existing",
        help="Finish an interrupted run: a cluster already signed for the same key goes to --out as it is.",
    ),
    log_key: Path | None = LogKeyOpt,
    log_key_passphrase_file: Path | None = LogPassOpt,
    pkcs11_module: Path | None = ModuleOpt,
    token_label: str | None = TokenOpt,
    key_label: str | None = KeyLabelOpt,
    pin_file: Path | None = PinFileOpt,
    share: list[Path] | None = ShareOpt,
    share_passphrase_file: list[Path] | None = SharePassOpt,
    type_share: int = TypeShareOpt,
) -> None:
    """Certify cluster keys held elsewhere: only each request's public key is used.

    The certificate follows the intermediate profile (CA:true pathlen:0, L=CLUSTER, --org/--cn/--san)
    whatever the request asks; its subject, SANs and extensions are never copied. PKI/CLUSTER/ gets
    the certificates but no ca-key.pem; the inventory and ceremony log record the key as held elsewhere.
    Every request is checked before the root key signs any of them.

    Example: airgap ca sign c1.csr --cluster c1 --dir pki --out signed/ --passphrase-file pass.txt

    Example: airgap ca sign c1.request --trust operator.pub --dir pki --out signed/ --passphrase-file pass.txt

    Example: airgap ca sign *.csr --cluster c1 --cluster c2 --dir pki --out signed2/ --skip-existing   (resume)
    """
    from airgap.offline.keysource import signing_token_ref
    from airgap.offline.sign import sign_csrs

    items = _signing_requests(requests, list(cluster or []), trust)
    # During a root rotation the next root signs (and its token key, if it is in one), as for ca issue.
    ref = signing_token_ref(dir, pkcs11_module, token_label, key_label)
    opts = RootOptions(
        passphrase_file=passphrase_file,
        no_passphrase=no_passphrase,
        log_key=log_key,
        log_key_passphrase_file=log_key_passphrase_file,
        pin_file=pin_file,
        shares=share or (),
        share_passphrase_files=share_passphrase_file or (),
        type_share=type_share,
    )
    with open_root(dir, ref, opts) as root:  # under split custody the shares open the root
        done = sign_csrs(
            dir,
            items,
            out=out,
            days=days,
            org=org,
            cn=cn,
            sans=san,
            passphrase=root.passphrase,
            root_key=root.key,
            officer=root.officer,
            skip_existing=skip_existing,
        )
    _print_signed(done, dir, out, as_json)


def _print_signed(done: SignedBatch, dir: Path, out: Path, as_json: bool) -> None:
    """What ``ca sign`` did: one JSON document, or a line per cluster and where the files went."""
    recs, skipped = done.records, done.skipped
    if as_json:
        print_json(
            {
                "out": str(out),
                "signed": [
                    {
                        "cluster": r.cluster,
                        "serial": r.serial,
                        "fingerprint": r.fingerprint,
                        "subject": r.subject,
                        "not_after": r.not_after,
                        "key_held": r.key_held,
                        "key_id": r.key_id,
                        "csr_sha256": r.csr_sha256,
                        "request_id": r.request_id,
                    }
                    for r in recs
                ],
                "skipped": [r.cluster for r in skipped],
            }
        )
        return
    for rec in skipped:
        typer.echo(f"Skipped {rec.cluster}: already signed for this key (sha256 {rec.fingerprint}); copied to {out}")
    for rec in recs:
        typer.echo(clean(f"Signed {rec.cluster}: {rec.subject}, until {rec.not_after}, sha256 {rec.fingerprint}"))
        typer.echo(f"  key          {rec.key_type}, held elsewhere (SPKI sha256 {rec.key_id})")
        typer.echo(f"  request      sha256 {rec.csr_sha256}" + (f", id {rec.request_id}" if rec.request_id else ""))
    if not recs:
        typer.echo(f"Nothing new to sign; the files are in {out}")
        return
    where = dir / recs[0].cluster if len(recs) == 1 else f"{dir}/CLUSTER/"
    typer.echo(f"Written to {out} and {where} (no ca-key.pem: the key stays where it was made)")
    info(f"next: carry {out} back, or 'airgap bundle create CLUSTER ...' for a keyless bundle")


def _signing_requests(requests: list[Path], clusters: list[str], trust: list[Path] | None) -> list[SignItem]:
    """Every request read and checked before the root is opened: request files with --trust, else CSRs."""
    from airgap.core.csr import MAX_CSR_BYTES
    from airgap.core.files import read_capped
    from airgap.core.request_file import looks_like_request
    from airgap.errors import InvalidInput
    from airgap.offline.sign import read_signing_request

    if trust:
        if clusters and len(clusters) != len(requests):
            raise InvalidInput(f"{len(requests)} request file(s), {len(clusters)} --cluster: one per file or none")
        return [read_signing_request(p, trust, clusters[i] if clusters else None) for i, p in enumerate(requests)]
    for path in requests:  # a request file without --trust: say so before counting --cluster
        if looks_like_request(read_capped(path, MAX_CSR_BYTES, "certificate request")):
            raise InvalidInput(f"{path}: is a signed request file; give the operator's key with --trust PUB")
    if len(clusters) != len(requests):
        raise InvalidInput(
            f"--cluster NAME is required for each CSR ({len(requests)} CSR(s), {len(clusters)} --cluster)"
        )
    return [read_signing_request(p, None, c) for p, c in zip(requests, clusters, strict=True)]


@app.command("request")
def request(
    cluster: str = typer.Argument(..., help="The cluster whose CA key is made here."),
    dir: Path = typer.Option(..., "--dir", help="The jump host's folder: the key goes to DIR/CLUSTER/ca-key.pem."),
    sign_key: Path = typer.Option(..., "--sign-key", help="The operator's signing key (keys new --kind signing)."),
    out: Path = typer.Option(..., "--out", help="The signed request file to write (never replaced)."),
    key_type: str = typer.Option("rsa-4096", "--key-type", help="rsa-4096 | rsa-3072 | ecdsa-p256 | ecdsa-p384"),
    expires: int = typer.Option(30, "--expires", help="Days until the request expires (at most 365)."),
    passphrase_file: Path | None = typer.Option(
        None,
        "--passphrase-file",
        help="Encrypts the new ca-key.pem (and opens --sign-key unless --sign-passphrase-file). "
        "Also: $AIRGAP_PASSPHRASE, or a prompt on a terminal.",
    ),
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Write ca-key.pem unencrypted (not advised)."),
    sign_passphrase_file: Path | None = typer.Option(
        None, "--sign-passphrase-file", help="Passphrase of --sign-key, when it differs."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Jump host: make CLUSTER's CA key here (0600, encrypted) and a signed request for the root host.

    Carry only the request file across; on the root host 'airgap ca sign REQUEST --trust operator.pub ...'.

    Example: airgap ca request cluster1 --dir jump --sign-key operator.key --out c1.request --passphrase-file pw
    """
    from airgap.connected.key_request import make_request
    from airgap.core.keys import check_key_type, key_file_is_encrypted, load_private_key
    from airgap.core.passphrase import resolve_passphrase

    key_kind = check_key_type(key_type)
    pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True)
    sign_pw = None
    if key_file_is_encrypted(sign_key, "signing key"):
        if sign_passphrase_file is not None:
            sign_pw = resolve_passphrase(sign_passphrase_file, purpose="signing key passphrase")
        else:
            sign_pw = pw or resolve_passphrase(None, purpose="signing key passphrase")
    made = make_request(
        cluster,
        jump_dir=dir,
        sign_key=load_private_key(sign_key, sign_pw),
        out=out,
        key_type=key_kind,
        passphrase=pw,
        days=expires,
    )
    if as_json:
        print_json(
            {
                "cluster": made.cluster,
                "request_id": made.request_id,
                "key": str(made.key_path),
                "key_id": made.key_id,
                "request": str(made.out),
                "expires": made.expires,
            }
        )
        return
    typer.echo(f"Request {made.request_id} for {made.cluster} written to {made.out}, expires {made.expires}")
    typer.echo(f"  key          {made.key_path} ({key_kind}, {'encrypted' if pw else 'UNENCRYPTED'}; stays here)")
    typer.echo(f"  key id       {made.key_id}")
    info(f"next: carry {made.out} to the root host: 'airgap ca sign {made.out.name} --trust OPERATOR.pub ...'")
