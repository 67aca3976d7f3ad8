"""`airgap keys new`: the officer's signing key and operators' recipient keys."""

from __future__ import annotations

from pathlib import Path

import typer

from airgap.cli._app import new_app

app = new_app(help="Signing keys (ECDSA P-256) and recipient keys (age X25519).")


@app.command("new")
def new(
    name: str = typer.Argument(..., help="Key name: writes OUT/NAME.key (0600) and OUT/NAME.pub."),
    kind: str = typer.Option("signing", "--kind", help="signing (ECDSA P-256 PEM) | recipient (age X25519)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for the key files (created when missing)."),
    passphrase_file: Path | None = typer.Option(None, "--passphrase-file", help="Encrypt the key with this."),
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Write the private key unencrypted."),
) -> None:
    """Make a key pair; the private half is encrypted at rest unless --no-passphrase.

    Example: airgap keys new officer --out keys --passphrase-file pass.txt
    """
    import re

    from airgap.core.passphrase import resolve_passphrase
    from airgap.errors import InvalidInput

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise InvalidInput(f"key name {name!r} is not valid: letters, digits, '.', '_' and '-' only")
    if kind not in ("signing", "recipient"):
        raise InvalidInput(f"--kind {kind!r}: choose signing or recipient")
    pw = resolve_passphrase(passphrase_file, no_passphrase=no_passphrase, confirm=True, purpose="key passphrase")
    if kind == "signing":
        from airgap.core.keys import new_signing_key

        made = new_signing_key(name, out, pw)
        typer.echo(f"Signing key {made.private} (0600{', encrypted' if pw else ', UNENCRYPTED'})")
        typer.echo(f"Public key  {made.public}")
        typer.echo(f"Key id      {made.fingerprint}")
    else:
        from airgap.core.age import new_recipient_key

        rmade = new_recipient_key(name, out, pw)
        typer.echo(f"Identity    {rmade.private} (0600{', encrypted' if pw else ', UNENCRYPTED'})")
        typer.echo(f"Recipient   {rmade.public}: {rmade.recipient}")
