"""``mesh status``: what runs, which revision, which CA, which namespaces inject.

Everything here is read from the cluster and so untrusted: the ``cacerts`` certificate is parsed
to report its fingerprint and expiry (not verified against a root: that is ``bundle verify``'s
job before import). Problems found make the command exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airgap.connected.cacerts import REQUIRED_KEYS
from airgap.connected.mesh import INGRESS_SELECTOR, ISTIOD_SELECTOR, NAMESPACE, NETWORK_LABEL, REV_LABEL, _pod_ready
from airgap.core.names import CA_CERT, CA_CRL, ROOT_CERT
from airgap.errors import InvalidInput

JSON = dict[str, Any]


@dataclass
class MeshStatus:
    context: str
    control_plane: dict[str, JSON]  # revision -> {"pods": n, "ready": m}
    ingress: JSON
    network: str | None
    cacerts: JSON | None
    namespaces: list[JSON]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # flagged, but not a failure (e.g. expiring soon)
    proxies: JSON = field(default_factory=lambda: {"pinned": 0, "flagged": []})  # see proxy_images()

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "ok": self.ok,
            "control_plane": self.control_plane,
            "ingress_gateway": self.ingress,
            "network": self.network,
            "cacerts": self.cacerts,
            "injection": self.namespaces,
            "proxy_images": self.proxies,
            "problems": self.problems,
            "warnings": self.warnings,
        }

    def text(self) -> str:
        lines = [f"context: {self.context}"]
        if self.control_plane:
            for rev, st in sorted(self.control_plane.items()):
                lines.append(f"istiod revision {rev}: {st['ready']}/{st['pods']} pods ready")
        else:
            lines.append("istiod: not running")
        lines.append(f"ingress gateway: {self.ingress['ready']}/{self.ingress['pods']} pods ready")
        lines.append(f"network: {self.network or '(no ' + NETWORK_LABEL + ' label)'}")
        if self.cacerts:
            c = self.cacerts
            lines.append(
                f"cacerts: {c['fingerprint']} ({c['subject']}), expires {c['not_after']} ({c['status']}), "
                f"bundle sequence {c.get('sequence') or 'unknown'}"
            )
        else:
            lines.append("cacerts: missing")
        for ns in self.namespaces:
            labels = ", ".join(
                f"{k}={v}"
                for k, v in (("istio.io/rev", ns["revision"]), ("istio-injection", ns["istio_injection"]))
                if v
            )
            lines.append(f"namespace {ns['namespace']}: {labels}")
        if self.namespaces:
            flagged = len(self.proxies["flagged"])
            lines.append(f"proxy images: {self.proxies['pinned']} pinned by digest, {flagged} flagged")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _secret_file(secret: JSON, key: str) -> bytes | None:
    """``key`` of the Secret, decoded (:func:`~airgap.connected.kube.secret_value`); absent is None,
    present but not base64 is exit 3."""
    from airgap.connected.kube import secret_value

    data = secret.get("data") or {}
    value = secret_value(data, key)
    if value is None and data.get(key):
        raise InvalidInput(f"cacerts {key} is not base64")
    return value


def _revocation(secret: JSON, cert: Any, roots: list[Any]) -> str | None:
    """The secret's own ``ca-crl.pem`` entry for its CA, if a root in ``root-cert.pem`` signed that CRL."""
    from cryptography import x509

    from airgap.core.x509 import revocation_entry

    pem = _secret_file(secret, CA_CRL)
    if pem is None:
        return None
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise InvalidInput("cacerts ca-crl.pem is not a PEM CRL") from exc
    signed = any(crl.issuer == r.subject and crl.is_signature_valid(r.public_key()) for r in roots)
    return revocation_entry(crl, cert) if signed else None


def _issued_by_any(cert: Any, roots: list[Any]) -> bool:
    """Whether one of ``roots`` signed ``cert`` (name and signature), as istiod's CA bundle check needs."""
    from cryptography.exceptions import InvalidSignature

    for r in roots:
        try:
            cert.verify_directly_issued_by(r)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _cacerts_info(secret: JSON) -> JSON:
    from airgap.core.x509 import fingerprint, load_cert_pem, load_certs_pem, status_of

    pem = _secret_file(secret, CA_CERT)
    if pem is None:
        raise InvalidInput("cacerts has no ca-cert.pem")
    cert = load_cert_pem(pem, source="cacerts ca-cert.pem")
    roots_pem = _secret_file(secret, ROOT_CERT)
    roots = load_certs_pem(roots_pem, source="cacerts root-cert.pem") if roots_pem else []
    ann = secret["metadata"].get("annotations") or {}
    revoked = _revocation(secret, cert, roots)
    return {
        "fingerprint": fingerprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "revoked" if revoked else status_of(cert),
        "revoked": revoked,
        "keys": sorted((secret.get("data") or {}).keys()),
        "signed_by_root": _issued_by_any(cert, roots) if roots else None,
        "sequence": ann.get("airgap.dev/sequence"),
        "signer": ann.get("airgap.dev/signer"),
        "bundle_id": ann.get("airgap.dev/bundle-id"),
        "roots": [
            {
                "fingerprint": fingerprint(r),
                "subject": r.subject.rfc4514_string(),
                "not_after": r.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "status": status_of(r),
            }
            for r in roots
        ],
    }


def mesh_status(kube: Any) -> MeshStatus:
    """Read the control plane, the CA secret and the injection labels of one cluster."""
    problems: list[str] = []
    warnings: list[str] = []
    plane = _control_plane(kube, problems)
    ingress = _ingress(kube, problems)
    ns_obj = kube.get("Namespace", NAMESPACE)
    network = ((ns_obj or {}).get("metadata", {}).get("labels") or {}).get(NETWORK_LABEL)
    cacerts = _cacerts_status(kube.get("Secret", "cacerts", NAMESPACE), problems, warnings)
    namespaces = _injection(kube, plane, problems)
    _remote_secrets(kube, problems, warnings)
    injected = [str(ns["namespace"]) for ns in namespaces if ns["revision"] or ns["istio_injection"] == "enabled"]
    proxies = proxy_images(kube, injected, problems, warnings)
    return MeshStatus(kube.context, plane, ingress, network, cacerts, namespaces, problems, warnings, proxies)


def _control_plane(kube: Any, problems: list[str]) -> dict[str, JSON]:
    """istiod pods by revision (``{"pods": n, "ready": m}``); none, or a revision with no pod ready, is a problem."""
    plane: dict[str, JSON] = {}
    for p in kube.list("Pod", NAMESPACE, selector=ISTIOD_SELECTOR):
        rev = str((p["metadata"].get("labels") or {}).get(REV_LABEL, "default"))
        st = plane.setdefault(rev, {"pods": 0, "ready": 0})
        st["pods"] += 1
        st["ready"] += 1 if _pod_ready(p) else 0
    if not plane:
        problems.append("no istiod pods in istio-system")
    for rev, st in plane.items():
        if st["ready"] == 0:
            problems.append(f"istiod revision {rev}: no pod ready")
    return plane


def _ingress(kube: Any, problems: list[str]) -> JSON:
    """The ingress gateway's pods; none ready is a problem."""
    ingress_pods = kube.list("Pod", NAMESPACE, selector=INGRESS_SELECTOR)
    ingress = {"pods": len(ingress_pods), "ready": sum(1 for p in ingress_pods if _pod_ready(p))}
    if ingress["ready"] == 0:
        problems.append("ingress gateway: no pod ready")
    return ingress


def _cacerts_status(secret: JSON | None, problems: list[str], warnings: list[str]) -> JSON | None:
    """The ``cacerts`` secret's CA as reported, or None when missing or unreadable (each a problem)."""
    if secret is None:
        problems.append("secret istio-system/cacerts is missing (istiod would use a self-signed CA)")
        return None
    try:
        cacerts = _cacerts_info(secret)
    except InvalidInput as exc:
        problems.append(f"secret istio-system/cacerts: {exc.message}")
        return None
    missing = [k for k in REQUIRED_KEYS if k not in cacerts["keys"]]
    if missing:
        problems.append(f"secret istio-system/cacerts lacks {', '.join(missing)}")
    if cacerts["signed_by_root"] is False:
        problems.append(
            "cacerts ca-cert.pem is not signed by any root in its root-cert.pem (changed by hand?): "
            "workloads would not trust istiod's certificates"
        )
    _ca_validity(cacerts, problems, warnings)
    _roots_validity(cacerts["roots"], problems, warnings)
    return cacerts


def _ca_validity(cacerts: JSON, problems: list[str], warnings: list[str]) -> None:
    """The CA certificate revoked, expired or not yet valid (problems), or expiring soon (a warning)."""
    if cacerts["status"] == "revoked":
        problems.append(
            f"cacerts CA certificate is revoked: its ca-crl.pem {cacerts['revoked']}; the officer runs "
            "'airgap ca rotate', then 'airgap bundle import --rotate' the new bundle"
        )
    elif cacerts["status"] in ("expired", "not-yet-valid"):
        problems.append(f"cacerts CA certificate is {cacerts['status']} (not after {cacerts['not_after']})")
    elif cacerts["status"] == "expiring":
        warnings.append(f"cacerts CA certificate expires within 90 days ({cacerts['not_after']}): rotate it")


def _roots_validity(roots: list[JSON], problems: list[str], warnings: list[str]) -> None:
    """Roots in ``root-cert.pem`` expired (problems) or expiring soon (warnings)."""
    for r in roots:
        if r["status"] == "expired":
            problems.append(f"root {r['fingerprint']} in cacerts root-cert.pem expired on {r['not_after']}")
        elif r["status"] == "expiring":
            warnings.append(
                f"root {r['fingerprint']} in cacerts root-cert.pem expires within 90 days "
                f"({r['not_after']}): rotate the root"
            )


def _injection(kube: Any, plane: dict[str, JSON], problems: list[str]) -> list[JSON]:
    """Namespaces with injection labels; both labels at once, or a revision that does not run, is a problem."""
    namespaces: list[JSON] = []
    for ns in kube.list("Namespace"):
        labels = ns["metadata"].get("labels") or {}
        ns_rev, legacy = labels.get(REV_LABEL), labels.get("istio-injection")
        if ns_rev is None and legacy is None:
            continue
        name = str(ns["metadata"]["name"])
        namespaces.append({"namespace": name, "revision": ns_rev, "istio_injection": legacy})
        if ns_rev is not None and legacy is not None:
            problems.append(f"namespace {name} has both istio-injection and istio.io/rev: injection fails")
        if ns_rev is not None and plane and ns_rev not in plane:
            problems.append(f"namespace {name} asks for revision {ns_rev}, which does not run")
    return namespaces


def _remote_secrets(kube: Any, problems: list[str], warnings: list[str]) -> None:
    """Remote secrets pointing at a server the kubeconfig does not know, or without TLS checks."""
    from pathlib import Path

    from airgap.connected.kube import KubeApiError
    from airgap.connected.remote_secrets import MULTICLUSTER_LABEL, known_servers, stray_remote_secrets

    try:
        held = kube.list("Secret", NAMESPACE, selector=f"{MULTICLUSTER_LABEL}=true")
    except KubeApiError as exc:
        if exc.status != 403:
            raise
        warnings.append("remote secrets in istio-system not checked: not allowed to list secrets (RBAC)")
        return
    path = getattr(kube, "kubeconfig", None)
    problems += stray_remote_secrets(kube.context, held, known_servers(Path(path) if path else None))


PROXY_CONTAINERS = ("istio-proxy", "istio-init")  # the sidecar and its iptables init (proxy_init), both proxyv2
PROXY_IMAGE_ANNOTATION = "sidecar.istio.io/proxyImage"


def _proxy_images(pod: JSON) -> list[tuple[str, str]]:
    """(container, image) of the pod's ``istio-proxy`` and ``istio-init`` (native sidecars are init containers)."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [
        (str(c["name"]), str(c.get("image", "")))
        for c in containers
        if isinstance(c, dict) and c.get("name") in PROXY_CONTAINERS
    ]


def proxy_images(kube: Any, namespaces: list[str], problems: list[str], warnings: list[str]) -> JSON:
    """Pods of the injected ``namespaces`` whose ``istio-proxy`` (or ``istio-init``) image is not
    ``…@sha256:<64 hex>``, or that carry ``sidecar.istio.io/proxyImage`` (a pod choosing its own
    proxy): each one a problem."""
    from airgap.connected.kube import KubeApiError
    from airgap.connected.pinning import PINNED_IMAGE

    pinned = 0
    flagged: list[JSON] = []
    for ns in namespaces:
        try:
            pods = kube.list("Pod", ns)
        except KubeApiError as exc:
            if exc.status != 403:
                raise
            warnings.append(f"pods in namespace {ns} not checked for pinned proxies: not allowed to list pods (RBAC)")
            continue
        for pod in pods:
            name = str(pod["metadata"]["name"])
            chosen = (pod["metadata"].get("annotations") or {}).get(PROXY_IMAGE_ANNOTATION)
            images = _proxy_images(pod)
            loose = [(c, i) for c, i in images if not PINNED_IMAGE.match(i)]
            if chosen is None and not loose:
                pinned += 1 if images else 0
                continue
            flagged.append(
                {"namespace": ns, "pod": name, "images": [i for _c, i in images], "proxy_image_annotation": chosen}
            )
            if chosen is not None:
                problems.append(f"pod {ns}/{name} sets {PROXY_IMAGE_ANNOTATION}={chosen}: it picks its own proxy")
            for container, image in loose:
                problems.append(f"pod {ns}/{name}: {container} image {image} is not pinned by digest")
    return {"pinned": pinned, "flagged": flagged}
