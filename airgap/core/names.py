"""Names both halves share: Istio's ``cacerts`` file names and the cluster-name rule.

A cluster's CA material has the same five file names in a PKI cluster folder, in a bundle (under
``cacerts/``) and as keys of the ``cacerts`` Secret istiod reads.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
CERT_CHAIN = "cert-chain.pem"
ROOT_CERT = "root-cert.pem"
CA_CRL = "ca-crl.pem"
CACERTS_REQUIRED = (CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT)
CACERTS_OPTIONAL = (CA_CRL,)

# Where istiod and its ``cacerts`` Secret live, and the prefix of every annotation airgap writes.
ISTIO_NAMESPACE = "istio-system"
ANNOTATION_PREFIX = "airgap.dev/"

# A Kubernetes label value: a cluster name is also a folder name, the L= of its intermediate and
# the ``cluster`` of a bundle manifest.
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = CLUSTER_NAME_RE  # a network, a meshID, a context made safe: the same rule

# An RFC 1123 DNS label (a namespace, a control plane revision): 1-63 lowercase letters, digits, '-'.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# The key types airgap makes (root, intermediates); one name per algorithm and size.
KeyType = Literal["rsa-4096", "rsa-3072", "ecdsa-p256", "ecdsa-p384"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name (bundle or release tarball) is unsafe to extract, or None.

    The one path-safety rule for member names: ``"empty"``, ``"nul"``, ``"absolute"`` (a leading
    ``/`` or a drive letter), ``"backslash"``, ``"dotdot"`` (a ``..`` component). Each format adds
    its own stricter rules (the bundle format allows only a few characters); callers word the error.
    """
    if not name:
        return "empty"
    if "\x00" in name:
        return "nul"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute"
    if "\\" in name:
        return "backslash"
    if ".." in name.split("/"):
        return "dotdot"
    return None


__all__ = [
    "CACERTS_OPTIONAL",
    "CACERTS_REQUIRED",
    "CA_CERT",
    "CA_CRL",
    "CA_KEY",
    "CERT_CHAIN",
    "CLUSTER_NAME_RE",
    "KEY_TYPES",
    "ROOT_CERT",
    "KeyType",
    "unsafe_member_name",
]
