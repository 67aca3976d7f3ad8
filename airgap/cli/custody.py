"""`airgap ca custody status | rekey`: split custody of the root key (ca init --custody M-of-N)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from airgap.cli._app import info, new_app, print_json
from airgap.cli._custody import ShareOpt, SharePassOpt, TypeShareOpt, custodian_recipients
from airgap.cli.ca import _invalid, _officer
from airgap.offline.root import RootOptions, open_custody, with_custody

app = new_app(help="Split custody of the root key: M of N custodians' SLIP-39 shares (ca init --custody).")


@app.command("status")
def status(
    dir: Path = typer.Option(..., "--dir", help="The PKI folder (read only)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Show the custody of the root: M of N, each share's file, custodian and whether the file is intact.

    Example: airgap ca custody status --dir pki --json
    """
    import hashlib

    from airgap.offline.custody import NEXT_DIR, folder_in_force, read_record, share_name

    record = read_record(dir)
    folder = folder_in_force(dir)
    rows = []
    for s in record.shares:
        p = folder / share_name(s.number)
        if not p.exists():
            state = "missing"
        else:
            state = "intact" if hashlib.sha256(p.read_bytes()).hexdigest() == s.sha256 else "CHANGED"
        rows.append({"number": s.number, "file": s.file, "recipient": s.recipient, "sha256": s.sha256, "state": state})
    pending = (dir / NEXT_DIR).exists()
    token = (dir / "root-key.pkcs11.json").exists() and not (dir / "root-key.pem").exists()
    protects = "pkcs11-user-pin" if token else "root-key.pem"
    if as_json:
        print_json(
            {
                "threshold": record.threshold,
                "count": record.count,
                "identifier": record.identifier,
                "created_at": record.created_at,
                "protects": protects,
                "rekey_interrupted": pending,
                "shares": rows,
            }
        )
    else:
        what = "The token user PIN of the root key" if token else "The root key"
        typer.echo(f"{what} is under split custody: {record.threshold} of {record.count} shares")
        typer.echo(f"  since {record.created_at}, SLIP-39 set {record.identifier}")
        for r in rows:
            typer.echo(f"  share {r['number']}  {r['file']}  {r['recipient']}  {r['state']}")
        if pending:
            typer.echo("  a re-key was interrupted: the next act finishes or undoes it")
    bad = [r for r in rows if r["state"] != "intact"]
    if bad:
        from airgap.errors import DigestMismatch

        raise DigestMismatch(
            ", ".join(f"{dir / str(r['file'])}: {r['state']}" for r in bad) + " (compare with the custody record)"
        )


@app.command("rekey")
def rekey(
    dir: Path = typer.Option(..., "--dir", help="The PKI folder."),
    custody_spec: str = typer.Option(..., "--custody", help="The new M-of-N, e.g. 3-of-5."),
    custodian: list[str] = typer.Option(
        ..., "--custodian", help="A new custodian's age recipient (age1… or a .pub file); one per share, in order."
    ),
    share: list[Path] | None = ShareOpt,
    share_passphrase_file: list[Path] | None = SharePassOpt,
    type_share: int = TypeShareOpt,
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="Default passphrase of the log key (no PKI passphrase is needed)."
    ),
    log_key: Path | None = typer.Option(
        None, "--log-key", envvar="AIRGAP_LOG_KEY", help="The officer's log key (needed once the PKI keeps a log)."
    ),
    log_key_passphrase_file: Path | None = typer.Option(
        None, "--log-key-passphrase-file", help="Passphrase file of the log key."
    ),
) -> None:
    """Re-key the custody: M of the current shares make a new M'-of-N' set; the old shares stop working.

    The root key is re-encrypted under a new secret; the old share files are removed, and any copy
    of their words no longer opens it. A crash leaves the old set or the new set in force.

    Example: airgap ca custody rekey --dir pki --share alice.key --share bob.key --custody 3-of-5
    --custodian alice.pub --custodian bob.pub --custodian carol.pub --custodian dan.pub --custodian erin.pub
    """
    from airgap.core.passphrase import read_passphrase_file
    from airgap.offline.custody import parse_spec
    from airgap.offline.rekey import rekey_custody

    m, n = parse_spec(custody_spec)
    recipients = custodian_recipients(custodian)
    if len(recipients) != n:
        raise _invalid(f"--custody {custody_spec} needs {n} --custodian, got {len(recipients)}")
    opened = open_custody(
        dir, RootOptions(shares=share or (), share_passphrase_files=share_passphrase_file or (), type_share=type_share)
    )
    if opened is None:
        raise _invalid(f"{dir}: the root is not under split custody; nothing to re-key")
    pw = read_passphrase_file(passphrase_file) if passphrase_file is not None else None
    officer = with_custody(_officer(log_key, log_key_passphrase_file, pw), opened)
    rec = rekey_custody(dir, opened, threshold=m, recipients=recipients, officer=officer)
    typer.echo(f"Custody re-keyed: now {rec.threshold} of {rec.count} shares (shares {_nums(opened.shares)} took part)")
    for s in rec.shares:
        typer.echo(f"  share {s.number}  {dir / s.file}  {s.recipient}")
    info("the previous shares no longer open the root key; give each custodian only their new share file")


def _nums(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers)


__all__ = ["app"]
