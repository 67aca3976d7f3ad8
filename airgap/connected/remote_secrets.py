"""``mesh connect``: join clusters into one multi-primary mesh with remote secrets.

For every ordered pair (A, B) of the given contexts, B's ``istio-system`` gets a Secret
``istio-remote-secret-NAME`` (labelled ``istio/multiCluster: "true"``, annotated
``networking.istio.io/cluster: NAME``) holding a kubeconfig that lets B's istiod read A's API:
A's server and CA data, as the jump host's kubeconfig has them, and the token of a reader
service account in A. This is what ``istioctl x create-remote-secret`` makes, one pair at a time.

Trusted: the jump host's kubeconfig (server URLs and CA data). Not trusted: everything read from
the clusters; it is only used as evidence for refusing, or copied (the reader token) into a
Secret of another cluster of the same mesh.

Steps, in order; nothing is written anywhere before step 3 passed for the whole fleet:

1. every context's endpoint: a server URL and CA data (refused: none, or insecure-skip-tls-verify);
2. every cluster's facts (read only): clusterName and meshID that ``mesh install`` recorded on
   ``istio-system`` (or ``--cluster-name CTX=NAME``), the network label, the roots in ``cacerts``;
3. the fleet check: names unique, one meshID, every cluster on a network, and every pair of
   clusters shares a root in ``cacerts`` and the fleet meets the trust invariant of
   :mod:`airgap.connected.trust` (else refused, exit 4, naming the pair and fingerprints);
4. in every cluster A: the reader ServiceAccount, ClusterRole and ClusterRoleBinding (created
   when missing) and a token Secret of type ``kubernetes.io/service-account-token`` (clusters from
   1.24 have none by default); wait for the token controller to fill it;
5. in every cluster B: create or update the remote secret of every other cluster A.

A re-run changes nothing; a rotated token or a changed server updates the secret in place.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airgap.connected.access import Need, Undo, require_all
from airgap.connected.kube import secret_value
from airgap.connected.mesh import CLUSTER_NAME_ANNOTATION, MESH_ID_ANNOTATION, NAMESPACE, NETWORK_LABEL
from airgap.connected.trust import ClusterTrust, TrustState, evaluate, map_contexts
from airgap.core.retry import poll_until
from airgap.errors import ClusterError, InvalidInput, NotFound, Refused

JSON = dict[str, Any]

MULTICLUSTER_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"
READER_SA = "istio-reader-service-account"  # the name istioctl and the istio-reader chart use
READER_ROLE = "istio-reader-airgap-istio-system"
TOKEN_SECRET = f"{READER_SA}-istio-remote-secret-token"  # istioctl's tokenSecretName(sa)
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105  (a Secret type, not a secret)
SECRET_PREFIX = "istio-remote-secret-"  # noqa: S105  (a name prefix)
READER_FILE = "40-istio-reader.yaml"  # in a cluster folder of the GitOps tree (after 30-istiod-service)
TOKEN_REQUEST_FILE = "41-istio-reader-token.yaml"  # noqa: S105  (a file name)

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# What istiod of another cluster reads (the istio-reader ClusterRole, reduced to read verbs).
READER_RULES: list[JSON] = [
    {
        "apiGroups": [
            "config.istio.io",
            "security.istio.io",
            "networking.istio.io",
            "authentication.istio.io",
            "rbac.istio.io",
        ],
        "resources": ["*"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [""],
        "resources": ["endpoints", "pods", "services", "nodes", "replicationcontrollers", "namespaces", "secrets"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
]


# -- 1. endpoints from the kubeconfig --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """How the jump host reaches a cluster: the server URL and the CA that signs its certificate."""

    context: str
    server: str
    ca_data: str  # base64 of the PEM CA bundle, as kubeconfigs carry it


def context_endpoint(context: str, kubeconfig: Path | None = None) -> Endpoint:
    """Step 1: the server and CA data of ``context`` in the kubeconfig (kubectl's merge order).

    Refused (exit 4) when the cluster entry has no CA data or file, or skips TLS verification: a
    remote secret without CA data cannot be verified by the other cluster's istiod.
    """
    from airgap.connected.kube import _existing_files, _read_kubeconfig, kubeconfig_path, resolve_context

    path, name = resolve_context(context, kubeconfig)
    files = _existing_files(kubeconfig_path(kubeconfig))
    cluster_name: str | None = None
    for f in files:
        for entry in _read_kubeconfig(f).get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                cluster_name = str((entry.get("context") or {}).get("cluster") or "")
                break
        if cluster_name is not None:
            break
    if not cluster_name:
        raise InvalidInput(f"context {name}: names no cluster in kubeconfig {path}")
    for f in files:
        for entry in _read_kubeconfig(f).get("clusters") or []:
            if not (isinstance(entry, dict) and entry.get("name") == cluster_name):
                continue
            cluster = entry.get("cluster") or {}
            server = cluster.get("server")
            if not isinstance(server, str) or not server.startswith("https://"):
                raise Refused(f"context {name}: cluster {cluster_name} has no https:// server in {f}")
            if cluster.get("insecure-skip-tls-verify"):
                raise Refused(
                    f"context {name}: cluster {cluster_name} uses insecure-skip-tls-verify; a remote secret needs "
                    "the cluster's CA data (set certificate-authority-data)"
                )
            return Endpoint(name, server, _ca_data(name, cluster, f))
    raise NotFound(f"context {name}: cluster {cluster_name} not found in kubeconfig {path}")


def _ca_data(context: str, cluster: JSON, source: Path) -> str:
    data = cluster.get("certificate-authority-data")
    if isinstance(data, str) and data:
        try:
            pem = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"context {context}: certificate-authority-data in {source} is not base64") from exc
    elif isinstance(cluster.get("certificate-authority"), str):
        ca_file = Path(cluster["certificate-authority"]).expanduser()
        if not ca_file.is_absolute():
            ca_file = source.parent / ca_file
        from airgap.core.files import read_capped

        pem = read_capped(ca_file, 1024 * 1024, "certificate-authority file")
    else:
        raise Refused(
            f"context {context}: the kubeconfig has no CA data for its cluster; a remote secret without it "
            "cannot be verified (set certificate-authority-data)"
        )
    from airgap.core.x509 import load_certs_pem

    load_certs_pem(pem, source=f"context {context} certificate authority")
    return base64.b64encode(pem).decode("ascii")


# -- 2. facts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterFacts:
    """What one cluster says about itself (untrusted, used to refuse), plus its endpoint."""

    endpoint: Endpoint
    name: str | None
    mesh_id: str | None
    network: str | None
    roots: dict[str, str]  # root fingerprint -> subject, from cacerts root-cert.pem
    remote_secrets: dict[str, str] = field(default_factory=dict)  # secret name -> server it points at
    remote_raw: tuple[JSON, ...] = field(default=(), repr=False, compare=False)  # those secrets, as read
    trust: ClusterTrust | None = None  # issuing and trusted roots (airgap.connected.trust)

    @property
    def context(self) -> str:
        return self.endpoint.context

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "cluster_name": self.name,
            "mesh_id": self.mesh_id,
            "network": self.network,
            "server": self.endpoint.server,
            "roots": sorted(self.roots),
            "remote_secrets": dict(sorted(self.remote_secrets.items())),
        }


def read_facts(kube: Any, endpoint: Endpoint, names: dict[str, str] | None = None) -> ClusterFacts:
    """Step 2 for one cluster: clusterName, meshID, network, cacerts roots, remote secrets held."""
    ns = kube.get("Namespace", NAMESPACE) or {}
    meta = ns.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    recorded = annotations.get(CLUSTER_NAME_ANNOTATION)
    given = (names or {}).get(endpoint.context)
    if recorded and given and recorded != given:
        raise Refused(
            f"context {endpoint.context}: --cluster-name says {given!r} but mesh install recorded {recorded!r}"
        )
    from airgap.connected.trust import cluster_trust

    trust = cluster_trust(endpoint.context, kube.get("Secret", "cacerts", NAMESPACE))
    roots = {fp: trust.subjects.get(fp, "") for fp in trust.trusted}
    held: dict[str, str] = {}
    raw = kube.list("Secret", NAMESPACE, selector=f"{MULTICLUSTER_LABEL}=true")
    for s in raw:
        sname = str(s["metadata"]["name"])
        held[sname] = _remote_server(s)
    return ClusterFacts(
        endpoint,
        recorded or given,
        annotations.get(MESH_ID_ANNOTATION),
        labels.get(NETWORK_LABEL),
        roots,
        held,
        tuple(raw),
        trust,
    )


def _remote_server(secret: JSON) -> str:
    """The server URL in a remote secret's kubeconfig ("" when it cannot be read)."""
    server = _remote_cluster(secret).get("server")
    return server if isinstance(server, str) else ""


def stray_remote_secrets(
    context: str, secrets: Sequence[JSON], servers: set[str] | None, fleet: set[str] | None = None
) -> list[str]:
    """What is wrong with the remote secrets one cluster holds (``istio/multiCluster=true`` in
    istio-system): a server no context of the jump host's kubeconfig names, TLS verification
    switched off, or (when ``fleet``, the clusterNames of the mesh, is known) a cluster outside it.
    Each of them lets whoever runs that endpoint feed this cluster's istiod endpoints."""
    found: list[str] = []
    for secret in secrets:
        name = str((secret.get("metadata") or {}).get("name"))
        cluster = _remote_cluster(secret)
        server = cluster.get("server")
        where = f"context {context}: remote secret {name}"
        if fleet is not None and name.removeprefix(SECRET_PREFIX) not in fleet:
            found.append(f"{where} is for cluster {name.removeprefix(SECRET_PREFIX)!r}, which is not in this mesh")
        if servers is None:
            continue  # the fleet's check only: the servers and TLS are each cluster's own report
        if not isinstance(server, str) or not server:
            found.append(f"{where} has no readable server")
        elif server not in servers:
            found.append(f"{where} points at {server}, a server no context of the kubeconfig knows")
        if cluster.get("insecure-skip-tls-verify") is True:
            found.append(f"{where} skips TLS verification (insecure-skip-tls-verify)")
    return found


def _remote_cluster(secret: JSON) -> JSON:
    """The ``cluster`` entry of a remote secret's kubeconfig ({} when it cannot be read)."""
    for key in secret.get("data") or {}:
        raw = secret_value(secret.get("data"), key)
        if raw is None:
            continue
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError:
            continue
        clusters = doc.get("clusters") if isinstance(doc, dict) else None
        if isinstance(clusters, list) and clusters and isinstance(clusters[0], dict):
            cluster = clusters[0].get("cluster")
            if isinstance(cluster, dict):
                return cluster
    return {}


# -- 3. the fleet check ----------------------------------------------------------------------------


def fleet_problems(facts: Sequence[ClusterFacts], *, mesh_id: str | None = None, roots: bool = True) -> list[str]:
    """Everything that keeps these clusters from forming one mesh; empty when they can.

    ``roots=False`` leaves out the pairwise shared-root check (``mesh status`` judges roots by the
    stricter trust invariant of :mod:`airgap.connected.trust` instead)."""
    problems: list[str] = []
    by_name: dict[str, list[str]] = {}
    for f in facts:
        if not f.name:
            problems.append(
                f"context {f.context}: no clusterName recorded on {NAMESPACE} (run mesh install, "
                f"or pass --cluster-name {f.context}=NAME)"
            )
        elif not _SECRET_NAME.fullmatch(SECRET_PREFIX + f.name) or len(SECRET_PREFIX + f.name) > 253:
            problems.append(
                f"context {f.context}: clusterName {f.name!r} cannot name a remote secret "
                f"({SECRET_PREFIX}NAME must be a lowercase DNS-1123 name)"
            )
        else:
            by_name.setdefault(f.name, []).append(f.context)
        if not f.network:
            problems.append(f"context {f.context}: namespace {NAMESPACE} has no {NETWORK_LABEL} label")
        if not f.roots:
            problems.append(f"context {f.context}: no roots in secret {NAMESPACE}/cacerts (import a bundle first)")
    problems += [
        f"cluster name {n!r} is used by several contexts: {', '.join(ctxs)}"
        for n, ctxs in by_name.items()
        if len(ctxs) > 1
    ]
    meshes = {f.mesh_id or mesh_id for f in facts}
    if mesh_id is not None and any(f.mesh_id not in (None, mesh_id) for f in facts):
        problems += [
            f"context {f.context}: meshID is {f.mesh_id!r}, not --mesh-id {mesh_id!r}"
            for f in facts
            if f.mesh_id not in (None, mesh_id)
        ]
    elif None in meshes:
        problems += [
            f"context {f.context}: no meshID recorded on {NAMESPACE} (run mesh install, or pass --mesh-id)"
            for f in facts
            if f.mesh_id is None
        ]
    elif len(meshes) > 1:
        problems.append("the clusters are in different meshes: " + ", ".join(f"{f.context}={f.mesh_id}" for f in facts))
    for i, a in enumerate(facts):
        for b in facts[i + 1 :] if roots else ():
            if a.roots and b.roots and not set(a.roots) & set(b.roots):
                problems.append(
                    f"clusters {a.context} and {b.context} share no root: {a.context} trusts "
                    f"{', '.join(sorted(a.roots))}; {b.context} trusts {', '.join(sorted(b.roots))}"
                )
    return problems


# -- 4. the reader in each source cluster ---------------------------------------------------------


def reader_manifests() -> list[tuple[str, JSON]]:
    """(kind, manifest) of the reader ServiceAccount, ClusterRole, binding and token Secret, in apply order."""
    labels = {"app": "istio-reader", "app.kubernetes.io/managed-by": "airgap"}
    return [
        (
            "ServiceAccount",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": READER_SA, "namespace": NAMESPACE, "labels": dict(labels)},
            },
        ),
        (
            "ClusterRole",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": READER_ROLE, "labels": dict(labels)},
                "rules": [dict(r) for r in READER_RULES],
            },
        ),
        (
            "ClusterRoleBinding",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": READER_ROLE, "labels": dict(labels)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": READER_SA, "namespace": NAMESPACE}],
            },
        ),
        (
            "Secret",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": TOKEN_SECRET,
                    "namespace": NAMESPACE,
                    "labels": dict(labels),
                    "annotations": {SA_NAME_ANNOTATION: READER_SA},
                },
                "type": TOKEN_TYPE,
            },
        ),
    ]


def read_token(kube: Any) -> str | None:
    """The reader's token from its token Secret, or None when it is missing or not filled yet."""
    secret = kube.get("Secret", TOKEN_SECRET, NAMESPACE)
    if secret is None:
        return None
    if (
        secret.get("type") != TOKEN_TYPE
        or (secret["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) != READER_SA
    ):
        raise Refused(
            f"context {kube.context}: secret {NAMESPACE}/{TOKEN_SECRET} exists but is not a token of "
            f"{READER_SA}; remove or rename it"
        )
    raw = secret_value(secret.get("data"), "token")
    return raw.decode("utf-8", "replace") if raw else None


def ensure_reader(
    kube: Any, *, timeout: float, poll: float, notify: Callable[[str], None], undo: Undo | None = None
) -> tuple[str, list[str]]:
    """Step 4: create what is missing of the reader in ``kube``; wait for the token; (token, created).
    Each object created is recorded in ``undo`` (removed again if the act fails later)."""
    from airgap.connected.kube import AlreadyExists

    created: list[str] = []
    for kind, manifest in reader_manifests():
        name = manifest["metadata"]["name"]
        ns = manifest["metadata"].get("namespace")
        if kube.get(kind, name, ns) is not None:
            continue
        try:
            made = kube.create(kind, manifest, ns)
            created.append(f"{kind} {name}")
            if undo is not None:
                undo.created(kind, made, ns)
        except AlreadyExists:
            pass
    asked = [False]

    def filled() -> str | None:
        if asked[0]:
            notify(f"context {kube.context}: waiting for the reader token")
        asked[0] = True
        return read_token(kube) or None

    token = poll_until(
        filled,
        timeout=timeout,
        poll=poll,
        on_timeout=lambda: ClusterError(
            f"context {kube.context}: the token controller did not fill secret {NAMESPACE}/{TOKEN_SECRET} "
            f"within {timeout:g}s"
        ),
    )
    return token, created


# -- 5. remote secrets -----------------------------------------------------------------------------


def remote_kubeconfig(name: str, endpoint: Endpoint, token: str) -> bytes:
    """The kubeconfig inside a remote secret, shaped as istioctl writes it (deterministic)."""
    doc = {
        "apiVersion": "v1",
        "clusters": [
            {"cluster": {"certificate-authority-data": endpoint.ca_data, "server": endpoint.server}, "name": name}
        ],
        "contexts": [{"context": {"cluster": name, "user": name}, "name": name}],
        "current-context": name,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": name, "user": {"token": token}}],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode("utf-8")


def remote_secret(name: str, endpoint: Endpoint, token: str) -> JSON:
    """The Secret that lets another cluster's istiod read cluster ``name`` (kept in that other cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_PREFIX + name,
            "namespace": NAMESPACE,
            "labels": {MULTICLUSTER_LABEL: "true"},
            "annotations": {CLUSTER_ANNOTATION: name},
        },
        "type": "Opaque",
        "data": {name: base64.b64encode(remote_kubeconfig(name, endpoint, token)).decode("ascii")},
    }


def _secret_matches(live: JSON, want: JSON) -> bool:
    meta, wmeta = live.get("metadata") or {}, want["metadata"]
    return (
        (live.get("data") or {}) == want["data"]
        and all((meta.get("labels") or {}).get(k) == v for k, v in wmeta["labels"].items())
        and all((meta.get("annotations") or {}).get(k) == v for k, v in wmeta["annotations"].items())
    )


def plan_remote_secret(kube: Any, want: JSON) -> str:
    """What applying ``want`` would do: "create", "update" or "unchanged" (reads only)."""
    live = kube.get("Secret", want["metadata"]["name"], NAMESPACE)
    if live is None:
        return "create"
    return "unchanged" if _secret_matches(live, want) else "update"


def apply_remote_secret(kube: Any, want: JSON, undo: Undo | None = None) -> str:
    """Create the remote secret (recorded in ``undo``), or bring its data, label and annotation to ``want``."""
    from airgap.connected.kube import AlreadyExists

    name = want["metadata"]["name"]
    if kube.get("Secret", name, NAMESPACE) is None:
        try:
            made = kube.create("Secret", want, NAMESPACE)
            if undo is not None:
                undo.created("Secret", made, NAMESPACE)
            return "created"
        except AlreadyExists:
            pass

    def change(obj: JSON) -> JSON | None:
        if _secret_matches(obj, want):
            return None
        meta = obj["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), **want["metadata"]["labels"]}
        meta["annotations"] = {**(meta.get("annotations") or {}), **want["metadata"]["annotations"]}
        obj["data"] = dict(want["data"])
        obj.pop("stringData", None)
        return obj

    _obj, changed = kube.update("Secret", name, change, NAMESPACE)
    return "updated" if changed else "unchanged"


# -- the whole act ---------------------------------------------------------------------------------


@dataclass
class ConnectResult:
    facts: list[ClusterFacts]
    readers: dict[str, list[str]]  # context -> reader objects created (or that would be)
    secrets: list[JSON]  # {"in": context, "for": cluster name, "action": ...}
    dry_run: bool = False
    written: list[str] = field(default_factory=list)  # --output-dir files
    strays: list[str] = field(default_factory=list)  # remote secrets outside the mesh, unknown or insecure

    def as_dict(self) -> JSON:
        return {
            "dry_run": self.dry_run,
            "clusters": [f.as_dict() for f in self.facts],
            "readers": self.readers,
            "remote_secrets": self.secrets,
            "written": self.written,
            "stray_remote_secrets": self.strays,
        }

    def text(self) -> str:
        verb = "would " if self.dry_run else ""
        lines = []
        for ctx, created in self.readers.items():
            if created:
                lines.append(f"context {ctx}: reader: {verb}create {', '.join(created)}")
        for s in self.secrets:
            lines.append(f"context {s['in']}: secret {s['secret']} (for cluster {s['for']}): {verb}{s['action']}")
        lines += [f"Wrote {w}" for w in self.written]
        lines += [f"warning: {w}" for w in self.strays]
        return "\n".join(lines)


def parse_name_map(pairs: Sequence[str]) -> dict[str, str]:
    """``CTX=NAME`` options into a mapping (a NAME is checked as a label value and a path element)."""
    from airgap.core.names import LABEL_VALUE_RE

    out: dict[str, str] = {}
    for p in pairs:
        ctx, sep, name = p.partition("=")
        if not sep or not ctx or not name:
            raise InvalidInput(f"--cluster-name {p!r}: expected CONTEXT=NAME")
        if not LABEL_VALUE_RE.match(name) or name in (".", ".."):
            raise InvalidInput(f"--cluster-name {p!r}: NAME must be 1-63 letters, digits, '-', '_' or '.'")
        out[ctx] = name
    return out


def connect_mesh(
    contexts: Sequence[str],
    *,
    kubeconfig: Path | None = None,
    names: dict[str, str] | None = None,
    mesh_id: str | None = None,
    dry_run: bool = False,
    output_dir: Path | None = None,
    parallel: int = 8,
    policy: Any = None,
    token_timeout: float = 60.0,
    poll: float = 0.5,
    notify: Callable[[str], None] = lambda _m: None,
    recipients: Sequence[str] | None = None,
    replace: bool = False,
) -> ConnectResult:
    """Steps 1-5 for the fleet of ``contexts`` (at least two).

    ``dry_run`` reads every cluster and reports what would change. ``output_dir`` writes the
    reader manifests and remote secrets per cluster (``clusters/CTX/``) instead of applying them;
    the readers' tokens must already exist (an applied reader), since a token is made by the
    cluster. The remote secrets are SOPS files encrypted to ``recipients``, or plaintext (the
    caller asked for ``--plaintext-secrets``); ``replace`` lets a changed one be rewritten.
    """
    from airgap.connected.fleet import unique_contexts
    from airgap.connected.kube import DEFAULT_POLICY, connect

    ordered = unique_contexts(contexts)
    if len(ordered) < 2:
        raise InvalidInput("mesh connect needs at least two different --context")
    endpoints = {c: context_endpoint(c, kubeconfig) for c in ordered}  # 1
    kubes = {c: connect(c, kubeconfig=kubeconfig, policy=policy or DEFAULT_POLICY, notify=notify) for c in ordered}
    undos = {c: Undo(kubes[c]) for c in ordered}
    try:
        facts_by = map_contexts(ordered, lambda c: read_facts(kubes[c], endpoints[c], names), parallel)  # 2
        facts = [facts_by[c] for c in ordered]
        by_name, strays = _fleet_check(facts, mesh_id, known_servers(kubeconfig), notify)  # 3
        if dry_run or output_dir is not None:
            tokens, readers = _existing_readers(kubes, ordered, parallel)
        else:
            _ask_connect(kubes, ordered, by_name)  # ask every cluster before the first write
            made = map_contexts(  # 4
                ordered,
                lambda c: ensure_reader(kubes[c], timeout=token_timeout, poll=poll, notify=notify, undo=undos[c]),
                parallel,
            )
            tokens, readers = {c: made[c][0] for c in ordered}, {c: made[c][1] for c in ordered}
        wanted = {
            b: [(a, remote_secret(by_name[a], endpoints[a], tokens[a] or "")) for a in ordered if a != b]
            for b in ordered
        }
        if output_dir is not None:
            missing = [c for c in ordered if not tokens[c]]
            if missing:
                raise Refused(
                    f"no reader token yet in {', '.join(missing)}: a token is made by the cluster; run "
                    "`airgap mesh connect` once against the clusters (or apply the reader and wait), then render"
                )
            written = _render(output_dir, ordered, wanted, recipients, replace)
            return ConnectResult(facts, readers, _rows(wanted, by_name, "rendered"), written=written, strays=strays)

        def apply(b: str) -> list[str]:
            if dry_run:
                return [plan_remote_secret(kubes[b], s) for _a, s in wanted[b]]
            return [apply_remote_secret(kubes[b], s, undos[b]) for _a, s in wanted[b]]  # 5

        actions = map_contexts(ordered, apply, parallel)
        rows = [
            {"in": b, "for": by_name[a], "secret": s["metadata"]["name"], "action": actions[b][i]}
            for b in ordered
            for i, (a, s) in enumerate(wanted[b])
        ]
        return ConnectResult(facts, readers, rows, dry_run=dry_run, strays=strays)
    except BaseException:
        for c in ordered:  # a failure after writing began: remove what this run created, everywhere
            undos[c].run(notify)
        raise
    finally:
        for k in kubes.values():
            k.close()


def _fleet_check(
    facts: list[ClusterFacts], mesh_id: str | None, servers: set[str], notify: Callable[[str], None]
) -> tuple[dict[str, str], list[str]]:
    """Step 3: refused (exit 4) unless the clusters can form one mesh; (context -> clusterName, the
    stray remote secrets, each named through ``notify``: another mesh's secret is not ours to delete)."""
    problems = fleet_problems(facts, mesh_id=mesh_id)
    # The trust invariant too (connected/trust.py, the one place that judges roots): clusters that
    # share a root can still reject each other, e.g. one issuing under B beside a peer trusting only A.
    problems += evaluate([f.trust for f in facts if f.trust is not None]).problems()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Refused(f"cannot connect these clusters into one mesh: {problems[0]}{more}; nothing was written")
    by_name = {f.context: str(f.name) for f in facts}
    strays = _strays(facts, set(by_name.values()), servers)
    for line in strays:
        notify(f"warning: {line}")
    return by_name, strays


def _existing_readers(
    kubes: dict[str, Any], ordered: Sequence[str], parallel: int
) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """A dry run or a render: each cluster's reader token as it is, and the reader objects a run would make."""
    tokens: dict[str, str | None] = map_contexts(ordered, lambda c: read_token(kubes[c]), parallel)
    missing = [f"{k} {m['metadata']['name']}" for k, m in reader_manifests()]
    return tokens, {c: ([] if tokens[c] else list(missing)) for c in ordered}


def _connect_needs(kube: Any, fleet: set[str]) -> list[Need]:
    """The writes mesh connect makes in one cluster: the missing parts of the reader, and the remote
    secrets of the other clusters (created, or updated when they exist)."""
    needs: list[Need] = []
    for kind, manifest in reader_manifests():
        ns = manifest["metadata"].get("namespace")
        if kube.get(kind, manifest["metadata"]["name"], ns) is None:
            group = "rbac.authorization.k8s.io" if kind.startswith("Cluster") else ""
            resource = {"ServiceAccount": "serviceaccounts", "Secret": "secrets"}.get(kind, kind.lower() + "s")
            needs.append(("create", resource, group, ns))
    for name in sorted(fleet):
        exists = kube.get("Secret", SECRET_PREFIX + name, NAMESPACE) is not None
        needs.append(("update" if exists else "create", "secrets", "", NAMESPACE))
    return needs


def _ask_connect(kubes: dict[str, Any], ordered: Sequence[str], by_name: dict[str, str]) -> None:
    """Every cluster is asked (SelfSubjectAccessReview) for every write before any is made."""
    plans = [(kubes[c], _connect_needs(kubes[c], {by_name[a] for a in ordered if a != c})) for c in ordered]
    require_all(plans)


def _strays(facts: Sequence[ClusterFacts], fleet: set[str], servers: set[str]) -> list[str]:
    """The remote secrets for clusters outside ``fleet`` (those inside are about to be rewritten)."""
    out: list[str] = []
    for f in facts:
        outside = [s for s in f.remote_raw if str(s["metadata"]["name"]).removeprefix(SECRET_PREFIX) not in fleet]
        out += stray_remote_secrets(f.context, outside, servers, fleet)
    return out


def _rows(wanted: dict[str, list[tuple[str, JSON]]], by_name: dict[str, str], action: str) -> list[JSON]:
    return [
        {"in": b, "for": by_name[a], "secret": s["metadata"]["name"], "action": action}
        for b, pairs in wanted.items()
        for a, s in pairs
    ]


def _render(
    out: Path,
    ordered: Sequence[str],
    wanted: dict[str, list[tuple[str, JSON]]],
    recipients: Sequence[str] | None,
    replace: bool,
) -> list[str]:
    """``clusters/CTX/`` of the GitOps tree (docs/gitops.md): the reader (40-…, 41-…) and the remote
    secrets of the other clusters (50-…; SOPS files with ``recipients``, else plaintext, mode 0600).

    Shared with ``bundle import`` and ``mesh install`` renders of the same tree: unchanged files are
    left as they are, a changed remote secret (a rotated token, a moved server) is refused unless
    ``replace``. Every folder name is checked before any cluster folder is touched.
    """
    from airgap.connected.gitops import RenderedFile, check_cluster_name, render_cluster, write_sops_config
    from airgap.connected.mesh import dump_yaml

    for ctx in ordered:
        check_cluster_name(ctx)
    reader = [m for k, m in reader_manifests() if k != "Secret"]
    token_request = reader_manifests()[-1][1]
    written: list[str] = []
    if recipients:
        write_sops_config(out, recipients)
    for ctx in ordered:
        files = [
            RenderedFile(READER_FILE, data=b"---\n".join(dump_yaml(m) for m in reader)),
            RenderedFile(TOKEN_REQUEST_FILE, data=dump_yaml(token_request)),
        ]
        for _a, s in wanted[ctx]:
            base = f"50-{s['metadata']['name']}"
            name, twin = (f"{base}.sops.yaml", f"{base}.yaml") if recipients else (f"{base}.yaml", f"{base}.sops.yaml")
            files.append(RenderedFile(name, secret=s, supersedes=(twin,)))
        done = render_cluster(out, ctx, files, recipients=recipients, replace=replace)
        written += [str(done.folder / n) for n, a in sorted(done.actions.items()) if a in ("created", "updated")]
    return written


# -- the fleet's trust table (mesh status with several contexts) ------------------------------------


def known_servers(kubeconfig: Path | None = None) -> set[str]:
    """Every server URL the jump host's kubeconfig names (a remote secret should point at one)."""
    from airgap.connected.kube import _existing_files, _read_kubeconfig, kubeconfig_path

    servers: set[str] = set()
    for f in _existing_files(kubeconfig_path(kubeconfig)):
        for entry in _read_kubeconfig(f).get("clusters") or []:
            server = (entry.get("cluster") or {}).get("server") if isinstance(entry, dict) else None
            if isinstance(server, str):
                servers.add(server)
    return servers


@dataclass
class TrustReport:
    """One row per cluster, and what keeps the fleet from being one mesh."""

    facts: list[ClusterFacts]
    servers: set[str]
    problems: list[str]
    invariant: TrustState | None = None  # the trust invariant (airgap.connected.trust), its table below

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> JSON:
        rows = []
        for f in self.facts:
            row = f.as_dict()
            row["remote_secrets"] = {
                name: {"server": server, "known": server in self.servers}
                for name, server in sorted(f.remote_secrets.items())
            }
            rows.append(row)
        doc: JSON = {"ok": self.ok, "clusters": rows, "problems": self.problems}
        if self.invariant is not None:
            doc["invariant"] = self.invariant.as_dict()
        return doc

    def table(self) -> str:
        from airgap.core.display import clean  # escapes what the clusters said

        head = ("CONTEXT", "CLUSTER", "MESH", "NETWORK", "REMOTE SECRETS")
        rows: list[tuple[str, ...]] = [head]
        for f in self.facts:
            secrets = ", ".join(
                f"{n.removeprefix(SECRET_PREFIX)}{'' if s in self.servers else ' (unknown server)'}"
                for n, s in sorted(f.remote_secrets.items())
            )
            rows.append(
                tuple(
                    clean(v)
                    for v in (
                        f.context,
                        f.name or "-",
                        f.mesh_id or "-",
                        f.network or "-",
                        secrets or "-",
                    )
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
        lines = [line.rstrip() for line in lines]
        lines += [f"problem: {clean(p)}" for p in self.problems]
        if self.invariant is not None:  # the roots: issuing and trusted, full fingerprints
            lines += ["", self.invariant.table()]
        return "\n".join(lines)


def fleet_trust(facts: Sequence[ClusterFacts], servers: set[str]) -> TrustReport:
    """The trust table: the connect checks, plus every cluster holding a remote secret for every other
    one, each pointing at a server the jump host knows."""
    problems = fleet_problems(facts, roots=False)  # roots: the invariant below, the one place that judges them
    names = {f.name for f in facts if f.name}
    problems += [p for f in facts for p in stray_remote_secrets(f.context, f.remote_raw, None, names)]
    for b in facts:
        for a in facts:
            if a is b or not a.name:
                continue
            secret = SECRET_PREFIX + a.name
            if secret not in b.remote_secrets:
                problems.append(f"context {b.context}: no remote secret for cluster {a.name} (run mesh connect)")
            elif b.remote_secrets[secret] != a.endpoint.server:
                problems.append(
                    f"context {b.context}: remote secret {secret} points at "
                    f"{b.remote_secrets[secret] or '(unreadable)'}, not {a.endpoint.server}"
                )
    invariant = evaluate([f.trust for f in facts if f.trust is not None])
    problems += invariant.problems()
    return TrustReport(list(facts), servers, problems, invariant)
