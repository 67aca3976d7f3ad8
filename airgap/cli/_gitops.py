"""CLI plumbing shared by every command that renders Secrets (``--sops-age`` / ``--plaintext-secrets``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def secret_policy(output_dir: Path | None, sops_age: list[str], plaintext: bool, why: str) -> tuple[str, ...] | None:
    """The SOPS recipients for rendered Secrets, or None for --plaintext-secrets (usage errors: exit 2).

    Checked before anything is read or decrypted: the recipients are parsed (exit 3 for one that is
    not an age X25519 recipient) and sops must be installed (exit 4).
    """
    if output_dir is None:
        if sops_age or plaintext:
            raise typer.BadParameter("--sops-age and --plaintext-secrets only apply to --output-dir")
        return None
    if sops_age and plaintext:
        raise typer.BadParameter("--sops-age and --plaintext-secrets cannot be used together")
    if not sops_age and not plaintext:
        raise typer.BadParameter(
            f"--output-dir would write a Secret in plaintext ({why}): pass --sops-age RECIPIENT to write it "
            "SOPS-encrypted (safe to commit), or --plaintext-secrets to write it in the clear deliberately"
        )
    if plaintext:
        return None
    from airgap.core.sops import age_recipients, find_sops

    recipients = age_recipients(sops_age)
    find_sops()
    return recipients


def raise_for_tree(report: Any) -> None:
    """After a fleet-layout render: one cluster's failure is its own error line; several, the fleet's."""
    from airgap.connected.fleet import FleetFailed

    bad = report.failed
    if len(report.outcomes) == 1 and bad:
        raise FleetFailed(f"context {bad[0].context}: {bad[0].detail}", bad[0].exit_code)
    report.raise_for_failures()
