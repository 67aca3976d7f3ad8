"""``mesh install``: the guide's install steps for one cluster, from a verified release.

Trusted: the extracted release's ``RELEASE.json`` (written only after the release signature
verified) and the operator's flags and ``-f`` overlays. Not trusted: the release folder's files
on disk (``bin/istioctl`` is re-hashed against the record before anything is rendered or run),
and the cluster.

Steps, in order (each one refuses before the cluster is touched if it can):

1. re-check ``bin/istioctl`` (exit 1 if it changed or the record is missing);
2. render ``cluster.yaml`` (IstioOperator; ``-f`` overlays merged in the order given, and they
   may not contradict ``--revision``, ``--mesh-id``, ``--cluster-name`` or ``--network``); with
   ``--images`` every image pinned by digest from the private registry, which is then checked to
   serve each one (:mod:`airgap.connected.pinning`);
3. read ``istio-system``: an equal network label is left alone, a different one is refused
   unless ``force``; an ``istiod`` Service someone else made (no ``airgap.dev/managed-by``
   annotation, and other ports, selector, type or labels) is refused unless ``force``;
4. run ``bin/istioctl install --context CTX -f cluster.yaml -y``, output streamed, with a timeout;
5. label ``istio-system`` with ``topology.istio.io/network=NET``;
6. create or update the revisioned ``istiod`` Service: exactly the guide's, with only airgap's
   annotation (no stale ``last-applied-configuration``, no foreign labels);
7. wait until the istiod pods of the revision and the ingress gateway are Ready.

``--output-dir`` (:func:`render_install`) stops after step 2 and writes the manifests and the
exact istioctl command line instead, touching no cluster.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from airgap.connected.access import Need
from airgap.connected.cacerts import REQUIRED_KEYS
from airgap.connected.render import render_files
from airgap.core.atomic import write_new
from airgap.core.limits import MAX_OVERLAY
from airgap.core.names import ANNOTATION_PREFIX, DNS_LABEL_RE, ISTIO_NAMESPACE, LABEL_VALUE_RE
from airgap.core.retry import poll_until
from airgap.core.scratch import scratch_dir
from airgap.errors import ClusterError, InvalidInput, Refused, WouldOverwrite

if TYPE_CHECKING:
    from airgap.connected.pinning import ImagePins, RegistryFlags

JSON = dict[str, Any]

DEFAULT_REVISION = "asm-186-8"
DEFAULT_PROFILE = "asm-multicloud"
NAMESPACE = ISTIO_NAMESPACE
NETWORK_LABEL = "topology.istio.io/network"
REV_LABEL = "istio.io/rev"
ISTIOD_SELECTOR = "app=istiod"
INGRESS_SELECTOR = "app=istio-ingressgateway"

RENDERED_NAMESPACE = "20-istio-system-namespace.yaml"
RENDERED_OPERATOR = "cluster.yaml"
RENDERED_SERVICE = "30-istiod-service.yaml"
RENDERED_COMMAND = "istioctl-install.sh"
RENDERED_EASTWEST = "eastwest-gateway.yaml"
RENDERED_CROSS_NETWORK = "40-cross-network-gateway.yaml"
EASTWEST_SELECTOR = "istio=eastwestgateway"



# -- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshSettings:
    """The operator's choices for one cluster, validated."""

    cluster_name: str
    network: str
    mesh_id: str
    revision: str = DEFAULT_REVISION
    profile: str = DEFAULT_PROFILE
    overlays: tuple[Path, ...] = ()
    east_west: bool = False  # also the east-west gateway of the network (multi-network meshes)
    # istiod environment the release line needs (values.pilot.env): the catalog's reload flag,
    # so istiod picks up a rotated cacerts without a restart (docs/rotation.md)
    istiod_env: tuple[tuple[str, str], ...] = ()
    images: ImagePins | None = None  # --images: every image pinned by digest (airgap.connected.pinning)

    def __post_init__(self) -> None:
        for flag, value in (
            ("--cluster-name", self.cluster_name),
            ("--network", self.network),
            ("--mesh-id", self.mesh_id),
        ):
            concrete = value.replace("{context}", "c").replace("{cluster}", "c")  # checked per cluster again
            if not LABEL_VALUE_RE.match(concrete):
                raise InvalidInput(
                    f"{flag} {value!r}: must be 1-63 letters, digits, '-', '_' or '.', starting and ending "
                    "with a letter or digit (Kubernetes label value rules)"
                )
        if not DNS_LABEL_RE.match(self.revision):
            raise InvalidInput(f"--revision {self.revision!r}: must be a lowercase DNS label (e.g. asm-186-8)")
        if not self.profile or not re.match(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", self.profile):
            raise InvalidInput(f"--profile {self.profile!r}: not a profile name")

    def for_context(self, context: str) -> MeshSettings:
        """Settings for one cluster of a fleet: ``{context}`` / ``{cluster}`` in the name or network
        become the context name made a safe label value (:func:`airgap.connected.fleet.expand_context`)."""
        from airgap.connected.fleet import expand_context

        return MeshSettings(
            expand_context(self.cluster_name, context),
            expand_context(self.network, context),
            self.mesh_id,
            self.revision,
            self.profile,
            self.overlays,
            self.east_west,
            self.istiod_env,
            self.images,
        )


def load_overlay(path: Path) -> JSON:
    """One ``-f`` file: a YAML mapping (an IstioOperator fragment). Untrusted input, size-capped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_OVERLAY + 1)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read overlay: {exc.strerror}") from exc
    if len(data) > MAX_OVERLAY:
        raise InvalidInput(f"{path}: overlay larger than {MAX_OVERLAY} bytes")
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: overlay must be a YAML mapping (an IstioOperator)")
    if doc.get("kind", "IstioOperator") != "IstioOperator":
        raise InvalidInput(f"{path}: overlay kind is {doc.get('kind')!r}, expected IstioOperator")
    return doc


def deep_merge(base: Any, overlay: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``overlay`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def render_operator(settings: MeshSettings) -> JSON:
    """The guide's ``cluster.yaml``, with the overlays merged in the order given."""
    doc: JSON = {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {
            "profile": settings.profile,
            "revision": settings.revision,
            "values": {
                "global": {
                    "meshID": settings.mesh_id,
                    "multiCluster": {"clusterName": settings.cluster_name},
                    "network": settings.network,
                }
            },
        },
    }
    if settings.istiod_env:
        doc["spec"]["values"]["pilot"] = {"env": dict(settings.istiod_env)}
    pinned = {
        ("spec", "revision"): (settings.revision, "--revision"),
        ("spec", "values", "global", "meshID"): (settings.mesh_id, "--mesh-id"),
        ("spec", "values", "global", "multiCluster", "clusterName"): (settings.cluster_name, "--cluster-name"),
        ("spec", "values", "global", "network"): (settings.network, "--network"),
    }
    for path in settings.overlays:
        overlay = load_overlay(path)
        if settings.images is not None:
            from airgap.connected.pinning import refuse_image_overrides

            refuse_image_overrides(path, overlay)
        doc = deep_merge(doc, overlay)
        for keys, (want, flag) in pinned.items():
            node: Any = doc
            for k in keys:
                node = node.get(k) if isinstance(node, dict) else None
            if node != want:
                raise InvalidInput(
                    f"{path}: sets {'.'.join(keys)} to {node!r}, contradicting {flag} {want!r}; "
                    "drop it from the overlay"
                )
    if settings.images is not None:
        from airgap.connected.pinning import pin_operator

        doc = pin_operator(doc, settings.images)
    return doc


def istiod_service(revision: str) -> JSON:
    """The revisioned ``istiod`` Service, exactly as the guide (and the contract) have it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "istiod",
            "namespace": NAMESPACE,
            "labels": {REV_LABEL: revision, "app": "istiod", "istio": "pilot", "release": "istio"},
        },
        "spec": {
            "ports": [
                {"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                {"port": 15014, "name": "http-monitoring", "protocol": "TCP"},
            ],
            "selector": {"app": "istiod", REV_LABEL: revision},
        },
    }


def eastwest_operator(settings: MeshSettings) -> JSON:
    """The east-west gateway of the cluster's network, as Istio's multi-network guide generates it
    (``samples/multicluster/gen-eastwest-gateway.sh``), with the control plane's revision added: the
    1.8 script has no ``--revision``, and a gateway of another revision breaks (istio/istio#29234)."""
    net = settings.network
    doc: JSON = {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "eastwest"},
        "spec": {
            "revision": settings.revision,
            "profile": "empty",
            "components": {
                "ingressGateways": [
                    {
                        "name": "istio-eastwestgateway",
                        "label": {
                            "istio": "eastwestgateway",
                            "app": "istio-eastwestgateway",
                            NETWORK_LABEL: net,
                        },
                        "enabled": True,
                        "k8s": {
                            "env": [
                                {"name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat"},
                                {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": net},
                            ],
                            "service": {
                                "ports": [
                                    {"name": "status-port", "port": 15021, "targetPort": 15021},
                                    {"name": "tls", "port": 15443, "targetPort": 15443},
                                    {"name": "tls-istiod", "port": 15012, "targetPort": 15012},
                                    {"name": "tls-webhook", "port": 15017, "targetPort": 15017},
                                ]
                            },
                        },
                    }
                ]
            },
            "values": {
                "global": {
                    "meshID": settings.mesh_id,
                    "multiCluster": {"clusterName": settings.cluster_name},
                    "network": net,
                }
            },
        },
    }
    if settings.images is not None:  # the gateway's image is the proxy's, pinned like the sidecars'
        from airgap.connected.pinning import pin_operator

        doc = pin_operator(doc, settings.images, gateway_only=True)
    return doc


def cross_network_gateway() -> JSON:
    """The Gateway that exposes the cluster's services to other networks on 15443 (AUTO_PASSTHROUGH),
    as the multi-network guide's ``expose-services.yaml``."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "Gateway",
        "metadata": {"name": "cross-network-gateway", "namespace": NAMESPACE},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {
                    "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                    "tls": {"mode": "AUTO_PASSTHROUGH"},
                    "hosts": ["*.local"],
                }
            ],
        },
    }


def namespace_manifest(network: str, annotations: dict[str, str] | None = None) -> JSON:
    meta: JSON = {"name": NAMESPACE, "labels": {NETWORK_LABEL: network}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def istioctl_argv(istioctl: Path, context: str | None, cluster_yaml: Path) -> list[str]:
    """``bin/istioctl install --context CTX -f cluster.yaml -y`` (no ``--context`` when none was chosen)."""
    argv = [str(istioctl), "install"]
    if context:
        argv += ["--context", context]
    return [*argv, "-f", str(cluster_yaml), "-y"]


def dump_yaml(doc: JSON) -> bytes:
    """Deterministic YAML: insertion order (fixed by the code and the overlays), block style."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode("utf-8")


def verified_istioctl(release: Path) -> Path:
    """Step 1: ``bin/istioctl`` re-hashed against the release record (exit 1 if changed/missing)."""
    from airgap.core.release import check_release_file

    return check_release_file(release, "bin/istioctl")


# -- render (no cluster) -----------------------------------------------------------------------------


def rendered_files(settings: MeshSettings, istioctl: Path, context: str | None, out_dir: Path) -> dict[str, bytes]:
    operator = render_operator(settings)
    argv = istioctl_argv(istioctl, context, out_dir.absolute() / RENDERED_OPERATOR)
    lines = [shlex.join(argv)]
    if settings.east_west:
        lines.append(shlex.join(istioctl_argv(istioctl, context, out_dir.absolute() / RENDERED_EASTWEST)))
    script = (
        "#!/bin/sh\n"
        "# Rendered by airgap mesh install --output-dir: the exact istioctl commands it would run.\n"
        "set -eu\n" + "".join(f"{line}\n" for line in lines)
    )
    files = {
        RENDERED_NAMESPACE: dump_yaml(namespace_manifest(settings.network, identity_annotations(settings))),
        RENDERED_OPERATOR: dump_yaml(operator),
        RENDERED_SERVICE: dump_yaml(istiod_service(settings.revision)),
        RENDERED_COMMAND: script.encode("utf-8"),
    }
    if settings.east_west:
        files[RENDERED_EASTWEST] = dump_yaml(eastwest_operator(settings))
        files[RENDERED_CROSS_NETWORK] = dump_yaml(cross_network_gateway())
    return files


def render_install(release: Path, settings: MeshSettings, out_dir: Path, *, context: str | None = None) -> list[Path]:
    """``--output-dir``: check the release and the overlays, then write every manifest and the command.

    Nothing is written unless every check passed; existing files are never replaced (exit 4);
    the same inputs give byte-identical files. No cluster is contacted.
    """
    istioctl = verified_istioctl(release)
    out_dir = Path(out_dir)
    files = rendered_files(settings, istioctl, context, out_dir)
    return render_files(out_dir, files, modes={RENDERED_COMMAND: 0o755})


def _network_of(existing: bytes) -> str | None:
    try:
        doc = yaml.safe_load(existing)
        value = doc["metadata"].get("labels", {}).get(NETWORK_LABEL)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    return None if value is None else str(value)


def cluster_files(settings: MeshSettings, istioctl: Path, context: str | None, folder: Path) -> list[Any]:
    """The fleet layout's files for one cluster folder (:mod:`airgap.connected.gitops`).

    The Namespace is shared with ``bundle import``: its unlabelled one is brought to this
    network's label and annotations; any other difference (network, mesh ID) needs ``--force``.
    ``cluster.yaml``, ``eastwest-gateway.yaml`` and the command are istioctl's input, not
    kustomize resources (their names have no ``NN-`` prefix).
    """
    from airgap.connected.gitops import NAMESPACE_FILE, RenderedFile

    out: list[Any] = []
    for name, data in rendered_files(settings, istioctl, context, folder).items():
        if name == RENDERED_NAMESPACE:
            out.append(RenderedFile(NAMESPACE_FILE, data=data, replaceable=lambda old: _network_of(old) is None))
        else:
            out.append(RenderedFile(name, data=data, mode=0o755 if name == RENDERED_COMMAND else 0o644))
    return out


def render_tree(
    release: Path,
    settings: MeshSettings,
    root: Path,
    contexts: Sequence[str],
    *,
    recipients: Sequence[str] | None = None,
    force: bool = False,
    parallel: int = 8,
) -> Any:
    """``--output-dir`` in the fleet layout: ``root/clusters/CTX/`` per context (``{context}`` filled in;
    CTX is :func:`airgap.connected.fleet.context_label` of the context).

    ``recipients`` (``--sops-age``) writes ``root/.sops.yaml``; mesh install itself renders no
    Secret. Files with other content are replaced only with ``force``. Returns the fleet report.
    """
    from airgap.connected.fleet import Outcome, check_distinct, context_label, run_fleet
    from airgap.connected.gitops import check_cluster_name, cluster_folder, render_cluster, write_sops_config

    istioctl = verified_istioctl(release)
    check_distinct("{context}", contexts, "--context")  # one folder per context
    for c in contexts:
        check_cluster_name(context_label(c))  # the folder: the context made one safe path element
        settings.for_context(c)  # each cluster's name and network checked before anything is written
    if recipients:
        write_sops_config(root, recipients)

    def render_context(ctx: str) -> Any:
        mine = settings.for_context(ctx)
        folder = context_label(ctx)  # never '..', never a '/': an EKS ARN becomes arn-aws-eks-...
        files = cluster_files(mine, istioctl, ctx, cluster_folder(root, folder).absolute())
        done = render_cluster(root, folder, files, recipients=recipients, replace=force)
        return Outcome(ctx, 0, "rendered" if done.changed else "unchanged", done.summary(), done)

    return run_fleet(contexts, render_context, parallel=parallel)


# -- live install -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitPolicy:
    istioctl_timeout: float = 900.0
    ready_timeout: float = 600.0
    poll: float = 2.0


@dataclass
class InstallResult:
    context: str
    argv: list[str]
    network_label: str  # "set" | "unchanged" | "changed"
    service: str  # "created" | "updated" | "unchanged"
    ready: list[str] = field(default_factory=list)
    dry_run: bool = False
    east_west: str | None = None  # None (not asked) | "installed" | "would install"
    images: dict[str, str] | None = None  # --images: name -> R/NAME@sha256:..., each checked served by R

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "istioctl": self.argv,
            "network_label": self.network_label,
            "istiod_service": self.service,
            "ready_pods": self.ready,
            "dry_run": self.dry_run,
            "east_west_gateway": self.east_west,
            "images": self.images,
        }


def _network_action(kube: Any, network: str, force: bool) -> tuple[str, JSON | None]:
    """Step 3: what the network label needs ("set", "unchanged", "changed"), refusing a silent change."""
    ns = kube.get("Namespace", NAMESPACE)
    if ns is None:
        return "set", None
    current = (ns["metadata"].get("labels") or {}).get(NETWORK_LABEL)
    if current == network:
        return "unchanged", ns
    if current and not force:
        raise Refused(
            f"context {kube.context}: namespace {NAMESPACE} has {NETWORK_LABEL}={current}, not {network}; "
            "pass --force to change it"
        )
    return ("changed" if current else "set"), ns


def _apply_network_label(kube: Any, network: str, force: bool) -> str:
    from airgap.connected.kube import AlreadyExists

    action, ns = _network_action(kube, network, force)
    if action == "unchanged":
        return action
    if ns is None:
        try:
            kube.create("Namespace", namespace_manifest(network))
            return action
        except AlreadyExists:
            action, ns = _network_action(kube, network, force)
            if action == "unchanged":
                return action

    def change(obj: JSON) -> JSON | None:
        labels = obj["metadata"].setdefault("labels", {}) or {}
        current = labels.get(NETWORK_LABEL)
        if current == network:
            return None
        if current and not force:
            raise Refused(
                f"context {kube.context}: namespace {NAMESPACE} has {NETWORK_LABEL}={current}, not {network}; "
                "pass --force to change it"
            )
        labels[NETWORK_LABEL] = network
        obj["metadata"]["labels"] = labels
        return obj

    kube.update("Namespace", NAMESPACE, change)
    return action


CLUSTER_NAME_ANNOTATION = f"{ANNOTATION_PREFIX}cluster-name"
MESH_ID_ANNOTATION = f"{ANNOTATION_PREFIX}mesh-id"


def identity_annotations(settings: MeshSettings) -> dict[str, str]:
    """The clusterName and meshID this install gives the cluster, recorded on ``istio-system``."""
    return {CLUSTER_NAME_ANNOTATION: settings.cluster_name, MESH_ID_ANNOTATION: settings.mesh_id}


def record_identity(kube: Any, settings: MeshSettings) -> None:
    """Step 5b: annotate ``istio-system`` with the clusterName and meshID (for ``mesh connect``)."""
    want = identity_annotations(settings)

    def change(obj: JSON) -> JSON | None:
        current = obj["metadata"].get("annotations") or {}
        if all(current.get(k) == v for k, v in want.items()):
            return None
        obj["metadata"]["annotations"] = {**current, **want}
        return obj

    kube.update("Namespace", NAMESPACE, change)


MANAGED_ANNOTATION = "airgap.dev/managed-by"
MANAGED_BY = "airgap mesh install"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _ports(svc: JSON) -> list[tuple[Any, ...]]:
    return sorted(
        (p.get("name"), p.get("port"), p.get("targetPort", p.get("port")), p.get("protocol", "TCP"))
        for p in (svc.get("spec") or {}).get("ports") or []
    )


def _service_matches(live: JSON, want: JSON) -> bool:
    """``live`` is exactly the guide's Service as airgap leaves it: the guide's labels and no others,
    only airgap's annotation, the guide's selector and ports, type ClusterIP."""
    meta, spec = live.get("metadata") or {}, live.get("spec") or {}
    return (
        (meta.get("labels") or {}) == want["metadata"]["labels"]
        and (meta.get("annotations") or {}) == {MANAGED_ANNOTATION: MANAGED_BY}
        and spec.get("selector") == want["spec"]["selector"]
        and _ports(live) == _ports(want)
        and spec.get("type", "ClusterIP") == "ClusterIP"
    )


def foreign_service(live: JSON, want: JSON) -> str | None:
    """Why an ``istiod`` Service without airgap's annotation looks like someone else's (None: airgap's
    own, or one with exactly the guide's labels, selector and ports, safe to adopt)."""
    meta = live.get("metadata") or {}
    if (meta.get("annotations") or {}).get(MANAGED_ANNOTATION) == MANAGED_BY:
        return None
    why = []
    spec = live.get("spec") or {}
    if spec.get("selector") != want["spec"]["selector"] or _ports(live) != _ports(want):
        why.append("other ports or selector")
    if spec.get("type", "ClusterIP") != "ClusterIP":
        why.append(f"type {spec.get('type')}")
    labels = meta.get("labels") or {}
    extra = sorted(k for k in labels if labels[k] != want["metadata"]["labels"].get(k))
    if extra:
        why.append(f"label(s) {', '.join(extra)}")
    return "; ".join(why) or None


def check_istiod_service(kube: Any, live: JSON | None, revision: str, force: bool) -> None:
    """Refuse (exit 4, before anything is installed) to take over an ``istiod`` Service someone else
    made, unless ``force``."""
    why = None if live is None or force else foreign_service(live, istiod_service(revision))
    if why:
        raise WouldOverwrite(
            f"context {kube.context}: service {NAMESPACE}/istiod was made by someone else ({why}; no "
            f"{MANAGED_ANNOTATION} annotation); left untouched, nothing installed; pass --force to replace it "
            "with the guide's"
        )


def _guides_service(obj: JSON, want: JSON) -> JSON:
    """``obj`` (name, uid, resourceVersion, clusterIP kept) made exactly the guide's Service."""
    meta = obj.setdefault("metadata", {})
    meta["labels"] = dict(want["metadata"]["labels"])
    meta["annotations"] = {MANAGED_ANNOTATION: MANAGED_BY}  # no stale last-applied-configuration
    spec = obj.setdefault("spec", {})
    spec["ports"] = copy.deepcopy(want["spec"]["ports"])
    spec["selector"] = dict(want["spec"]["selector"])
    if spec.get("type", "ClusterIP") != "ClusterIP":
        spec["type"] = "ClusterIP"
        for key in ("externalTrafficPolicy", "healthCheckNodePort", "loadBalancerSourceRanges", "externalIPs"):
            spec.pop(key, None)
    return obj


def apply_istiod_service(kube: Any, revision: str, *, force: bool = False) -> str:
    """Step 6: create the Service, or bring airgap's (or, with ``force``, anyone's) to exactly the guide's."""
    from airgap.connected.kube import AlreadyExists

    want = istiod_service(revision)
    live = kube.get("Service", "istiod", NAMESPACE)
    if live is None:
        try:
            mine = copy.deepcopy(want)
            mine["metadata"]["annotations"] = {MANAGED_ANNOTATION: MANAGED_BY}
            kube.create("Service", mine, NAMESPACE)
            return "created"
        except AlreadyExists:
            pass

    def change(obj: JSON) -> JSON | None:
        if _service_matches(obj, want):
            return None
        check_istiod_service(kube, obj, revision, force)  # made by someone else meanwhile?
        return _guides_service(obj, want)

    _obj, changed = kube.update("Service", "istiod", change, NAMESPACE)
    return "updated" if changed else "unchanged"


def run_istioctl(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line: Callable[[str], None],
    context: str,
    kubeconfig: Path | None = None,
) -> None:
    """Step 4: run istioctl, streaming its output line by line; kill it after ``timeout`` seconds.

    istioctl reads the same kubeconfig we did (``kubeconfig``, else the inherited ``KUBECONFIG``).
    """
    from airgap.core.subproc import popen

    extra = {"KUBECONFIG": str(kubeconfig)} if kubeconfig is not None else {}
    try:  # scrubbed: istioctl never sees AIRGAP_PASSPHRASE, AIRGAP_PKCS11_PIN or any other secret
        proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=extra)
    except OSError as exc:
        raise ClusterError(f"context {context}: cannot run {argv[0]}: {exc.strerror}") from exc
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw.decode("utf-8", "replace").rstrip("\n"))
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        if timed_out.is_set():
            raise ClusterError(f"context {context}: istioctl install did not finish within {timeout:g}s; stopped")
        raise ClusterError(f"context {context}: istioctl install failed (exit {code}); see its output above")


def _pod_ready(pod: JSON) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def control_plane_state(kube: Any, revision: str, *, east_west: bool = False) -> tuple[list[str], list[str]]:
    """(ready pod names, what is missing or not Ready) for istiod of ``revision`` and the ingress
    gateway (and the east-west gateway when asked)."""
    ready: list[str] = []
    waiting: list[str] = []
    groups: tuple[tuple[str, str], ...] = (
        (f"istiod ({revision})", f"{ISTIOD_SELECTOR},{REV_LABEL}={revision}"),
        ("istio-ingressgateway", INGRESS_SELECTOR),
    )
    if east_west:
        groups += (("istio-eastwestgateway", EASTWEST_SELECTOR),)
    for label, selector in groups:
        pods = kube.list("Pod", NAMESPACE, selector=selector)
        if not pods:
            waiting.append(f"{label}: no pods yet")
        for p in pods:
            name = str(p["metadata"]["name"])
            (ready if _pod_ready(p) else waiting).append(name if _pod_ready(p) else f"{name}: not Ready")
    return ready, waiting


def wait_ready(
    kube: Any,
    revision: str,
    *,
    timeout: float,
    poll: float,
    notify: Callable[[str], None],
    east_west: bool = False,
) -> list[str]:
    """Step 7: poll until istiod (revision) and the gateways are Ready; report progress on change."""
    last: tuple[list[str], list[str]] | None = None
    waiting: list[str] = []

    def all_ready() -> list[str] | None:
        nonlocal last, waiting
        ready, waiting = control_plane_state(kube, revision, east_west=east_west)
        if (ready, waiting) != last:
            notify(
                f"context {kube.context}: {len(ready)} ready"
                + (f"; waiting for {', '.join(waiting)}" if waiting else "")
            )
            last = (ready, waiting)
        return ready if not waiting else None

    return poll_until(
        all_ready,
        timeout=timeout,
        poll=poll,
        on_timeout=lambda: ClusterError(
            f"context {kube.context}: control plane not Ready after {timeout:g}s: {'; '.join(waiting)}"
        ),
    )


def require_cacerts(kube: Any) -> None:
    """The guide creates the ``cacerts`` Secret before ``istioctl install``, and for a reason:
    istiod reads it when it starts, and without all four files it makes a self-signed root
    instead, which every workload certificate it signs then chains to (replacing it later means
    restarting istiod and every workload). So an install without it is refused (exit 4), before
    anything in the cluster changes; ``bundle import`` is the step that comes first."""
    secret = kube.get("Secret", "cacerts", NAMESPACE)
    data = (secret or {}).get("data") or {}
    missing = [k for k in REQUIRED_KEYS if not data.get(k)]
    if secret is None or missing:
        what = "is missing" if secret is None else f"lacks {', '.join(missing)}"
        raise Refused(
            f"context {kube.context}: secret {NAMESPACE}/cacerts {what}, so istiod would make a self-signed CA: "
            f"import the cluster's bundle first (airgap bundle import BUNDLE ... --context {kube.context})"
        )


def install_needs(service_exists: bool, east_west: bool) -> list[Need]:
    """What ``mesh install`` writes (itself, and istioctl's install of the control plane), for the
    reviews asked before the first write."""
    rbac, ns = "rbac.authorization.k8s.io", NAMESPACE
    needs: list[Need] = [
        ("update", "namespaces", "", None),  # the network label, the recorded identity
        ("update" if service_exists else "create", "services", "", ns),
        ("create", "deployments", "apps", ns),  # istioctl: istiod and the ingress gateway
        ("create", "serviceaccounts", "", ns),
        ("create", "configmaps", "", ns),
        ("create", "clusterroles", rbac, None),
        ("create", "clusterrolebindings", rbac, None),
        ("create", "customresourcedefinitions", "apiextensions.k8s.io", None),
        ("create", "mutatingwebhookconfigurations", "admissionregistration.k8s.io", None),
    ]
    if east_west:
        needs.append(("create", "gateways", "networking.istio.io", ns))
    return needs


def ask_install_fleet(
    contexts: Sequence[str], east_west: bool, *, kubeconfig: Path | None = None, policy: Any = None, parallel: int = 8
) -> None:
    """Several clusters: every one is asked for :func:`install_needs` before any is installed (exit 4)."""
    from airgap.connected.access import ask_every

    def needs_of(kube: Any) -> list[Need]:
        return install_needs(kube.get("Service", "istiod", NAMESPACE) is not None, east_west)

    ask_every(contexts, needs_of, kubeconfig=kubeconfig, policy=policy, parallel=parallel)


def install_mesh(
    release: Path,
    settings: MeshSettings,
    *,
    context: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    kubeconfig: Path | None = None,
    policy: Any = None,
    wait: WaitPolicy = WaitPolicy(),
    notify: Callable[[str], None] = lambda _m: None,
    on_output: Callable[[str], None] = lambda _m: None,
    registry: RegistryFlags | None = None,
) -> InstallResult:
    """Steps 1-7 against the cluster of ``context`` (absent: the current context).

    ``dry_run`` runs the checks (release, overlays, the ``cacerts`` Secret, the cluster's network
    label, and with ``settings.images`` the registry serving every pinned digest) and reports what
    would be done, changing nothing.
    """
    from airgap.connected.access import require
    from airgap.connected.kube import DEFAULT_POLICY, connect

    istioctl = verified_istioctl(release)  # 1
    operator = render_operator(settings)  # 2
    images = check_pinned(settings, operator, registry, notify)  # 2b: R serves every digest (before any change)
    with connect(context, kubeconfig=kubeconfig, policy=policy or DEFAULT_POLICY, notify=notify) as kube:
        require_cacerts(kube)  # 3: the plug-in CA is in place (else istiod makes its own root)
        action, _ns = _network_action(kube, settings.network, force)  # 3
        live_service = kube.get("Service", "istiod", NAMESPACE)
        check_istiod_service(kube, live_service, settings.revision, force)  # 3: not someone else's
        with scratch_dir("airgap-mesh-") as tmp:
            cluster_yaml = tmp / RENDERED_OPERATOR
            argv = istioctl_argv(istioctl, kube.context, cluster_yaml)
            if dry_run:
                return _planned(kube, settings, argv, action, live_service, images)
            require(kube, install_needs(live_service is not None, settings.east_west))  # 3c: ask first
            write_new(cluster_yaml, dump_yaml(operator))
            istioctl = verified_istioctl(release)  # re-check right before running: no swap in between
            notify(f"context {kube.context}: running {shlex.join(argv)}")
            run_istioctl(  # 4
                argv, timeout=wait.istioctl_timeout, on_line=on_output, context=kube.context, kubeconfig=kubeconfig
            )
            label = _apply_network_label(kube, settings.network, force)  # 5
            record_identity(kube, settings)  # 5b: what mesh connect reads back
            service = apply_istiod_service(kube, settings.revision, force=force)  # 6
            if settings.east_west:  # 6b: the network's east-west gateway and the services it exposes
                ew_yaml = Path(tmp) / RENDERED_EASTWEST
                write_new(ew_yaml, dump_yaml(eastwest_operator(settings)))
                ew_argv = istioctl_argv(verified_istioctl(release), kube.context, ew_yaml)
                notify(f"context {kube.context}: running {shlex.join(ew_argv)}")
                run_istioctl(
                    ew_argv,
                    timeout=wait.istioctl_timeout,
                    on_line=on_output,
                    context=kube.context,
                    kubeconfig=kubeconfig,
                )
                apply_cross_network_gateway(kube)
            ready = wait_ready(  # 7
                kube,
                settings.revision,
                timeout=wait.ready_timeout,
                poll=wait.poll,
                notify=notify,
                east_west=settings.east_west,
            )
    return InstallResult(
        kube.context,
        argv,
        label,
        service,
        ready,
        east_west="installed" if settings.east_west else None,
        images=images,
    )


def _planned(
    kube: Any, settings: MeshSettings, argv: list[str], action: str, live_service: JSON | None, images: Any
) -> InstallResult:
    """``--dry-run``: what a run would do, after the same access questions a run asks first."""
    from airgap.connected.access import require

    if live_service is None:
        svc = "create"
    else:
        svc = "unchanged" if _service_matches(live_service, istiod_service(settings.revision)) else "update"
    try:
        require(kube, install_needs(live_service is not None, settings.east_west))
    except Refused as exc:
        raise type(exc)(f"dry run: would refuse: {exc.message}") from exc
    ew = "would install" if settings.east_west else None
    return InstallResult(kube.context, argv, action, svc, [], dry_run=True, east_west=ew, images=images)


def check_pinned(
    settings: MeshSettings, operator: JSON, access: RegistryFlags | None, notify: Callable[[str], None]
) -> dict[str, str] | None:
    """With ``--images``: every pinned reference of the install (control plane and east-west gateway),
    after checking the registry serves each digest (exit 4 naming the missing ones; nothing changed)."""
    if settings.images is None:
        return None
    from airgap.connected.pinning import RegistryFlags, check_served, pinned_refs

    refs = pinned_refs(operator, settings.images)
    if settings.east_west:
        refs.update(pinned_refs(eastwest_operator(settings), settings.images, gateway_only=True))
    check_served(refs, access or RegistryFlags(), notify=notify)
    return refs


def apply_cross_network_gateway(kube: Any) -> str:
    """Create the cross-network Gateway, or bring its spec back to the guide's; "created"/"updated"/"unchanged"."""
    from airgap.connected.kube import AlreadyExists

    want = cross_network_gateway()
    name = want["metadata"]["name"]
    if kube.get("Gateway", name, NAMESPACE) is None:
        try:
            kube.create("Gateway", want, NAMESPACE)
            return "created"
        except AlreadyExists:
            pass

    def change(obj: JSON) -> JSON | None:
        if obj.get("spec") == want["spec"]:
            return None
        obj["spec"] = copy.deepcopy(want["spec"])
        return obj

    _obj, changed = kube.update("Gateway", name, change, NAMESPACE)
    return "updated" if changed else "unchanged"
