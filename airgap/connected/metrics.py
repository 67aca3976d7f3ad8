"""``mesh status --prometheus``: the expiry of what a cluster's live ``cacerts`` holds, for monitoring.

Per cluster: ``ca-cert.pem`` (role ``intermediate``) and every certificate of ``root-cert.pem``
(role ``root``; ``next-root`` for a root that is not the issuing root -- the last certificate of
``cert-chain.pem`` -- and starts after it, as during a root rotation before the issuer moves), and
the ``ca-crl.pem`` nextUpdate when one of those roots signed it. The ``cluster`` label is the name
bundle import recorded on the Secret (``airgap.dev/cluster``: the PKI's folder name, as in
``ca list --prometheus``), else the clusterName mesh install recorded on ``istio-system``, else the
context name.

Trust: everything here is read from the cluster and untrusted: certificates are parsed (not
verified: that is ``bundle verify``'s and ``mesh trust``'s job), anything that does not decode or
parse is left out (``mesh status`` itself reports it as a problem), and the names become label
values that the exposition escapes. Read only: two GETs, nothing written.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from airgap.connected.cacerts import A_CLUSTER, NAMESPACE
from airgap.connected.kube import secret_value
from airgap.connected.mesh import CLUSTER_NAME_ANNOTATION
from airgap.core.expiry_metrics import CertSample, CrlSample, Metrics, crl_sample
from airgap.core.names import CA_CERT, CA_CRL, CERT_CHAIN, ROOT_CERT

JSON = dict[str, Any]


def _certs(secret: JSON, key: str) -> list[x509.Certificate]:
    pem = secret_value(secret.get("data"), key)
    if pem is None:
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def _crl(secret: JSON) -> x509.CertificateRevocationList | None:
    pem = secret_value(secret.get("data"), CA_CRL)
    if pem is None:
        return None
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError:
        return None


def _annotation(obj: JSON | None, key: str) -> str | None:
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(key)
    return value if isinstance(value, str) and value else None


def cluster_label(secret: JSON, namespace: JSON | None, context: str) -> str:
    """The cluster's name for monitoring: bundle import's, else mesh install's, else the context."""
    return _annotation(secret, A_CLUSTER) or _annotation(namespace, CLUSTER_NAME_ANNOTATION) or context


def _root_samples(secret: JSON, cluster: str) -> tuple[list[CertSample], list[x509.Certificate]]:
    roots = _certs(secret, ROOT_CERT)
    chain = _certs(secret, CERT_CHAIN)
    issuing = chain[-1] if chain else None
    samples = []
    for root in roots:
        later = issuing is not None and root != issuing and root.not_valid_before_utc > issuing.not_valid_before_utc
        samples.append(CertSample.of(root, cluster=cluster, role="next-root" if later else "root"))
    return samples, roots


def secret_metrics(secret: JSON, namespace: JSON | None, context: str) -> Metrics:
    """The samples of one ``cacerts`` Secret (its JSON as the API server returns it)."""
    cluster = cluster_label(secret, namespace, context)
    certs, roots = _root_samples(secret, cluster)
    certs += [CertSample.of(c, cluster=cluster, role="intermediate") for c in _certs(secret, CA_CERT)[:1]]
    crls: list[CrlSample] = []
    crl = _crl(secret)
    sample = crl_sample(crl, roots, cluster=cluster) if crl is not None else None
    if sample is not None:
        crls.append(sample)
    return Metrics(tuple(certs), tuple(crls))


def cacerts_metrics(kube: Any) -> Metrics:
    """Read ``istio-system/cacerts`` (and the namespace, for mesh install's clusterName) of one
    cluster; no Secret: no certificate samples."""
    secret = kube.get("Secret", "cacerts", NAMESPACE)
    if secret is None:
        return Metrics()
    return secret_metrics(secret, kube.get("Namespace", NAMESPACE), str(kube.context))


__all__ = ["cacerts_metrics", "cluster_label", "secret_metrics"]
