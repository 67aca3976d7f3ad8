"""Expiry for monitoring: certificates and CRLs in the Prometheus text exposition format.

``ca list --prometheus`` (the PKI folder) and ``mesh status --prometheus`` (each cluster's live
``cacerts``) build a :class:`Metrics` and print :func:`exposition`; ``--prometheus-file PATH``
hands the same bytes to :func:`write_textfile` for node_exporter's textfile collector.

The families (HELP and TYPE lines come from prometheus-client's exposition, never from here):

* ``x509_cert_not_after`` / ``x509_cert_not_before``: NotAfter / NotBefore in Unix seconds (the
  names x509-certificate-exporter uses), one sample per certificate, labels ``cluster``, ``role``
  (``root``, ``next-root``, ``intermediate``), ``serial`` (lowercase hex) and ``fingerprint``
  (SHA-256 of the DER, 64 lowercase hex);
* ``airgap_crl_next_update``: the CRL's nextUpdate in Unix seconds, labels ``cluster`` and
  ``issuer`` (the fingerprint of the root that signed it);
* ``airgap_mesh_status_ok`` (``mesh status`` only): 1 when the context's status has no problem,
  0 when it has one or could not be read, label ``context``.

Every value is a whole number of seconds taken from the certificate or CRL, never from the
clock, and samples are sorted: the same input gives the same bytes.

Trust: the certificates and CRLs are the caller's (parsed by it, not verified here); label values
may come from a cluster (annotations, context names) and are escaped by the exposition, so they
cannot add lines or samples. prometheus-client is imported only when metrics are rendered, so
``airgap --help`` and every command without ``--prometheus`` never load it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import write_replace
from airgap.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

ROLES = ("root", "next-root", "intermediate")
CERT_LABELS = ("cluster", "role", "serial", "fingerprint")
CRL_LABELS = ("cluster", "issuer")
NOT_AFTER = "x509_cert_not_after"
NOT_BEFORE = "x509_cert_not_before"
CRL_NEXT_UPDATE = "airgap_crl_next_update"
STATUS_OK = "airgap_mesh_status_ok"


def unix_seconds(when: dt.datetime) -> int:
    """A timezone-aware time as whole Unix seconds (certificate times have no fraction)."""
    return int(when.timestamp())


@dataclass(frozen=True, order=True)
class CertSample:
    """One certificate as monitoring sees it: who it belongs to, what it is, when it starts and ends."""

    cluster: str
    role: str
    serial: str
    fingerprint: str
    not_before: int
    not_after: int

    @classmethod
    def of(cls, cert: x509.Certificate, *, cluster: str, role: str) -> CertSample:
        if role not in ROLES:
            raise ValueError(f"unknown certificate role {role!r}")
        return cls(
            cluster=cluster,
            role=role,
            serial=format(cert.serial_number, "x"),
            fingerprint=cx.fingerprint(cert),
            not_before=unix_seconds(cert.not_valid_before_utc),
            not_after=unix_seconds(cert.not_valid_after_utc),
        )

    def labels(self) -> list[str]:
        return [self.cluster, self.role, self.serial, self.fingerprint]


@dataclass(frozen=True, order=True)
class CrlSample:
    """One CRL: the cluster it is published for ("" for the PKI's master copy), its signing root, nextUpdate."""

    cluster: str
    issuer: str
    next_update: int

    def labels(self) -> list[str]:
        return [self.cluster, self.issuer]


def load_crl_pem(data: bytes, *, source: str) -> x509.CertificateRevocationList:
    """A PEM CRL, or exit 3 naming ``source``."""
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not a valid PEM CRL") from exc


def crl_sample(
    crl: x509.CertificateRevocationList, roots: Iterable[x509.Certificate], *, cluster: str
) -> CrlSample | None:
    """The CRL's sample when one of ``roots`` signed it and it has a nextUpdate; else None (a CRL
    no trusted root signed is nobody's to renew)."""
    if crl.next_update_utc is None:
        return None
    for root in roots:
        if crl.issuer == root.subject and crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
            return CrlSample(cluster, cx.fingerprint(root), unix_seconds(crl.next_update_utc))
    return None


@dataclass(frozen=True)
class Metrics:
    """Everything one run exports. The same labels twice give one sample: a certificate's labels
    include its fingerprint (so its values too); of two CRLs for one cluster and root, the earlier
    nextUpdate is kept; of two statuses for one context, not ok wins."""

    certs: tuple[CertSample, ...] = ()
    crls: tuple[CrlSample, ...] = ()
    status: tuple[tuple[str, bool], ...] = ()  # (context, ok), mesh status only

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(self.certs + other.certs, self.crls + other.crls, self.status + other.status)

    def families(self) -> Iterator[Metric]:
        """The metric families in a fixed order, samples sorted and de-duplicated."""
        from prometheus_client.core import GaugeMetricFamily

        certs = sorted(set(self.certs))
        after = GaugeMetricFamily(NOT_AFTER, "Certificate NotAfter in Unix seconds.", labels=CERT_LABELS)
        before = GaugeMetricFamily(NOT_BEFORE, "Certificate NotBefore in Unix seconds.", labels=CERT_LABELS)
        for c in certs:
            after.add_metric(c.labels(), c.not_after)
            before.add_metric(c.labels(), c.not_before)
        yield after
        yield before
        crl = GaugeMetricFamily(CRL_NEXT_UPDATE, "CRL nextUpdate in Unix seconds.", labels=CRL_LABELS)
        soonest: dict[tuple[str, str], int] = {}
        for s in self.crls:  # two copies for one cluster and root: the one that runs out first counts
            key = (s.cluster, s.issuer)
            soonest[key] = min(s.next_update, soonest.get(key, s.next_update))
        for key, value in sorted(soonest.items()):
            crl.add_metric(list(key), value)
        yield crl
        if self.status:
            ok = GaugeMetricFamily(
                STATUS_OK, "1 when mesh status found no problem on the context, else 0.", labels=("context",)
            )
            worst: dict[str, bool] = {}
            for context, good in self.status:
                worst[context] = good and worst.get(context, True)
            for context, good in sorted(worst.items()):
                ok.add_metric([context], 1 if good else 0)
            yield ok


class _Collector:
    """A prometheus-client custom collector yielding this run's families (a registry of its own)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


def exposition(metrics: Metrics) -> bytes:
    """The Prometheus text format (0.0.4) of ``metrics``, from prometheus-client's own exposition."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return generate_latest(registry)


def write_textfile(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a hidden temp in the same folder, fsync, rename), the way
    node_exporter's textfile collector needs: it never sees half a file, and the temp's name does
    not end in ``.prom`` so the collector never reads it.

    A symlink or anything but a regular file at ``path`` is :class:`WouldOverwrite` (exit 4,
    :mod:`airgap.core.atomic` never writes through a link); the folder must exist (:class:`NotFound`,
    exit 3: a mistyped path creates nothing) and be writable (exit 3).
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise NotFound(f"{p.parent}: no such folder (--prometheus-file writes into an existing folder)")
    if not os.access(p.parent, os.W_OK):
        raise InvalidInput(f"{p.parent}: folder is not writable")
    write_replace(p, data, mode=0o644)


__all__ = [
    "CERT_LABELS",
    "CRL_LABELS",
    "CRL_NEXT_UPDATE",
    "NOT_AFTER",
    "NOT_BEFORE",
    "ROLES",
    "STATUS_OK",
    "CertSample",
    "CrlSample",
    "Metrics",
    "crl_sample",
    "exposition",
    "load_crl_pem",
    "unix_seconds",
    "write_textfile",
]
