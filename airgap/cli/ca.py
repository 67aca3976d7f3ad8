"""`airgap ca init | issue | list | revoke | crl | rotate | rotate-root`: the offline CA.

Acts on a PKI folder that keeps a ceremony log are recorded, signed with the officer's log key
(``--log-key`` or ``$AIRGAP_LOG_KEY``); the root key may live in a PKCS#11 token
(``--pkcs11-module/--token-label/--key-label``, PIN from ``--pin-file``, ``$AIRGAP_PKCS11_PIN`` or a prompt).
A root under split custody (``ca init --custody M-of-N``) opens with ``--share IDENTITY`` (M of them) instead
of the PKI passphrase; every logged act then names the share numbers that took part.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from airgap.cli._app import KEY_TYPE_HELP, RichProgress, info, new_app, print_json, warn
from airgap.cli._custody import ShareOpt, SharePassOpt, TypeShareOpt, custodian_recipients
from airgap.cli._metrics import PrometheusFileOpt, PrometheusOpt, check_outputs, emit
from airgap.core.display import clean
from airgap.core.limits import MAX_CRL_DAYS, MAX_VALIDITY_DAYS, MAX_WINDOW_DAYS, MAX_WORKERS
from airgap.offline.root import RootOptions, open_custody, open_root, pki_passphrase, with_custody

app = new_app(help="Offline root CA and per-cluster intermediate CAs (Istio's cacerts layout).")

DirOpt = typer.Option(..., "--dir", help="The PKI folder (made by 'ca init').")
PassFileOpt = typer.Option(
    None,
    "--passphrase-file",
    help="File whose first line is the PKI passphrase (read like openssl -passin file:). "
    "Also: $AIRGAP_PASSPHRASE, or a prompt on a terminal.",
)
NoPassOpt = typer.Option(False, "--no-passphrase", help="Write keys unencrypted (not recommended).")
LogKeyOpt = typer.Option(
    None,
    "--log-key",
    envvar="AIRGAP_LOG_KEY",
    help="The officer's signing key (keys new --kind signing): signs this act into PKI/ceremony.log. "
    "Given to 'ca init', it starts the log; once a PKI keeps a log, every act needs it. Also: $AIRGAP_LOG_KEY.",
)
LogPassOpt = typer.Option(
    None,
    "--log-key-passphrase-file",
    help="Passphrase file of the log key (default: the PKI passphrase).",
)
ModuleOpt = typer.Option(
    None, "--pkcs11-module", help="PKCS#11 module holding the root key, e.g. /usr/lib/softhsm/libsofthsm2.so."
)
TokenOpt = typer.Option(None, "--token-label", help="Label of the PKCS#11 token.")
KeyLabelOpt = typer.Option(None, "--key-label", help="Label of the root key in the token.")
PinFileOpt = typer.Option(
    None, "--pin-file", help="File whose first line is the token user PIN. Also: $AIRGAP_PKCS11_PIN, or a prompt."
)

if TYPE_CHECKING:
    from airgap.core.keys import KeyType
    from airgap.offline.ceremony import Officer
    from airgap.offline.custody import NewSet
    from airgap.offline.inventory import RootRecord
    from airgap.offline.listing import PkiReport
    from airgap.offline.pkcs11 import TokenRef


def _officer(log_key: Path | None, log_pass_file: Path | None, pki_pw: bytes | None) -> Officer | None:
    from airgap.offline.keysource import open_officer

    return open_officer(log_key, log_pass_file, pki_pw)


def _invalid(msg: str) -> Exception:
    from airgap.errors import InvalidInput

    return InvalidInput(msg)


def _token_ref(
    pki: Path, module: Path | None, token_label: str | None, key_label: str | None, *, next_root: bool = False
) -> TokenRef | None:
    from airgap.offline.keysource import token_ref

    return token_ref(pki, module, token_label, key_label, next_root=next_root)


@app.command("init")
def init(
    dir: Path = typer.Option(..., "--dir", help="The PKI folder (created when missing; must not hold a root)."),
    key_type: str = typer.Option("rsa-4096", "--key-type", help=KEY_TYPE_HELP),
    days: int = typer.Option(3650, "--days", min=1, max=MAX_VALIDITY_DAYS, help="Validity of the root in days."),
    org: str = typer.Option("Istio", "--org"),
    cn: str = typer.Option("Root CA", "--cn"),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = NoPassOpt,
    log_key: Path | None = LogKeyOpt,
    log_key_passphrase_file: Path | None = LogPassOpt,
    pkcs11_module: Path | None = ModuleOpt,
    token_label: str | None = TokenOpt,
    key_label: str | None = KeyLabelOpt,
    pin_file: Path | None = PinFileOpt,
    adopt_cert: Path | None = typer.Option(
        None,
        "--adopt-cert",
        help="Adopt this existing root certificate (Istio's Makefile, openssl) instead of making one.",
    ),
    adopt_key: Path | None = typer.Option(None, "--adopt-key", help="The adopted root's key (re-encrypted here)."),
    adopt_key_passphrase_file: Path | None = typer.Option(
        None, "--adopt-key-passphrase-file", help="Passphrase of --adopt-key, if it is encrypted."
    ),
    custody_spec: str | None = typer.Option(
        None,
        "--custody",
        help="Split custody, e.g. 2-of-3: the root key opens only with M of the N custodians' shares "
        "(no PKI passphrase is asked for it; --passphrase-file then only opens the log key). With a PKCS#11 "
        "root the token's user PIN (from --pin-file) is changed to the custody secret.",
    ),
    custodian: list[str] | None = typer.Option(
        None, "--custodian", help="A custodian's age recipient (age1… or a .pub file); one per share, in order."
    ),
) -> None:
    """Create the root: PKI/root-key.pem (0600, encrypted) and PKI/root-cert.pem.

    With --pkcs11-module/--token-label/--key-label the root key is generated in the token and never
    leaves it (PKI/root-key.pkcs11.json records where it is). With --log-key the ceremony log starts.
    With --adopt-cert/--adopt-key an existing root is checked (key matches, self-signed CA, valid)
    and recorded, its key re-encrypted with the PKI passphrase: no root rotation needed.

    With --custody M-of-N and one --custodian per share, the root key is encrypted under a random
    secret split into N SLIP-39 shares, PKI/custody/share-K.age, each age-encrypted to one custodian.

    Example: airgap ca init --dir pki --passphrase-file pass.txt --log-key officer.key

    Example: airgap ca init --dir pki --adopt-cert root-cert.pem --adopt-key root-key.pem --passphrase-file pass.txt
    Example: airgap ca init --dir pki --custody 2-of-3 --custodian alice.pub --custodian bob.pub
    --custodian carol.pub --log-key officer.key --log-key-passphrase-file officer-pass.txt
    """
    from airgap.core.keys import check_key_type
    from airgap.core.passphrase import read_passphrase_file, resolve_passphrase
    from airgap.core.x509 import check_subject
    from airgap.offline.issue import init_root, refuse_existing_root
    from airgap.offline.keysource import root_key_args
    from airgap.offline.layout import PkiLayout

    key_kind = check_key_type(key_type)
    check_subject(org=org, cn=cn)
    if (adopt_cert is None) != (adopt_key is None):
        from airgap.errors import InvalidInput

        raise InvalidInput("--adopt-cert and --adopt-key go together")
    if adopt_cert is not None and (custody_spec is not None or custodian):
        raise _invalid("--adopt-cert and --custody cannot be used together (adopt first, then rekey is not supported)")
    if adopt_cert is not None and adopt_key is not None:
        _adopt(dir, adopt_cert, adopt_key, adopt_key_passphrase_file, passphrase_file, no_passphrase, log_key,
               log_key_passphrase_file)  # fmt: skip
        return
    ref = _token_ref(dir, pkcs11_module, token_label, key_label)
    refuse_existing_root(PkiLayout(dir))  # before a passphrase, PIN or token key is asked for
    held = None
    if custody_spec is not None or custodian:
        held, (m, n) = _new_custody(custody_spec, custodian or [], no_passphrase)
        pw = read_passphrase_file(passphrase_file) if passphrase_file is not None else None
        if ref is None:
            where = f"{key_kind}, encrypted, split custody: {m} of {n} shares"
        else:
            where = f"{key_kind}, in {ref.describe()} (not extractable); its user PIN under split custody: {m} of {n}"
    elif ref is None:
        pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True)
        where = f"{key_kind}, {'encrypted' if pw else 'UNENCRYPTED'}"
    else:
        pw = read_passphrase_file(passphrase_file) if passphrase_file is not None else None
        where = f"{key_kind}, in {ref.describe()} (not extractable)"
    officer = _officer(log_key, log_key_passphrase_file, pw)
    if held is not None and ref is not None:
        rec = _init_token_under_custody(dir, ref, pin_file, key_kind, days, org, cn, officer, held)
    elif held is not None:
        rec = init_root(
            dir, key_type=key_kind, days=days, org=org, cn=cn, passphrase=None, officer=officer, custody_set=held
        )
    else:
        with root_key_args(ref, pin_file, key_kind, pw) as key_args:
            rec = init_root(dir, key_type=key_kind, days=days, org=org, cn=cn, officer=officer, **key_args)
    _print_root(dir, rec, where, held, logged=log_key is not None)


def _new_custody(custody_spec: str | None, custodian: list[str], no_passphrase: bool) -> tuple[NewSet, tuple[int, int]]:
    """``--custody M-of-N`` with its N ``--custodian``: a fresh secret split into N shares."""
    from airgap.offline.custody import parse_spec, split

    if custody_spec is None:
        raise _invalid("--custodian needs --custody M-of-N")
    if no_passphrase:
        raise _invalid("--custody and --no-passphrase cannot be used together: the shares encrypt the root key")
    m, n = parse_spec(custody_spec)
    recipients = custodian_recipients(custodian)
    if len(recipients) != n:
        raise _invalid(f"--custody {custody_spec} needs {n} --custodian, got {len(recipients)}")
    return split(m, recipients), (m, n)


def _print_root(dir: Path, rec: RootRecord, where: str, held: NewSet | None, *, logged: bool) -> None:
    typer.echo(f"Root CA created in {dir}")
    typer.echo(clean(f"  subject      {rec.subject}"))
    typer.echo(f"  key          {where}")
    typer.echo(f"  valid until  {rec.not_after}")
    typer.echo(f"  fingerprint  {rec.fingerprint}")
    if held is not None:
        for sh in held.record.shares:
            typer.echo(f"  share {sh.number:<6} {dir / sh.file}  for {sh.recipient}")
    if logged:
        typer.echo(f"  ceremony log {dir / 'ceremony.log'}")


def _adopt(
    dir: Path,
    cert: Path,
    key: Path,
    key_pass_file: Path | None,
    passphrase_file: Path | None,
    no_passphrase: bool,
    log_key: Path | None,
    log_key_passphrase_file: Path | None,
) -> None:
    from airgap.core.keys import key_file_is_encrypted
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.adopt import adopt_root
    from airgap.offline.issue import refuse_existing_root
    from airgap.offline.layout import PkiLayout

    refuse_existing_root(PkiLayout(dir))
    key_pw = None
    if key_file_is_encrypted(key, "adopted root key"):
        key_pw = resolve_passphrase(key_pass_file, purpose="adopted key passphrase")
    pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True)
    officer = _officer(log_key, log_key_passphrase_file, pw)
    rec = adopt_root(dir, cert_path=cert, key_path=key, key_passphrase=key_pw, passphrase=pw, officer=officer)
    typer.echo(f"Root CA adopted into {dir}")
    typer.echo(clean(f"  subject      {rec.subject}"))
    typer.echo(f"  key          {rec.key_type}, {'encrypted' if pw else 'UNENCRYPTED'} (re-encrypted copy)")
    typer.echo(f"  valid until  {rec.not_after}")
    typer.echo(f"  fingerprint  {rec.fingerprint}")
    info(f"the original {key} was not touched: destroy it once the PKI folder is backed up")


def _init_token_under_custody(
    dir: Path,
    ref: TokenRef,
    pin_file: Path | None,
    key_kind: KeyType,
    days: int,
    org: str,
    cn: str,
    officer: Officer | None,
    held: NewSet,
) -> RootRecord:
    """A root key made in the token, whose user PIN then becomes the custody secret (C_SetPIN).

    The PIN is changed before anything is written; if the root cannot be written it is changed
    back and the key destroyed, so the token is left as it was.
    """
    from airgap.offline.issue import init_root
    from airgap.offline.keysource import new_root_key
    from airgap.offline.pkcs11 import TokenECKey, TokenRSAKey, resolve_pin

    old_pin = resolve_pin(pin_file)
    new_pin = held.passphrase.decode()
    with new_root_key(ref, None, key_kind, pin=old_pin) as new:
        token_key = new.key
        assert isinstance(token_key, TokenECKey | TokenRSAKey)
        change = token_key.change_pin
        change(old_pin, new_pin)
        try:
            return init_root(
                dir,
                key_type=key_kind,
                days=days,
                org=org,
                cn=cn,
                passphrase=None,
                officer=officer,
                root_key=new.key,
                key_record=new.record,
                key_params=new.params,
                custody_set=held,
            )
        except BaseException:
            change(new_pin, old_pin)
            raise


@app.command("issue")
def issue(
    clusters: list[str] = typer.Argument(..., help="One or more cluster names (Kubernetes label values)."),
    dir: Path = DirOpt,
    key_type: str = typer.Option("rsa-4096", "--key-type", help=KEY_TYPE_HELP),
    days: int = typer.Option(
        730,
        "--days",
        min=1,
        max=MAX_VALIDITY_DAYS,
        help="Validity in days. Refused (exit 4) if it would outlive the root: never clamped.",
    ),
    org: str = typer.Option("Istio", "--org"),
    cn: str = typer.Option("Intermediate CA", "--cn"),
    san: list[str] = typer.Option(["DNS:istiod.istio-system.svc"], "--san", help="Subject alternative names."),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Root key is unencrypted and new keys are written unencrypted."
    ),
    workers: int = typer.Option(
        0, "--workers", min=0, max=MAX_WORKERS, help="Key-generation processes (0: every core)."
    ),
    skip_existing: bool = typer.Option(
        False,
        "--skip-existing",
        help="Leave clusters that already have a folder and issue the rest (finish an interrupted fleet); "
        "lists what it skipped.",
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
    """Issue an intermediate CA per cluster: PKI/CLUSTER/{ca-cert,ca-key,cert-chain,root-cert}.pem.

    During a root rotation the new intermediates are signed by the next root.

    Example: airgap ca issue cluster1 cluster2 --dir pki --passphrase-file pass.txt

    Example: airgap ca issue c1 c2 c3 --dir pki --passphrase-file pass.txt --skip-existing   (resume)
    """
    from airgap.core.keys import check_key_type
    from airgap.core.x509 import check_subject
    from airgap.offline.issue import issue_intermediates
    from airgap.offline.keysource import signing_token_ref

    key_kind = check_key_type(key_type)
    check_subject(org=org, cn=cn)
    # During a root rotation the next root signs (and its token key, if it is in one).
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
    with open_root(dir, ref, opts, new_keys=True) as root:
        done = issue_intermediates(
            dir,
            clusters,
            key_type=key_kind,
            days=days,
            org=org,
            cn=cn,
            sans=san,
            passphrase=root.passphrase,
            key_passphrase=root.pki_passphrase,
            workers=workers or None,
            officer=root.officer,
            root_key=root.key,
            progress=RichProgress(counts=True),
            skip_existing=skip_existing,
        )
    for name in done.skipped:
        typer.echo(f"Skipped {name}: {dir / name} already exists")
    for r in done.records:
        typer.echo(clean(f"Issued {r.cluster}: {r.subject}, until {r.not_after}, sha256 {r.fingerprint}"))
    under = " (signed by the NEXT root: root rotation in progress)" if done.under_next_root else ""
    skipped = f", {len(done.skipped)} skipped" if done.skipped else ""
    info(f"{len(done.records)} intermediate(s) written under {dir}{skipped}{under}")


@app.command("list")
def list_(
    dir: Path = typer.Option(..., "--dir", help="The PKI folder to list (read only)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="Open each ca-key.pem to check it matches (otherwise: skipped)."
    ),
    expiring_within: int | None = typer.Option(
        None,
        "--expiring-within",
        min=0,
        max=MAX_WINDOW_DAYS,
        help="Exit 1 (for cron) when a root or current intermediate expires within DAYS days (or has expired).",
    ),
    prometheus: bool = PrometheusOpt,
    prometheus_file: Path | None = PrometheusFileOpt,
) -> None:
    """List the root and every intermediate with its checks and status (valid/expiring/expired/revoked).

    Example: airgap ca list --dir pki --json

    Example: airgap ca list --dir pki --expiring-within 90   (exit 1 when something expires soon)

    Example: airgap ca list --dir pki --prometheus-file /var/lib/prometheus/node-exporter/airgap-pki.prom
    """
    from airgap.core.passphrase import read_passphrase_file
    from airgap.offline.layout import PkiLayout
    from airgap.offline.listing import pki_metrics, pki_report

    check_outputs(as_json, prometheus)
    pw = read_passphrase_file(passphrase_file) if passphrase_file else None
    report = pki_report(PkiLayout(dir), pw, expiring_days=expiring_within)
    if prometheus or prometheus_file is not None:
        emit(pki_metrics(PkiLayout(dir)), stdout=prometheus, path=prometheus_file)
    if as_json:
        print_json(report.to_json())
    elif not prometheus:
        _print_pki_report(report)
    _fail_if_broken(report)


def _print_pki_report(report: PkiReport) -> None:
    """``ca list``'s text form: the roots, a table of intermediates, then each problem."""
    from rich.table import Table

    from airgap.core.display import console as make_console
    from airgap.core.display import short, text

    console = make_console()  # full width when piped: cron mail and '| cat' are never cut
    root, nxt = report.root, report.next_root
    console.print(f"Root: {clean(root['subject'])}  until {root['not_after']}  status {root['status']}", markup=False)
    console.print(f"      sha256 {root['fingerprint']}", markup=False)
    if nxt is not None:
        console.print(
            f"Next root (rotation in progress): {clean(nxt['subject'])}  until {nxt['not_after']}", markup=False
        )
        console.print(f"      sha256 {nxt['fingerprint']}", markup=False)
    table = Table("cluster", "status", "not after", "key", "chain", "CA", "key check", "fingerprint")
    for r in report.intermediates:
        cells = (
            r.cluster,
            r.status,
            r.not_after,
            r.key_type,
            "ok" if r.chains_to_root else "BROKEN",
            "yes" if r.is_ca else "NO",
            r.key_check,
            short(r.fingerprint, 16),
        )
        table.add_row(*(text(c) for c in cells))
    console.print(table)
    for r in report.intermediates:
        for p in r.problems:
            console.print(f"{r.cluster}: {clean(p)}", markup=False)
    for p in (*report.root_problems, *report.recorded_problems):
        console.print(clean(p), markup=False)


def _fail_if_broken(report: PkiReport) -> None:
    """``ca list`` exits 1 (after the report) for every failed check: a broken, expired or revoked
    intermediate, an expired root, a recorded certificate missing or different on disk, or (with
    ``--expiring-within``) something expiring soon. Expiring within 30 days alone is a warning (exit 0)."""
    from airgap.errors import VerificationError

    for w in report.warnings:
        warn(w)
    failed = [*report.root_problems, *report.recorded_problems]
    broken = report.broken
    if broken:
        parts = [f"{r.cluster} ({'; '.join(r.problems)})" for r in broken]
        failed.append(f"{len(broken)} intermediate(s) failed their checks: {', '.join(parts)}")
    if failed:
        raise VerificationError("; ".join(failed))
    days, soon = report.expiring_days, report.expiring
    if days is None or not soon:
        return
    parts = [f"{e.what} ({e.not_after})" for e in soon]
    raise VerificationError(f"{len(parts)} certificate(s) expire within {days} days: {', '.join(parts)}")


@app.command("revoke")
def revoke(
    cluster: str = typer.Argument(..., help="The cluster whose intermediate is revoked."),
    dir: Path = DirOpt,
    reason: str = typer.Option(
        ...,
        "--reason",
        help="RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
        "cessationOfOperation, privilegeWithdrawn (case and '-' ignored).",
    ),
    serial: str | None = typer.Option(
        None, "--serial", help="Hex serial of an archived intermediate (default: current)."
    ),
    next_update_days: int = typer.Option(
        30, "--next-update-days", min=1, max=MAX_CRL_DAYS, help="nextUpdate of the new CRL, in days."
    ),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="The root key is unencrypted."),
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
    """Revoke a cluster's intermediate and write a root-signed CRL to PKI/ca-crl.pem and PKI/*/ca-crl.pem.

    The revoked intermediate stays in place until 'airgap ca rotate CLUSTER' replaces it.

    Example: airgap ca revoke cluster1 --reason keyCompromise --dir pki --passphrase-file pass.txt
    """
    from airgap.offline.crl import revoke as do_revoke

    ref = _token_ref(dir, pkcs11_module, token_label, key_label)
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
    with open_root(dir, ref, opts) as root:
        rev, rec = do_revoke(
            dir,
            cluster,
            reason=reason,
            serial=serial,
            passphrase=root.passphrase,
            root_key=root.key,
            officer=root.officer,
            next_update_days=next_update_days,
        )
    typer.echo(f"Revoked {cluster}: serial {rev.serial} ({rev.reason}), sha256 {rev.fingerprint}")
    typer.echo(f"CRL #{rec.crl_number} written to {dir / 'ca-crl.pem'}, next update {rec.next_update}")
    info(f"next: 'airgap ca rotate {cluster} --dir {dir}' to issue its replacement, then a new bundle")


@app.command("crl")
def crl(
    dir: Path = DirOpt,
    next_update_days: int = typer.Option(
        30, "--next-update-days", min=1, max=MAX_CRL_DAYS, help="nextUpdate of the new CRL, in days."
    ),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="The root key is unencrypted."),
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
    """Sign a fresh CRL (next number, thisUpdate now): run it before the last CRL's nextUpdate.

    Example: airgap ca crl --dir pki --next-update-days 30 --passphrase-file pass.txt
    """
    from airgap.offline.crl import refresh_crl

    ref = _token_ref(dir, pkcs11_module, token_label, key_label)
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
    with open_root(dir, ref, opts) as root:
        rec = refresh_crl(
            dir,
            passphrase=root.passphrase,
            root_key=root.key,
            officer=root.officer,
            next_update_days=next_update_days,
        )
    typer.echo(
        f"CRL #{rec.crl_number} written to {dir / 'ca-crl.pem'}: {len(rec.revoked_serials)} revoked, "
        f"next update {rec.next_update}, sha256 {rec.sha256}"
    )


@app.command("rotate")
def rotate(
    cluster: str = typer.Argument(..., help="The cluster whose next intermediate is issued."),
    dir: Path = DirOpt,
    days: int = typer.Option(
        730,
        "--days",
        min=1,
        max=MAX_VALIDITY_DAYS,
        help="Validity in days (refused if it would outlive the signing root).",
    ),
    key_type: str | None = typer.Option(None, "--key-type", help=KEY_TYPE_HELP + " Default: the old intermediate's."),
    san: list[str] | None = typer.Option(None, "--san", help="Default: the old intermediate's SANs."),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Root key is unencrypted and the new key is written unencrypted."
    ),
    log_key: Path | None = LogKeyOpt,
    log_key_passphrase_file: Path | None = LogPassOpt,
    pkcs11_module: Path | None = ModuleOpt,
    token_label: str | None = TokenOpt,
    key_label: str | None = KeyLabelOpt,
    pin_file: Path | None = PinFileOpt,
    csr: Path | None = typer.Option(
        None,
        "--csr",
        help="Certify this key instead of making one: a PKCS#10 CSR, or with --trust a signed request file "
        "(required for a cluster whose key is held elsewhere; see 'ca sign').",
    ),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Requester key for a --csr request file."),
    share: list[Path] | None = ShareOpt,
    share_passphrase_file: list[Path] | None = SharePassOpt,
    type_share: int = TypeShareOpt,
) -> None:
    """Issue the cluster's next intermediate while the old one is still valid, and make it current.

    The old folder moves to PKI/archive/CLUSTER/<serial>/. During a root rotation the new
    intermediate is signed by the next root. Then: bundle create, and 'bundle import --rotate'.

    Example: airgap ca rotate cluster1 --dir pki --passphrase-file pass.txt

    Example: airgap ca rotate cluster1 --csr c1-next.request --trust operator.pub --dir pki --passphrase-file pass.txt
    """
    from airgap.core.keys import check_key_type
    from airgap.offline.ca import CAStore
    from airgap.offline.rotate import rotate_intermediate

    key_kind = check_key_type(key_type) if key_type is not None else None
    item = None
    if csr is not None:
        from airgap.offline.sign import read_signing_request

        item = read_signing_request(csr, trust, cluster)
    store = CAStore(dir)
    ref = _token_ref(dir, pkcs11_module, token_label, key_label, next_root=store.next_root_dir.exists())
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
    with open_root(dir, ref, opts, new_keys=True) as root:
        r = rotate_intermediate(
            dir,
            cluster,
            days=days,
            passphrase=root.passphrase,
            key_passphrase=root.pki_passphrase,
            key_type=key_kind,
            sans=san or None,
            root_key=root.key,
            officer=root.officer,
            csr=item.csr if item is not None else None,
            request_id=item.request_id if item is not None else None,
        )
    typer.echo(
        f"Rotated {cluster}: {r.old_serial} -> {r.new.serial}, until {r.new.not_after}, sha256 {r.new.fingerprint}"
    )
    typer.echo(f"  previous intermediate archived in {r.archived_to}")
    if r.under_next_root:
        typer.echo("  signed by the NEXT root (root rotation in progress)")
    info(f"next: 'airgap bundle create {cluster} ...' and on the jump host 'airgap bundle import ... --rotate'")


@app.command("rotate-root")
def rotate_root(
    dir: Path = DirOpt,
    finish: bool = typer.Option(False, "--finish", help="Step 3: retire the old root (all clusters rotated)."),
    key_type: str = typer.Option("rsa-4096", "--key-type", help="Of the next root. " + KEY_TYPE_HELP),
    days: int = typer.Option(3650, "--days", min=1, max=MAX_VALIDITY_DAYS, help="Validity of the next root in days."),
    org: str = typer.Option("Istio", "--org"),
    cn: str | None = typer.Option(
        None, "--cn", help="CN of the next root (default: the current root's, numbered: 'Root CA' -> 'Root CA 2')."
    ),
    passphrase_file: Path | None = PassFileOpt,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Write the next root key unencrypted."),
    next_update_days: int = typer.Option(
        30, "--next-update-days", min=1, max=MAX_CRL_DAYS, help="nextUpdate of the CRL --finish re-signs."
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
    """Root rotation: step 1 makes the next root and gives every cluster a dual-root root-cert.pem;
    step 2 is 'ca rotate CLUSTER' for each cluster; step 3 is 'ca rotate-root --finish'.

    Example: airgap ca rotate-root --dir pki --passphrase-file pass.txt      (step 1)
    Example: airgap ca rotate-root --dir pki --finish --passphrase-file pass.txt   (step 3)
    """
    from airgap.core.keys import check_key_type
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.ca import CAStore
    from airgap.offline.rotate import begin_root_rotation, finish_root_rotation

    store = CAStore(dir)
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
    if finish:
        ref = _token_ref(dir, pkcs11_module, token_label, key_label, next_root=True)
        with open_root(dir, ref, opts) as root:
            rec = finish_root_rotation(
                dir,
                passphrase=root.passphrase,
                root_key=root.key,
                officer=root.officer,
                next_update_days=next_update_days,
            )
        typer.echo(clean(f"Root rotation finished: the root is now {rec.subject}, sha256 {rec.fingerprint}"))
        typer.echo("  every cluster's root-cert.pem now carries the new root only; make and import new bundles")
        return
    from airgap.core.x509 import check_subject

    key_kind = check_key_type(key_type)
    check_subject(org=org, cn=cn)
    new_ref = _token_ref(dir, pkcs11_module, token_label, key_label, next_root=True)
    opened = open_custody(dir, opts)
    if opened is not None and new_ref is not None:
        # GAP (issue 16, item 4): custody of a PKCS#11 root's user PIN is not built yet.
        raise _invalid("the root is under split custody: a PKCS#11 next root is not supported yet")
    if opened is not None:
        pw = pki_passphrase(opts, required=False, opened=opened)
    else:
        pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True, required=new_ref is None)
    officer = with_custody(_officer(log_key, log_key_passphrase_file, pw), opened)
    from airgap.offline.keysource import root_key_args

    if opened is not None:  # the next root key is encrypted under the same custody secret
        rec = begin_root_rotation(
            dir, key_type=key_kind, days=days, org=org, cn=cn, passphrase=opened.passphrase, officer=officer
        )
    else:
        with root_key_args(new_ref, pin_file, key_kind, pw) as key_args:
            rec = begin_root_rotation(dir, key_type=key_kind, days=days, org=org, cn=cn, officer=officer, **key_args)
    typer.echo(clean(f"Next root created in {store.next_root_dir}: {rec.subject}, sha256 {rec.fingerprint}"))
    typer.echo("  every cluster's root-cert.pem now carries both roots: bundle and import them everywhere,")
    typer.echo("  then 'airgap ca rotate CLUSTER' for each cluster, then 'airgap ca rotate-root --finish'")
