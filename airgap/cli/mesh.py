"""`airgap mesh install|inject|status` and `airgap preflight`: thin wrappers over airgap.connected.

``--context`` may be repeated: the clusters then run concurrently (``--parallel``, default 8),
one failure stops no other, a summary table ends the output, and the exit code is the worst one.
Progress notes and istioctl's output go to stderr; results (and ``--json``) go to stdout.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer

from airgap.cli._app import INSECURE_HELP, allow_insecure, new_app, print_json
from airgap.cli._metrics import PrometheusFileOpt, PrometheusOpt, check_outputs, emit
from airgap.core.display import clean_lines
from airgap.core.limits import MAX_PARALLEL, MAX_TIMEOUT
from airgap.errors import VerificationError

app = new_app(help="Install and check the mesh on clusters.")

_PRINT_LOCK = threading.Lock()

CONTEXT_HELP = "kubeconfig context (default: current); repeat for a fleet."
PARALLEL_HELP = "Clusters at a time when --context is repeated."


def _notifier(prefix: str) -> Callable[[str], None]:
    """Progress notes and istioctl's output (a child's bytes: shown through clean())."""
    from airgap.core.display import clean

    def out(line: str) -> None:
        with _PRINT_LOCK:
            print(clean(f"{prefix}{line}"), file=sys.stderr, flush=True)

    return out


def _contexts(context: list[str]) -> list[str | None]:
    from airgap.connected.fleet import unique_contexts

    return list(unique_contexts(context)) if context else [None]


def _shown_as(as_json: bool, print_text: Callable[[Any], None]) -> Callable[[Any], None]:
    """How one cluster's result is shown: its JSON document (``--json``), or ``print_text``."""

    def show(result: Any) -> None:
        if as_json:
            print_json(result.as_dict())
        else:
            print_text(result)

    return show


def _finish_fleet(report: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print the fleet's table (or JSON) and exit with the worst code."""
    if as_json:
        doc = report.as_dict()
        doc.update(extra or {})
        print_json(doc)
    else:
        typer.echo(clean_lines(report.table()))
    report.raise_for_failures()


def _policy() -> Any:
    from airgap.connected.kube import policy_from_env

    return policy_from_env()


# -- mesh install ----------------------------------------------------------------------------------


@app.command("install")
def install(
    release: Path = typer.Option(..., "--release", help="The `release extract --out` folder, or its istio-* folder."),
    cluster_name: str = typer.Option(
        ...,
        "--cluster-name",
        help="multiCluster.clusterName; with several contexts use {context} (the context name made safe) "
        "or {cluster} (the cluster part of a GKE/EKS context name) in it.",
    ),
    network: str = typer.Option(..., "--network", help="The cluster's network (topology.istio.io/network)."),
    mesh_id: str = typer.Option(..., "--mesh-id", help="values.global.meshID (the same for every cluster)."),
    context: list[str] = typer.Option([], "--context", help=CONTEXT_HELP),
    revision: str | None = typer.Option(
        None, "--revision", help="The control plane revision (default: from the release, 1.8.6-asm.8 -> asm-186-8)."
    ),
    profile: str | None = typer.Option(
        None, "--profile", help="The IstioOperator profile (default: the release line's, asm-multicloud for ASM 1.8)."
    ),
    east_west: bool = typer.Option(
        False, "--east-west", help="Also install the network's east-west gateway and expose services on 15443."
    ),
    overlay: list[Path] = typer.Option([], "-f", "--overlay", help="IstioOperator overlay, merged in the order given."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and print the plan; change nothing."),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Render manifests and the command; no cluster."),
    layout: str = typer.Option(
        "auto",
        "--layout",
        help="--output-dir layout: flat, or clusters (DIR/clusters/CTX/ with kustomization.yaml, for GitOps); "
        "auto: clusters when --context is repeated.",
    ),
    sops_age: list[str] = typer.Option(
        [], "--sops-age", help="With --layout clusters: age recipient for DIR/.sops.yaml (repeat for several)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Change a different existing network label (or a rendered file's content)."
    ),
    parallel: int = typer.Option(8, "--parallel", min=1, max=MAX_PARALLEL, help=PARALLEL_HELP),
    timeout: float = typer.Option(
        900.0, "--timeout", min=1, max=MAX_TIMEOUT, help="Seconds istioctl install may take."
    ),
    wait_timeout: float = typer.Option(
        600.0, "--wait-timeout", min=0, max=MAX_TIMEOUT, help="Seconds to wait for Ready pods."
    ),
    poll: float = typer.Option(2.0, "--poll", min=0.01, max=60, hidden=True),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    insecure: bool = typer.Option(False, "--insecure", help=INSECURE_HELP),
    images: Path | None = typer.Option(
        None, "--images", help="Images bundle (airgap images pull): install every image from --registry by digest."
    ),
    trust: list[Path] = typer.Option([], "--trust", help="With --images: a trusted signer public key (PEM); repeat."),
    registry: str | None = typer.Option(
        None, "--registry", help="With --images: HOST[:PORT][/PATH] the images were pushed to."
    ),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help="With --images: PEM CA of the registry's TLS."),
    authfile: Path | None = typer.Option(
        None, "--authfile", help="With --images: containers-auth.json credentials for the registry."
    ),
) -> None:
    """Install the mesh from a verified release: cluster.yaml, istioctl, network label, istiod Service, wait.

    --output-dir renders instead of installing. In the clusters layout (docs/gitops.md) a re-render
    of the same input leaves every file as it is; another content needs --force.

    Example: airgap mesh install --context ctx1 --release rel --cluster-name cluster1 --network net1 --mesh-id proj-1

    Example: airgap mesh install --context c1 --context c2 --release rel --cluster-name '{context}'
    --network 'net-{context}' --mesh-id proj-1 --output-dir fleet-repo --sops-age flux.pub

    Example: airgap mesh install --context ctx1 --release rel --cluster-name cluster1 --network net1
    --mesh-id proj-1 --images mesh.images --trust officer.pub --registry registry.internal:5000/mesh
    """
    allow_insecure(insecure)
    plan = InstallPlan(
        context=tuple(context),
        layout=layout,
        sops_age=tuple(sops_age),
        dry_run=dry_run,
        output_dir=output_dir,
        cluster_name=cluster_name,
        images=images,
        trust=tuple(trust),
        registry=registry,
        ca_bundle=ca_bundle,
        authfile=authfile,
    ).validate()
    template = _install_settings(plan, release, network, mesh_id, revision, profile, tuple(overlay), east_west)
    wait = _wait_policy(timeout, wait_timeout, poll)
    access = _registry_access(authfile, ca_bundle)
    if output_dir is not None:
        _render(plan, output_dir, release, template, force=force, parallel=parallel, as_json=as_json)
        return
    _install(plan, release, template, wait, access, force=force, parallel=parallel, as_json=as_json)


@dataclass(frozen=True)
class InstallPlan:
    """The parsed options of ``mesh install`` its flag rules bind; :meth:`validate` checks them (usage
    errors, exit 2; two clusters given one name, exit 3) before anything is read or touched."""

    context: tuple[str, ...]
    layout: str
    sops_age: tuple[str, ...]
    dry_run: bool
    output_dir: Path | None
    cluster_name: str
    images: Path | None
    trust: tuple[Path, ...]
    registry: str | None
    ca_bundle: Path | None
    authfile: Path | None
    contexts: tuple[str | None, ...] = ()  # set by validate(): each --context once, or (None,) for the current

    @property
    def fleet(self) -> bool:
        return len(self.contexts) > 1

    @property
    def named(self) -> list[str]:
        return [c for c in self.contexts if c]

    def validate(self) -> InstallPlan:
        """This plan with its contexts and layout resolved, or the first broken rule raised."""
        _check_image_options(self.images, list(self.trust), self.registry, self.ca_bundle, self.authfile)
        if self.dry_run and self.output_dir is not None:
            raise typer.BadParameter("--dry-run and --output-dir cannot be used together")
        if self.layout not in ("auto", "flat", "clusters"):
            raise typer.BadParameter(f"--layout {self.layout!r}: expected auto, flat or clusters")
        contexts = _contexts(list(self.context))
        if self.output_dir is None and (self.sops_age or self.layout != "auto"):
            raise typer.BadParameter("--sops-age and --layout only apply to --output-dir")
        layout = self.layout
        if layout == "auto":
            layout = "clusters" if len(contexts) > 1 else "flat"
        if layout == "flat" and self.sops_age:
            raise typer.BadParameter("--sops-age needs the clusters layout (--layout clusters or several --context)")
        if layout == "flat" and len(contexts) > 1:
            raise typer.BadParameter("several --context render the clusters layout; --layout flat takes one")
        if layout == "clusters" and contexts == [None]:
            raise typer.BadParameter("--layout clusters needs --context (one folder per context)")
        if len(contexts) > 1:
            _check_cluster_names(self.cluster_name, [c for c in contexts if c])
        return replace(self, layout=layout, contexts=tuple(contexts))


def _check_cluster_names(cluster_name: str, contexts: list[str]) -> None:
    """With several contexts, ``--cluster-name`` is a template giving each cluster its own name."""
    from airgap.connected.fleet import check_distinct

    if "{context}" not in cluster_name and "{cluster}" not in cluster_name:
        raise typer.BadParameter(
            "with several --context, --cluster-name must contain {context} or {cluster} (names must differ)"
        )
    check_distinct(cluster_name, contexts, "--cluster-name")


def _install_settings(
    plan: InstallPlan,
    release: Path,
    network: str,
    mesh_id: str,
    revision: str | None,
    profile: str | None,
    overlay: tuple[Path, ...],
    east_west: bool,
) -> Any:
    """The MeshSettings template (release defaults filled in, image pins verified); ``{context}`` still
    unexpanded for a fleet."""
    from airgap.connected.catalog import istiod_env
    from airgap.connected.mesh import MeshSettings

    defaults = _release_defaults(release)
    template = MeshSettings(
        plan.cluster_name,
        network,
        mesh_id,
        revision or defaults.revision,
        profile or defaults.profile,
        overlay,
        east_west,
        istiod_env(defaults.line),  # the line's cacerts reload flag (docs/rotation.md), if any
    )
    if plan.images is not None:  # after the settings' own checks (the profile name names a release file)
        pins = _image_pins(plan.images, list(plan.trust), plan.registry, release, template.profile)
        template = replace(template, images=pins)
    return template


def _wait_policy(timeout: float, wait_timeout: float, poll: float) -> Any:
    from airgap.connected.mesh import WaitPolicy

    return WaitPolicy(istioctl_timeout=timeout, ready_timeout=wait_timeout, poll=poll)


def _render(
    plan: InstallPlan, output_dir: Path, release: Path, template: Any, *, force: bool, parallel: int, as_json: bool
) -> None:
    """``--output-dir``: the flat layout's files, or the clusters layout's tree (its table, or the fleet's)."""
    from airgap.connected.mesh import render_install, render_tree

    if plan.layout == "flat":
        base = template.for_context(plan.contexts[0] or "")
        for p in render_install(release, base, output_dir, context=plan.contexts[0]):
            typer.echo(f"Wrote {p}")
        return
    recipients = None
    if plan.sops_age:
        from airgap.core.sops import age_recipients

        recipients = age_recipients(list(plan.sops_age))
    tree = render_tree(release, template, output_dir, plan.named, recipients=recipients, force=force, parallel=parallel)
    if len(tree.outcomes) == 1 and not as_json:
        from airgap.cli._gitops import raise_for_tree

        typer.echo(clean_lines(tree.table()))
        raise_for_tree(tree)
        return
    _finish_fleet(tree, as_json)


def _install(
    plan: InstallPlan,
    release: Path,
    template: Any,
    wait: Any,
    access: Any,
    *,
    force: bool,
    parallel: int,
    as_json: bool,
) -> None:
    """Install on the one cluster (its result printed), or on every cluster of the fleet (its table)."""
    from airgap.connected.fleet import Outcome, run_on_contexts
    from airgap.connected.mesh import ask_install_fleet, install_mesh

    base = template if plan.fleet else template.for_context(plan.contexts[0] or "")

    def install_context(ctx: str | None) -> Any:
        settings = base.for_context(ctx) if plan.fleet and ctx else base
        prefix = f"[{ctx}] " if plan.fleet else ""
        return install_mesh(
            release,
            settings,
            context=ctx,
            force=force,
            dry_run=plan.dry_run,
            policy=_policy(),
            wait=wait,
            notify=_notifier(prefix),
            on_output=_notifier(prefix + "istioctl: "),
            registry=access,
        )

    def row(ctx: str, r: Any) -> Outcome:
        word = "planned" if r.dry_run else "installed"
        return Outcome(ctx, 0, word, f"label {r.network_label}, service {r.service}", r)

    def ask_every(names: list[str]) -> None:  # every cluster is asked before any is written (issue 23)
        ask_install_fleet(names, template.east_west, policy=_policy(), parallel=parallel)

    run_on_contexts(
        plan.contexts,
        install_context,
        show_one=_shown_as(as_json, _print_install),
        row=row,
        show_fleet=lambda report: _finish_fleet(report, as_json),
        ask_first=None if plan.dry_run else ask_every,
        parallel=parallel,
    )


def _check_image_options(
    images: Path | None, trust: list[Path], registry: str | None, ca_bundle: Path | None, authfile: Path | None
) -> None:
    """--images, --trust and --registry go together; --ca-bundle and --authfile only with them (exit 2)."""
    given = {"--images": images is not None, "--trust": bool(trust), "--registry": registry is not None}
    if any(given.values()) and not all(given.values()):
        missing = ", ".join(k for k, v in given.items() if not v)
        raise typer.BadParameter(f"--images, --trust and --registry go together: {missing} missing")
    if not images and (ca_bundle is not None or authfile is not None):
        raise typer.BadParameter("--ca-bundle and --authfile only apply with --images")


def _image_pins(images: Path | None, trust: list[Path], registry: str | None, release: Path, profile: str) -> Any:
    """The verified images bundle paired with the registry (None without --images)."""
    if images is None or registry is None:
        return None
    from airgap.connected.pinning import load_pins
    from airgap.core.keys import load_public_key

    keys = [load_public_key(p) for p in trust]
    return load_pins(images, keys, registry, release=release, profile=profile)


def _registry_access(authfile: Path | None, ca_bundle: Path | None) -> Any:
    from airgap.connected.pinning import RegistryFlags

    return RegistryFlags(authfile=authfile, ca_bundle=ca_bundle)


def _release_defaults(release: Path) -> Any:
    """Revision and profile defaults of the release (a release not in the catalog gets a warning)."""
    from airgap.cli._app import warn
    from airgap.connected.catalog import defaults_for, release_version

    defaults = defaults_for(release_version(release))
    if not defaults.known:
        warn(
            f"release {defaults.version} is not in airgap's catalog: revision {defaults.revision} and profile "
            f"{defaults.profile} are derived; pass --revision/--profile to choose"
        )
    return defaults


def _print_install(r: Any) -> None:
    """The one cluster's install result; the label, Service and pod names were read from the cluster."""
    import shlex

    if r.dry_run:
        lines = [
            f"context {r.context}: dry run, nothing changed",
            f"would run: {shlex.join(r.argv)}",
            f"network label: would be {r.network_label}",
            f"istiod service: would {r.service}",
            *_image_lines(r),
        ]
    else:
        lines = [
            f"context {r.context}: mesh installed",
            f"ran: {shlex.join(r.argv)}",
            f"network label: {r.network_label}",
            f"istiod service: {r.service}",
            *([f"east-west gateway: {r.east_west}"] if r.east_west else []),
            *_image_lines(r),
            f"ready: {', '.join(r.ready)}",
        ]
    for line in lines:
        typer.echo(clean_lines(line))


def _image_lines(r: Any) -> list[str]:
    return [f"image {name}: {ref} (served by the registry)" for name, ref in sorted((r.images or {}).items())]


# -- mesh inject -----------------------------------------------------------------------------------


@app.command("inject")
def inject(
    namespaces: list[str] = typer.Argument(..., help="Namespaces to inject."),
    context: list[str] = typer.Option([], "--context", help=CONTEXT_HELP),
    revision: str | None = typer.Option(None, "--revision", help="Revision (default: the running istiod's)."),
    restart: bool = typer.Option(False, "--restart", help="Rollout-restart the namespaces' deployments and check."),
    parallel: int = typer.Option(8, "--parallel", min=1, max=MAX_PARALLEL, help=PARALLEL_HELP),
    wait_timeout: float = typer.Option(
        300.0, "--wait-timeout", min=0, max=MAX_TIMEOUT, help="Seconds to wait for the rollouts."
    ),
    poll: float = typer.Option(2.0, "--poll", min=0.01, max=60, hidden=True),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    insecure: bool = typer.Option(False, "--insecure", help=INSECURE_HELP),
    force: bool = typer.Option(
        False, "--force", help="Allow a system namespace (kube-system, kube-public, kube-node-lease, istio-system)."
    ),
) -> None:
    """Label namespaces with the revision (removing istio-injection); --restart restarts and checks the pods.

    Example: airgap mesh inject shop payments --context ctx1 --restart
    """
    from airgap.connected.fleet import Outcome, run_on_contexts
    from airgap.connected.inject import ask_inject_fleet, check_names, enable_injection
    from airgap.connected.kube import connect

    check_names(namespaces, revision, force=force)  # bad names: exit 3 (system ones: 4) before any cluster
    allow_insecure(insecure)
    contexts = _contexts(context)

    def inject_context(ctx: str | None) -> Any:
        notify = _notifier(f"[{ctx}] " if len(contexts) > 1 else "")
        with connect(ctx, policy=_policy(), notify=notify) as kube:
            return enable_injection(
                kube,
                namespaces,
                revision=revision,
                restart=restart,
                timeout=wait_timeout,
                poll=poll,
                notify=notify,
                force=force,
            )

    def show_one(r: Any) -> None:
        _shown_as(as_json, _print_inject)(r)
        missing = r.pods_without_revision
        if missing:
            raise VerificationError(
                f"context {r.context}: {len(missing)} pod(s) still without istio.io/rev={r.revision}: "
                f"{', '.join(missing)}"
            )

    def row(ctx: str, r: Any) -> Outcome:
        missing = r.pods_without_revision
        detail = f"revision {r.revision}" + (f"; without label: {', '.join(missing)}" if missing else "")
        return Outcome(ctx, 1 if missing else 0, "unchecked" if missing else "injected", detail, r)

    def ask_every(names: list[str]) -> None:
        ask_inject_fleet(names, namespaces, restart, policy=_policy(), parallel=parallel)

    run_on_contexts(
        contexts,
        inject_context,
        show_one=show_one,
        row=row,
        show_fleet=lambda report: _finish_fleet(report, as_json),
        ask_first=ask_every,
        parallel=parallel,
    )


def _print_inject(r: Any) -> None:
    typer.echo(clean_lines(f"context {r.context}: revision {r.revision}"))  # the revision may be the cluster's
    for n in r.namespaces:
        line = f"namespace {n.namespace}: istio.io/rev={r.revision} ({n.label})"
        if n.restarted:
            line += f"; restarted {', '.join(n.restarted)}"
        typer.echo(clean_lines(line))
        for p in n.without_revision:
            typer.echo(clean_lines(f"  pod without istio.io/rev: {p}"))


# -- mesh connect ----------------------------------------------------------------------------------


@app.command("connect")
def connect_cmd(
    context: list[str] = typer.Option(..., "--context", help="kubeconfig context of a cluster; two or more."),
    cluster_name: list[str] = typer.Option(
        [], "--cluster-name", help="CONTEXT=NAME for a cluster whose clusterName mesh install did not record."
    ),
    mesh_id: str | None = typer.Option(None, "--mesh-id", help="The meshID, for clusters that have none recorded."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read every cluster and print what would change."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Render clusters/CTX/ manifests (reader, remote secrets); change no cluster."
    ),
    sops_age: list[str] = typer.Option(
        [],
        "--sops-age",
        help="With --output-dir: write the remote secrets as SOPS files encrypted to this age recipient "
        "(age1… or a .pub file; repeat for several). Safe to commit.",
    ),
    plaintext_secrets: bool = typer.Option(
        False, "--plaintext-secrets", help="With --output-dir: write the remote secrets (API tokens) in plaintext."
    ),
    force: bool = typer.Option(
        False, "--force", help="With --output-dir: rewrite remote secrets whose content changed (rotated token)."
    ),
    parallel: int = typer.Option(8, "--parallel", min=1, max=256, help="Clusters at a time."),
    token_timeout: float = typer.Option(
        60.0, "--token-timeout", min=0, max=3600, help="Seconds to wait for a reader token."
    ),
    poll: float = typer.Option(0.5, "--poll", min=0.01, max=60, hidden=True),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Join clusters into one mesh: in every cluster, a remote secret for every other one.

    Each cluster gets a reader service account (and its token); each other cluster's istio-system
    gets istio-remote-secret-NAME with a kubeconfig for it (server and CA data from your kubeconfig).
    Refused, with nothing written anywhere, when two clusters' cacerts share no root, the meshIDs
    differ, a network label is missing, or a context has no CA data.

    --output-dir renders clusters/CTX/ instead (the readers' tokens must exist: connect once live);
    the remote secrets hold API tokens, so it needs --sops-age RECIPIENT (docs/gitops.md) or
    --plaintext-secrets.

    Example: airgap mesh connect --context ctx1 --context ctx2 --context ctx3

    Example: airgap mesh connect --context ctx1 --context ctx2 --output-dir fleet-conn --sops-age flux.pub
    """
    from airgap.cli._gitops import secret_policy
    from airgap.connected.remote_secrets import connect_mesh, parse_name_map

    if dry_run and output_dir is not None:
        raise typer.BadParameter("--dry-run and --output-dir cannot be used together")
    if force and output_dir is None:
        raise typer.BadParameter("--force only applies to --output-dir")
    recipients = secret_policy(output_dir, sops_age, plaintext_secrets, "remote secrets hold API tokens")
    allow_insecure(False)  # no --insecure here: a context without TLS verification is refused at step 1
    result = connect_mesh(
        context,
        names=parse_name_map(cluster_name),
        mesh_id=mesh_id,
        dry_run=dry_run,
        output_dir=output_dir,
        parallel=parallel,
        policy=_policy(),
        token_timeout=token_timeout,
        poll=poll,
        notify=_notifier(""),
        recipients=recipients,
        replace=force,
    )
    if as_json:
        print_json(result.as_dict())
    else:
        text = result.text()
        typer.echo(clean_lines(text) if text else "nothing to change")


# -- mesh status -----------------------------------------------------------------------------------


@app.command("status")
def status(
    context: list[str] = typer.Option([], "--context", help=CONTEXT_HELP),
    parallel: int = typer.Option(8, "--parallel", min=1, max=MAX_PARALLEL, help=PARALLEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    prometheus: bool = PrometheusOpt,
    prometheus_file: Path | None = PrometheusFileOpt,
) -> None:
    """Control plane, revision, cacerts fingerprint and expiry, injection labels; exit 1 on problems.

    Example: airgap mesh status --context ctx1 --json

    Example: airgap mesh status --context ctx1 --context ctx2 --prometheus   (metrics even when it exits 1)
    """
    from airgap.connected.status import mesh_status

    check_outputs(as_json, prometheus)
    if prometheus or prometheus_file is not None:
        _status_with_metrics(context, parallel, as_json, prometheus, prometheus_file)
        return
    _run_status(context, parallel, as_json, mesh_status)


def _status_with_metrics(context: list[str], parallel: int, as_json: bool, prometheus: bool, path: Path | None) -> None:
    """``mesh status`` with ``--prometheus`` (metrics instead of the report on stdout, printed whatever
    the verdict; a context that could not be read has ``airgap_mesh_status_ok 0`` and no samples) or
    ``--prometheus-file`` (the report as usual, and the file). The file is written when every context
    was read (exit 0, or 1: problems found, which the file says); on exit 3/4/5 it is left as it was.
    Contexts are checked against the kubeconfig first: a mistyped one prints and writes nothing (exit 3)."""
    from airgap.connected.kube import resolve_context
    from airgap.connected.metrics import cacerts_metrics
    from airgap.connected.status import MeshStatus, mesh_status
    from airgap.core.expiry_metrics import Metrics
    from airgap.errors import AirgapError

    names = [resolve_context(c)[1] for c in _contexts(context)]
    read: dict[str, Metrics] = {}

    def check(kube: Any) -> MeshStatus:
        st = mesh_status(kube)
        read[kube.context] = cacerts_metrics(kube) + Metrics(status=((kube.context, st.ok),))
        return st

    def collected() -> Metrics:
        out = Metrics()
        for name in names:
            out += read.get(name, Metrics(status=((name, False),)))
        return out

    if not prometheus:
        try:
            _run_status(names, parallel, as_json, check)
        except AirgapError as exc:
            if exc.exit_code == 1 and len(read) == len(names):
                emit(collected(), stdout=False, path=path)  # complete: it records the problems found
            raise
        emit(collected(), stdout=False, path=path)
        return
    report = _read_fleet(names, parallel, check)
    emit(collected(), stdout=True, path=path if report.exit_code <= 1 else None)
    _raise_status(report)  # a failed cluster first, as the report's own order has it
    if len(names) > 1:
        trust = _fleet_trust(names, parallel)
        if not trust.ok:
            raise VerificationError(f"the clusters do not form one mesh: {trust.problems[0]}")


def _run_status(names: list[str], parallel: int, as_json: bool, check: Callable[[Any], Any]) -> None:
    """``mesh status``'s usual report (text or JSON) over ``names`` (the --context values), with
    ``check`` as the per-cluster read."""

    def problems(st: Any) -> str:
        return "; ".join(st.problems)

    trust = _fleet_trust(names, parallel) if len(_contexts(names)) > 1 else None
    _check_clusters(
        names,
        parallel,
        as_json,
        check=check,
        doc_key="status",
        words=("ok", "problems"),
        detail=problems,
        error=lambda st: f"context {st.context}: {len(st.problems)} problem(s): {problems(st)}",
        trust=trust,
    )


def _read_fleet(names: list[str], parallel: int, check: Callable[[Any], Any]) -> Any:
    """Run ``check`` on every context (one failure stops no other); the :class:`FleetReport`."""
    from airgap.connected.fleet import Outcome, run_fleet
    from airgap.connected.kube import connect

    def check_context(ctx: str) -> Outcome:
        with connect(ctx, policy=_policy(), notify=_notifier(f"[{ctx}] " if len(names) > 1 else "")) as kube:
            st = check(kube)
        detail = "; ".join(st.problems)
        return Outcome(ctx, 0 if st.ok else 1, "ok" if st.ok else "problems", detail, st)

    return run_fleet(names, check_context, parallel=parallel)


def _raise_status(report: Any) -> None:
    """Exit as ``mesh status`` would: one context, its own error line; a fleet, the worst code."""
    if len(report.outcomes) == 1:
        o = report.outcomes[0]
        if o.exit_code == 1 and o.value is not None:
            raise VerificationError(f"context {o.context}: {len(o.value.problems)} problem(s): {o.detail}")
        if o.exit_code != 0:
            from airgap.connected.fleet import FleetFailed

            raise FleetFailed(o.detail, o.exit_code)
        return
    report.raise_for_failures()


def _check_clusters(
    context: list[str],
    parallel: int,
    as_json: bool,
    *,
    check: Callable[[Any], Any],
    doc_key: str,
    words: tuple[str, str],
    detail: Callable[[Any], str],
    error: Callable[[Any], str],
    trust: Any = None,
) -> None:
    """Run a read-only ``check(kube)`` on one cluster or a fleet; its report has ok/as_dict()/text().

    One cluster: the report, then exit 1 (``error(report)``) when it is not ok. A fleet: each report,
    a summary table (``words`` for ok / not ok, ``detail``), the worst exit code.
    """
    from airgap.connected.fleet import Outcome, run_on_contexts
    from airgap.connected.kube import connect

    contexts = _contexts(context)

    def read_context(ctx: str | None) -> Any:
        with connect(ctx, policy=_policy(), notify=_notifier(f"[{ctx}] " if len(contexts) > 1 else "")) as kube:
            return check(kube)

    def show_one(rep: Any) -> None:
        _shown_as(as_json, lambda r: typer.echo(clean_lines(r.text())))(rep)  # names, labels read from the cluster
        if not rep.ok:
            raise VerificationError(error(rep))

    def row(ctx: str, rep: Any) -> Outcome:
        return Outcome(ctx, 0 if rep.ok else 1, words[0] if rep.ok else words[1], detail(rep), rep)

    def show_fleet(report: Any) -> None:
        if not as_json:
            for o in report.outcomes:
                if o.value is not None:
                    typer.echo(clean_lines(o.value.text()))
                    typer.echo("")
            if trust is not None:
                typer.echo("mesh trust:")
                typer.echo(clean_lines(trust.table()))
                typer.echo("")
        docs = {o.context: o.value.as_dict() for o in report.outcomes if o.value is not None}
        extra: dict[str, Any] = {doc_key: docs}
        if trust is not None:
            extra["trust"] = trust.as_dict()
        _finish_fleet(report, as_json, extra)  # raises on a failed cluster (its worst code)
        if trust is not None and not trust.ok:
            raise VerificationError(f"the clusters do not form one mesh: {trust.problems[0]}")

    run_on_contexts(contexts, read_context, show_one=show_one, row=row, show_fleet=show_fleet, parallel=parallel)


def _fleet_trust(context: list[str], parallel: int) -> Any:
    """The trust table of a fleet (read only): roots, meshID, clusterName, network, remote secrets."""
    from airgap.connected.kube import connect
    from airgap.connected.remote_secrets import (
        ClusterFacts,
        Endpoint,
        context_endpoint,
        fleet_trust,
        known_servers,
        read_facts,
    )
    from airgap.connected.trust import map_contexts
    from airgap.errors import Refused

    contexts = [c for c in _contexts(context) if c]

    def read_facts_of(ctx: str) -> ClusterFacts:
        try:
            endpoint = context_endpoint(ctx)
        except Refused:  # no CA data: still show the cluster; connect would refuse it
            endpoint = Endpoint(ctx, "", "")
        with connect(ctx, policy=_policy()) as kube:
            return read_facts(kube, endpoint)

    facts = map_contexts(contexts, read_facts_of, parallel)
    return fleet_trust([facts[c] for c in contexts], known_servers())


# -- mesh trust ------------------------------------------------------------------------------------


@app.command("trust")
def trust_cmd(
    context: list[str] = typer.Option(..., "--context", help="kubeconfig context of a cluster; repeat for a fleet."),
    parallel: int = typer.Option(8, "--parallel", min=1, max=MAX_PARALLEL, help="Clusters read at a time."),
    plan: Path | None = typer.Option(
        None, "--plan", help="The PKI folder: also print the ordered steps left of a root rotation (no passphrase)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Each cluster's issuing root and trusted roots; exit 0 when every cluster trusts every
    cluster's issuing root, 1 naming each pair that would reject each other. Writes nothing.

    Phases: A/{A} (issues under A, trusts A), A/{A,B}, B/{A,B}, B/{B}. With --plan PKI the steps
    left of the rotation follow: which bundle to create and import where, which 'ca rotate', when
    'ca rotate-root --finish' is allowed, which workloads to restart (docs/rotation.md).

    Example: airgap mesh trust --context ctx1 --context ctx2 --context ctx3

    Example: airgap mesh trust --context ctx1 --context ctx2 --plan pki
    """
    from airgap.connected.fleet import unique_contexts

    contexts = unique_contexts(context)
    if plan is not None:
        from airgap.connected.rotation import fleet_plan
        from airgap.offline.trustview import read_pki_trust

        result = fleet_plan(read_pki_trust(plan), contexts, parallel=parallel, policy=_policy())
        state, steps = result.state, result
    else:
        from airgap.connected.trust import evaluate, read_fleet_trust

        state, steps = evaluate(read_fleet_trust(contexts, parallel=parallel, policy=_policy())), None
    if as_json:
        doc = state.as_dict()
        if steps is not None:
            doc["plan"] = steps.as_dict()
        print_json(doc)
    else:
        typer.echo(state.table())  # every value from a cluster is shown through clean()
        if steps is not None:
            typer.echo("")
            typer.echo(clean_lines(steps.text()))
    if not state.whole:
        pairs = ", ".join(f"{a} and {b}" for a, b in state.pairs()) or state.problems()[0]
        raise VerificationError(f"the mesh is split: {pairs}")


# -- preflight (top level) -------------------------------------------------------------------------


def preflight(
    context: list[str] = typer.Option([], "--context", help=CONTEXT_HELP),
    release: Path | None = typer.Option(
        None, "--release", help="The extracted release to install: its Kubernetes range is checked (default ASM 1.8's)."
    ),
    parallel: int = typer.Option(8, "--parallel", min=1, max=MAX_PARALLEL, help=PARALLEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Check the guide's requirements on a cluster before installing; exit 1 when one fails.

    Example: airgap preflight --context ctx1 --release rel
    """
    from airgap.connected.preflight import preflight as base_preflight

    defaults = _release_defaults(release) if release is not None else None

    def run_preflight(kube: Any) -> Any:
        return base_preflight(kube, defaults)

    def failed(rep: Any) -> str:
        return ", ".join(c.name for c in rep.failed)

    _check_clusters(
        context,
        parallel,
        as_json,
        check=run_preflight,
        doc_key="preflight",
        words=("pass", "fail"),
        detail=failed,
        error=lambda rep: f"context {rep.context}: preflight failed: {failed(rep)}",
    )


def register_top_level(root: typer.Typer) -> None:
    """Commands that sit at the top level (``airgap preflight``)."""
    root.command("preflight")(preflight)
