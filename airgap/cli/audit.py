"""`airgap audit verify | show`: check and read a PKI folder's ceremony log offline."""

from __future__ import annotations

from pathlib import Path

import typer

from airgap.cli._app import json_failure, new_app, print_json

app = new_app(help="Check and read the ceremony log of a PKI folder (offline).")


@app.command("verify")
def verify(
    pki: Path = typer.Argument(..., help="The PKI folder (holds ceremony.log and ceremony-head.json)."),
    trust: list[Path] = typer.Option(
        [],
        "--trust",
        help="The officer's public key (.pub); repeatable. Without it the log is checked "
        "against the key it registers itself, which proves consistency only.",
    ),
    head: str | None = typer.Option(
        None, "--head", help="A head hash kept elsewhere (a bundle, the jump host's import record): must be in the log."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Verify the whole log: every entry signed by the officer, chained, in order, none removed or
    changed, nothing cut off. Names the first bad entry and exits 1 otherwise.

    Example: airgap audit verify pki --trust officer.pub
    """
    from airgap.core.keys import load_public_key
    from airgap.offline.ceremony import verify_log

    with json_failure(as_json, {"pki": str(pki)}):  # --json: a failure is a JSON document too
        keys = [load_public_key(p) for p in trust]
        log = verify_log(pki, keys or None, expect_head=head)
    if as_json:
        print_json(
            {
                "verified": True,
                "entries": len(log.entries),
                "head": log.head,
                "officer_keys": list(log.officer_keys),
                "anchored": log.anchored,
                "notes": list(log.notes),
            }
        )
        return
    from airgap.core.display import clean

    typer.echo(f"Verified OK: {len(log.entries)} entries, head {log.head}")
    typer.echo(f"  officer key(s) {clean(', '.join(log.officer_keys))}")
    for n in log.notes:
        typer.echo(f"  note: {clean(n)}")


@app.command("show")
def show(
    pki: Path = typer.Argument(..., help="The PKI folder."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Print the log's entries as written (UNVERIFIED: run 'airgap audit verify' to check them).

    Example: airgap audit show pki --json
    """
    from airgap.offline.ceremony import log_path, read_entries

    entries = read_entries(pki)
    if as_json:
        print_json(
            {
                "verified": False,
                "head": entries[-1].hash if entries else None,
                "entries": [e.to_json() for e in entries],
            }
        )
        return
    from rich.table import Table

    from airgap.core.display import clean, console, short, text

    # Every field comes from the log file, which this command exists to distrust: each cell is a
    # rich Text (never parsed as markup) with control characters made visible.
    out = console()
    out.print(f"Ceremony log {clean(log_path(pki))} (unverified: run 'airgap audit verify')", markup=False)
    table = Table("#", "time", "act", "details", "signer")
    for e in entries:
        p = e.params if isinstance(e.params, dict) else {}
        bits = [f"{k}={p[k]}" for k in ("cluster", "role", "purpose", "serial", "reason", "crl_number") if k in p]
        if "fingerprint" in p:
            bits.append(f"sha256 {short(p['fingerprint'], 16)}")
        signer = short(e.signer, 16) if e.signer else "UNSIGNED"
        table.add_row(*(text(v) for v in (e.seq, e.time, e.act, " ".join(bits), signer)))
    out.print(table)
    if entries:
        out.print(f"head {clean(entries[-1].hash)}", markup=False)


@app.command("report")
def report(
    pki: Path = typer.Argument(..., help="The PKI folder (its ceremony log, inventory and certificates)."),
    trust: list[Path] = typer.Option(
        ..., "--trust", help="The officer's public key (.pub); repeatable. The log must verify against it."
    ),
    state: Path | None = typer.Option(
        None,
        "--state",
        help="The jump host's state folder (its history.jsonl): show every import, extract and push, "
        "each matched against the log.",
    ),
    out: Path | None = typer.Option(None, "--out", help="The HTML page to write (never replaced)."),
    as_json: bool = typer.Option(False, "--json", help="The same content as one JSON document on stdout."),
    now: str | None = typer.Option(
        None, "--now", help="The report's 'now' (ISO 8601, UTC): the same inputs and --now give the same bytes."
    ),
) -> None:
    """Verify the ceremony log, then write one self-contained HTML page (or --json) an auditor can
    file: the verdict first, every act, every certificate on a validity timeline, revocations,
    custody, and with --state the jump host's side. Exits 1 when the log does not verify or a
    jump-host record contradicts it (the page, if written, says so in its title).

    Example: airgap audit report pki --trust officer.pub --state jump/state --out report.html
    """
    if (out is None) == (not as_json):
        raise typer.BadParameter("give exactly one of --out REPORT.html and --json", param_hint="--out/--json")
    from airgap.core.keys import load_public_key
    from airgap.errors import WouldOverwrite
    from airgap.offline.report import build_report, parse_now

    if out is not None and (out.exists() or out.is_symlink()):
        raise WouldOverwrite(f"{out}: already exists; refusing to overwrite")
    with json_failure(as_json, {"pki": str(pki)}):  # --json: unreadable input is a JSON document too
        at = parse_now(now)
        keys = [load_public_key(p) for p in trust]
        made = build_report(pki, keys, now=at, state=state)
    if as_json:
        print_json(made.to_json())
    else:
        assert out is not None
        from airgap.core.display import clean
        from airgap.offline.report_html import write_html

        write_html(made, out)

        typer.echo(f"{clean(made.verdict.summary)}")
        typer.echo(f"Report written: {clean(out)}")
    made.require_verified()
