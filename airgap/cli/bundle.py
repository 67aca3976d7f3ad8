"""`airgap bundle ...`: create (offline), verify / inspect (anyone), import (jump host).

Thin: parse options, call the library (airgap.offline.bundle, airgap.core.bundle,
airgap.connected.bundle_import), print. Errors are raised and turned into exit codes in
``airgap.cli.main``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from airgap.cli._app import INSECURE_HELP, RichProgress, allow_insecure, info, json_failure, new_app, print_json
from airgap.cli._gitops import raise_for_tree, secret_policy
from airgap.core.display import clean_lines
from airgap.core.limits import MAX_BUNDLE_EXPIRY_DAYS, MAX_PARALLEL, MAX_TIMEOUT

if TYPE_CHECKING:
    from airgap.offline.ceremony import Officer

app = new_app(help="Transfer bundles: one signed, encrypted, cluster-bound bundle per cluster CA.")


def _trust_keys(paths: list[Path]) -> list[Any]:
    from airgap.core.keys import load_public_key
    from airgap.errors import InvalidInput

    if not paths:
        raise InvalidInput("give at least one --trust PUB (the officer's public key)")
    return [load_public_key(p) for p in paths]


def _verified_doc(b: Any) -> dict[str, Any]:
    m = b.manifest
    return {
        "verified": True,
        "bundle": str(b.path),
        "format_version": m.format_version,
        "bundle_id": m.bundle_id,
        "cluster": m.cluster,
        "sequence": m.sequence,
        "signer": m.signer,
        "created": m.created,
        "expires": m.expires,
        "recipients": list(m.recipients),
        "ceremony_head": m.ceremony_head,
        "members": [x.to_doc() for x in m.members],
    }


def _print_summary(doc: dict[str, Any]) -> None:
    """A manifest's fields (from a file that crossed the gap: every value is shown through clean())."""
    from airgap.core.display import clean

    for k in ("bundle_id", "cluster", "sequence", "signer", "created", "expires"):
        typer.echo(f"{k:<10} {clean(doc.get(k))}")
    if "ceremony_head" not in doc:
        head = "(none: format 1 bundle, made before bundles carried it)"
    else:
        head = doc["ceremony_head"] or "(none: the PKI kept no ceremony log)"
    typer.echo(f"{'ceremony':<10} {clean(head)}")
    recips = doc.get("recipients") or []
    typer.echo(f"{'recipients':<10} {clean(', '.join(map(str, recips))) if recips else '(none: not encrypted)'}")
    typer.echo("members:")
    for x in doc["members"]:
        flag = " (age-encrypted)" if x["encrypted"] else ""
        typer.echo(f"  {clean(x['path'])}  {clean(x['size'])} bytes  sha256 {clean(x['sha256'])}{flag}")


@app.command("create")
def create(
    cluster: str = typer.Argument(..., help="The cluster the bundle is for (a folder in --dir)."),
    pki: Path = typer.Option(..., "--dir", help="The PKI folder (ca init / ca issue)."),
    sign_key: Path = typer.Option(..., "--sign-key", help="The officer's signing key (keys new --kind signing)."),
    recipient: list[str] = typer.Option([], "--recipient", help="age recipient: a NAME.pub file or age1… (repeat)."),
    include: list[Path] = typer.Option([], "--include", help="Another file to carry, e.g. a release tarball."),
    expires: int = typer.Option(
        30, "--expires", min=1, max=MAX_BUNDLE_EXPIRY_DAYS, help="Days until the bundle expires."
    ),
    no_encrypt: bool = typer.Option(False, "--no-encrypt", help="Carry ca-key.pem in the clear (not advised)."),
    out: Path = typer.Option(..., "--out", help="The bundle file to write (never replaced)."),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="PKI passphrase (opens ca-key.pem; also the signing key by default)."
    ),
    sign_passphrase_file: Path | None = typer.Option(
        None, "--sign-passphrase-file", help="Passphrase of --sign-key, when it differs from the PKI's."
    ),
    log_key: Path | None = typer.Option(
        None,
        "--log-key",
        envvar="AIRGAP_LOG_KEY",
        help="The officer's log key, when the PKI keeps a ceremony log and --sign-key is not that key: "
        "records this bundle in PKI/ceremony.log. Also: $AIRGAP_LOG_KEY.",
    ),
    log_key_passphrase_file: Path | None = typer.Option(
        None, "--log-key-passphrase-file", help="Passphrase file of --log-key (default: the PKI's, then --sign-key's)."
    ),
) -> None:
    """Seal PKI/CLUSTER's cacerts files (+ --include files) into a signed bundle.

    On a PKI that keeps a ceremony log the bundle carries the log's head and is recorded in the
    log, signed with --log-key (default: --sign-key, when it is the registered officer key).

    Example: airgap bundle create c1 --dir pki --sign-key officer.key --recipient op.pub --out c1.bundle
    """
    from airgap.core.age import load_recipients
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.bundle import cluster_key_is_encrypted, seal_bundle, sign_key_is_encrypted

    recips = [r for spec in recipient for r in load_recipients(spec)]
    pki_pw = None
    if cluster_key_is_encrypted(pki, cluster):
        pki_pw = resolve_passphrase(passphrase_file, purpose="PKI passphrase", offer_no_passphrase=False)
    sign_pw = None
    if sign_key_is_encrypted(sign_key):
        if sign_passphrase_file is not None:
            sign_pw = resolve_passphrase(
                sign_passphrase_file, purpose="signing key passphrase", offer_no_passphrase=False
            )
        else:
            sign_pw = pki_pw or resolve_passphrase(
                passphrase_file, purpose="signing key passphrase", offer_no_passphrase=False
            )
    officer = _log_officer(log_key, log_key_passphrase_file, pki_pw or sign_pw, passphrase_file)
    sealed = seal_bundle(
        cluster,
        pki_dir=pki,
        sign_key_path=sign_key,
        sign_passphrase=sign_pw,
        pki_passphrase=pki_pw,
        recipients=recips,
        includes=include,
        expires_days=expires,
        no_encrypt=no_encrypt,
        out=out,
        officer=officer,
        progress=RichProgress(),
    )
    m = sealed.manifest
    typer.echo(f"Bundle     {sealed.path}")
    typer.echo(f"cluster    {m.cluster}")
    typer.echo(f"sequence   {m.sequence}")
    typer.echo(f"bundle_id  {m.bundle_id}")
    typer.echo(f"signer     {m.signer}")
    typer.echo(f"expires    {m.expires}")
    if m.held_key is not None:
        key_note = f"not carried: held elsewhere (key {m.held_key.key_id}); import with --key"
    elif m.recipients:
        key_note = f"age-encrypted to {len(m.recipients)} recipient(s)"
    else:
        key_note = "IN THE CLEAR (--no-encrypt)"
    typer.echo(f"members    {len(m.members)}; ca-key.pem {key_note}")
    if sealed.log_entry is not None:
        typer.echo(
            f"ceremony   head {m.ceremony_head or '(log started by this act)'}; recorded as entry {sealed.log_entry}"
        )
    else:
        typer.echo("ceremony   (none: the PKI keeps no ceremony log)")


def _log_officer(
    log_key: Path | None, log_pass_file: Path | None, known_pw: bytes | None, passphrase_file: Path | None
) -> Officer | None:
    """Open --log-key; its passphrase: --log-key-passphrase-file, else the PKI's / signing key's."""
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.keysource import open_officer

    return open_officer(
        log_key,
        log_pass_file,
        known_pw or None,
        ask=lambda: resolve_passphrase(passphrase_file, purpose="log key passphrase", offer_no_passphrase=False),
    )


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="The bundle file."),
    trust: list[Path] = typer.Option([], "--trust", help="A trusted signer public key (PEM); repeat for several."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Verify format, signature, every member's hash, completeness and expiry (exit 0 only if all pass)."""
    from airgap.core.bundle import open_bundle

    with json_failure(as_json, {"bundle": str(bundle)}):  # --json: a failure is a JSON document too
        verified = open_bundle(bundle, _trust_keys(trust), progress=RichProgress())
    doc = _verified_doc(verified)
    if as_json:
        print_json(doc)
        return
    typer.echo(f"Verified OK: {bundle}")
    _print_summary(doc)


@app.command("inspect")
def inspect(
    bundle: Path = typer.Argument(..., help="The bundle file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Show what a bundle CLAIMS, without checking its signature (labelled UNVERIFIED)."""
    from airgap.core.bundle import inspect_bundle
    from airgap.core.display import clean

    doc = inspect_bundle(bundle)
    if as_json:
        print_json(doc)
        return
    typer.echo(f"UNVERIFIED: what {clean(bundle)} claims; nothing here is checked (use 'airgap bundle verify')")
    if doc["manifest_problem"]:
        typer.echo(f"manifest problem: {clean(doc['manifest_problem'])}")
    man = doc["manifest"]
    if isinstance(man, dict) and doc["manifest_problem"] is None:
        _print_summary(man)
    else:
        typer.echo(f"manifest: {clean(repr(man))}")
    typer.echo(f"signature  {'present (not checked)' if doc['signature_present'] else 'MISSING'}")
    typer.echo("archive:")
    for e in doc["archive"]:
        typer.echo(f"  {clean(e['name'])}  {e['size']} bytes")


@app.command("import")
def import_(
    bundle: Path = typer.Argument(..., help="The bundle file."),
    trust: list[Path] = typer.Option([], "--trust", help="A trusted signer public key (PEM); repeat for several."),
    identity: Path | None = typer.Option(None, "--identity", help="Your age identity (keys new --kind recipient)."),
    cluster: str = typer.Option(..., "--cluster", help="The cluster you are importing into (must match)."),
    context: list[str] = typer.Option(
        [], "--context", help="kubeconfig context (default: current); repeat to import into a fleet."
    ),
    parallel: int = typer.Option(
        8, "--parallel", min=1, max=MAX_PARALLEL, help="Clusters at a time when --context is repeated."
    ),
    rotate: bool = typer.Option(False, "--rotate", help="Replace an existing cacerts secret (CA rotation)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check everything, print the plan, write nothing (with --context: read the cluster)."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Render YAML here; touch no cluster (with --context: DIR/clusters/CTX/)."
    ),
    sops_age: list[str] = typer.Option(
        [],
        "--sops-age",
        help="With --output-dir: write the cacerts Secret as a SOPS file encrypted to this age recipient "
        "(age1… or a .pub file; repeat for several). Safe to commit.",
    ),
    plaintext_secrets: bool = typer.Option(
        False, "--plaintext-secrets", help="With --output-dir and no --sops-age: write the CA key in the clear."
    ),
    passphrase_file: Path | None = typer.Option(None, "--passphrase-file", help="Passphrase of --identity."),
    key: Path | None = typer.Option(
        None,
        "--key",
        help="For a keyless bundle (the CA key was made here by 'ca request'): JUMPDIR/CLUSTER/ca-key.pem. "
        "It must be the key the bundle's certificate was issued for (exit 1 otherwise).",
    ),
    key_passphrase_file: Path | None = typer.Option(
        None, "--key-passphrase-file", help="Passphrase of --key (also: $AIRGAP_PASSPHRASE, or a prompt)."
    ),
    insecure: bool = typer.Option(False, "--insecure", help=INSECURE_HELP),
    peer: list[str] = typer.Option(
        [],
        "--peer",
        help="With --rotate: a context whose cluster must keep trusting (and be trusted by) the target; "
        "repeat. The clusters the target holds remote secrets for are peers too.",
    ),
    force_split: str | None = typer.Option(
        None,
        "--force-split",
        help="With --rotate: import even though the mesh would split; REASON is recorded in the history.",
    ),
    trust_wait: float = typer.Option(
        120.0,
        "--trust-wait",
        min=0,
        max=MAX_TIMEOUT,
        help="Seconds to wait for istiod to publish a new issuing root in injected namespaces.",
    ),
    poll: float = typer.Option(2.0, "--poll", min=0.01, max=60, hidden=True),
) -> None:
    """Verify, decrypt and check a bundle, then render it (--output-dir) or write it to the cluster(s).

    The bundle is verified and decrypted once, before any cluster is touched. On each cluster the
    result is "created", "unchanged" (nothing written), "annotated" (same CA material, newer
    bundle: only the airgap.dev annotations change) or "rotated (backup NAME)" (--rotate). With
    several --context the clusters run --parallel at a time, a table ends the output and the exit
    code is the worst cluster's. --dry-run --context reads the cluster(s) and says what would happen.

    --rotate into a cluster is gated (docs/rotation.md): refused (exit 4, nothing changed, nothing
    recorded) when after it the target and one of its peers (--peer, and the clusters it holds
    remote secrets for) would reject each other, or when the issuer moves to a root istiod does
    not yet publish in the injected namespaces. --force-split REASON is the only way past.

    --output-dir renders instead of writing to a cluster. The cacerts Secret holds the CA private
    key, so it needs --sops-age RECIPIENT (a SOPS file, data encrypted, names and annotations
    readable) or, deliberately, --plaintext-secrets. With --context the fleet layout is written:
    DIR/.sops.yaml and DIR/clusters/CTX/ with a kustomization.yaml, for Flux or Argo CD
    (docs/gitops.md); a re-render of the same bundle leaves every file as it is, a new CA needs --rotate.

    Example: airgap bundle import c1.bundle --trust officer.pub --identity op.key --cluster c1 --context prod-1

    Example: airgap bundle import c1.bundle --trust officer.pub --identity op.key --cluster c1
    --context prod-1 --output-dir fleet-repo --sops-age flux.pub

    Example: airgap bundle import c1.bundle --trust officer.pub --key jump/c1/ca-key.pem --cluster c1 --context p1
    """
    from airgap.connected.bundle_import import prepare_import
    from airgap.connected.fleet import unique_contexts

    _check_import_options(dry_run, output_dir, rotate, peer, force_split)
    recipients = secret_policy(output_dir, sops_age, plaintext_secrets, "the cacerts Secret holds the CA private key")
    allow_insecure(insecure)
    contexts = unique_contexts(context)
    peers = unique_contexts(peer)
    keys = _trust_keys(trust)
    pw, key_pw = _import_passphrases(identity, passphrase_file, key, key_passphrase_file)
    # Verified, decrypted and checked once, before any cluster is touched.
    prepared = prepare_import(
        bundle, keys, identity, pw, cluster, progress=RichProgress(), local_key=key, local_key_passphrase=key_pw
    )
    secret = prepared.cacerts_secret_manifest()
    summary = _import_summary(prepared, secret)
    if dry_run and not contexts:
        _print_local_dry_run(secret, summary)
        return
    if output_dir is not None:
        _import_render(prepared, summary, output_dir, contexts, recipients, rotate=rotate, parallel=parallel)
        return
    typer.echo(f"Verified OK: {summary}")
    _import_live(
        prepared,
        contexts,
        peers,
        force_split,
        rotate=rotate,
        dry_run=dry_run,
        parallel=parallel,
        wait=trust_wait,
        poll=poll,
    )


def _check_import_options(
    dry_run: bool, output_dir: Path | None, rotate: bool, peer: list[str], force_split: str | None
) -> None:
    """The flag rules of ``bundle import`` (usage errors, exit 2), before anything is read."""
    if dry_run and output_dir is not None:
        raise typer.BadParameter("--dry-run and --output-dir cannot be used together")
    if (peer or force_split is not None) and (not rotate or output_dir is not None):
        raise typer.BadParameter("--peer and --force-split gate a --rotate into a cluster (not --output-dir)")
    if force_split is not None and not force_split.strip():
        raise typer.BadParameter("--force-split needs a reason")


def _import_passphrases(
    identity: Path | None, passphrase_file: Path | None, key: Path | None, key_passphrase_file: Path | None
) -> tuple[Any, Any]:
    """The passphrases of an encrypted ``--identity`` and an encrypted ``--key`` (None when clear or absent)."""
    from airgap.core.age import identity_is_encrypted
    from airgap.core.passphrase import resolve_passphrase

    pw = None
    if identity is not None and identity_is_encrypted(identity):
        pw = resolve_passphrase(passphrase_file, purpose="identity passphrase", offer_no_passphrase=False)
    key_pw = None
    if key is not None:
        from airgap.core.keys import key_file_is_encrypted

        if key_file_is_encrypted(key, "CA key"):
            key_pw = resolve_passphrase(key_passphrase_file, purpose="CA key passphrase", offer_no_passphrase=False)
    return pw, key_pw


def _import_summary(prepared: Any, secret: dict[str, Any]) -> str:
    from airgap.connected.bundle_import import ANN_FINGERPRINT

    return (
        f"bundle {prepared.bundle_id} for cluster {prepared.cluster}, sequence {prepared.sequence}, "
        f"signer {prepared.signer}, CA fingerprint {secret['metadata']['annotations'][ANN_FINGERPRINT]}, "
        f"ceremony head {prepared.ceremony_head or 'none'}"
    )


def _print_local_dry_run(secret: dict[str, Any], summary: str) -> None:
    """``--dry-run`` without ``--context``: what would be applied (no cluster read)."""
    typer.echo(f"Verified OK: {summary}")
    typer.echo("Would apply: Namespace istio-system")
    typer.echo(f"Would apply: Secret istio-system/cacerts (keys: {', '.join(secret['data'])})")
    typer.echo("Dry run: nothing written (no --context: no cluster was read).")


def _import_render(
    prepared: Any,
    summary: str,
    output_dir: Path,
    contexts: list[str],
    recipients: Any,
    *,
    rotate: bool,
    parallel: int,
) -> None:
    """``--output-dir``: the fleet tree (with --context; its table) or the flat files."""
    from airgap.connected.bundle_import import import_to_dir, import_to_tree

    if contexts:
        typer.echo(f"Verified OK: {summary}")
        tree = import_to_tree(
            prepared, output_dir, contexts, recipients=recipients, rotate=rotate, parallel=parallel
        )  # records the accepted bundle first; the same bundle may be rendered again
        typer.echo(clean_lines(tree.table()))
        raise_for_tree(tree)
        return
    written = import_to_dir(prepared, output_dir, recipients)  # records the accepted bundle before publishing
    typer.echo(f"Verified OK: {summary}")
    for p in written:
        typer.echo(f"Wrote {p}")


def _import_live(
    prepared: Any,
    contexts: list[str],
    peers: list[str],
    force_split: str | None,
    *,
    rotate: bool,
    dry_run: bool,
    parallel: int,
    wait: float,
    poll: float,
) -> None:
    """Into the cluster(s): the gate first (--rotate), then each cluster, its record and history."""
    from airgap.connected.bundle_import import history_hook
    from airgap.connected.cacerts import ask_import_fleet, import_row, import_to_cluster, record_once
    from airgap.connected.fleet import run_on_contexts

    if rotate:
        _gate(prepared, contexts, peers, force_split, dry_run=dry_run, wait=wait, poll=poll, parallel=parallel)
    hook = history_hook(prepared, force_split)
    record = record_once()  # the accepted bundle, once, after the first cluster that holds it

    def import_context(ctx: str | None) -> Any:  # never records or writes history in a dry run
        return import_to_cluster(
            prepared, context=ctx, rotate=rotate, dry_run=dry_run, notify=_note, record=record, on_imported=hook
        )

    def show_one(result: Any) -> None:
        typer.echo(clean_lines(result.describe()))
        if dry_run:
            typer.echo("Dry run: nothing written.")

    def show_fleet(report: Any) -> None:
        typer.echo(clean_lines(report.table()))  # a failed cluster's detail may quote its server
        if dry_run:
            typer.echo("Dry run: nothing written.")
        report.raise_for_failures()  # the worst cluster's exit code, naming the failed contexts

    def ask_every(names: list[str]) -> None:
        ask_import_fleet(prepared, names, rotate=rotate, parallel=parallel)

    run_on_contexts(
        list(contexts),
        import_context,
        show_one=show_one,
        row=import_row,
        show_fleet=show_fleet,
        ask_first=None if dry_run else ask_every,
        parallel=parallel,
        on_done=lambda o: _note(o.value.describe() if o.value is not None else o.detail),
    )


def _gate(
    prepared: Any,
    contexts: list[str],
    peers: list[str],
    force_split: str | None,
    *,
    dry_run: bool,
    wait: float,
    poll: float,
    parallel: int,
) -> None:
    """The rotation gate (airgap.connected.gate) over the target(s) and their peers; reads only."""
    from airgap.connected.gate import check_split, run_gate
    from airgap.connected.kube import policy_from_env, resolve_context

    targets = contexts or [resolve_context(None)[1]]
    facts = prepared.trust_facts()
    if dry_run:  # what the gate says now; no wait for istiod
        check_split(
            facts, targets, peers, force_split=force_split, parallel=parallel, policy=policy_from_env(), notify=_note
        )
        return
    run_gate(
        facts,
        targets,
        peers,
        force_split=force_split,
        wait=wait,
        poll=poll,
        parallel=parallel,
        policy=policy_from_env(),
        notify=_note,
    )


_NOTE_LOCK = threading.Lock()


def _note(message: str) -> None:
    """A progress note on stderr (retries, each cluster's result); safe from the fleet's threads."""
    with _NOTE_LOCK:
        info(message)
