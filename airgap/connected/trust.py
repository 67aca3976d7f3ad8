"""The fleet's trust invariant, computed in one place: who issues under which root, who trusts it.

Per cluster: its **issuing root** (the SHA-256 fingerprint of the DER of the last certificate of
its ``cacerts`` ``cert-chain.pem``) and its **trusted roots** (every certificate of
``root-cert.pem``). The mesh is **whole** when every cluster trusts every cluster's issuing root:
then a workload of any cluster accepts the certificate of a workload of any other. Two clusters of
which one does not trust the other's issuing root **reject each other** (mTLS checks both ends).

:func:`evaluate` is a pure function over per-cluster facts (:class:`ClusterTrust`); ``mesh
trust``, ``mesh status`` with several contexts and the gate of ``bundle import --rotate`` all use
it. :func:`cluster_trust` reads the facts from a ``cacerts`` Secret, :func:`read_trust` from a
live cluster.

Trust: everything read from a cluster is untrusted. It is only parsed (certificates, never
verified here: a bundle's chain was verified on import) and used to report or to refuse; subjects
shown are escaped by the caller's :func:`airgap.core.display.clean`. Fingerprints are 64
lowercase hex characters, never shortened.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airgap.connected.kube import secret_value
from airgap.core.names import CERT_CHAIN, ROOT_CERT
from airgap.errors import AirgapError

JSON = dict[str, Any]
T = TypeVar("T")

NAMESPACE = "istio-system"
SECRET_NAME = "cacerts"  # noqa: S105 - a Secret's name
ROOT_CONFIGMAP = "istio-ca-root-cert"  # what istiod publishes into every namespace
ROOT_CONFIGMAP_KEY = ROOT_CERT  # istiod publishes the root under the cacerts file name


@dataclass(frozen=True)
class ClusterTrust:
    """One cluster's trust facts. ``issuing`` is None when its ``cacerts`` cannot say (``problem``)."""

    context: str
    issuing: str | None
    trusted: tuple[str, ...]
    subjects: Mapping[str, str] = field(default_factory=dict)  # fingerprint -> subject (display only)
    problem: str | None = None
    not_before: Mapping[str, str] = field(default_factory=dict)  # fingerprint -> notBefore (orders the letters)

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "issuing_root": self.issuing,
            "trusted_roots": list(self.trusted),
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Rejection:
    """``rejecter`` does not trust ``issuer``'s issuing root ``root``."""

    issuer: str
    rejecter: str
    root: str


@dataclass(frozen=True)
class TrustState:
    """The invariant over a set of clusters: the table, the rejections, the pairs they split."""

    clusters: tuple[ClusterTrust, ...]
    labels: Mapping[str, str]  # root fingerprint -> letter (A, B, …), stable for one report
    rejections: tuple[Rejection, ...]

    @property
    def unreadable(self) -> list[ClusterTrust]:
        return [c for c in self.clusters if c.issuing is None]

    @property
    def whole(self) -> bool:
        return not self.rejections and not self.unreadable

    def label(self, fp: str | None) -> str:
        return "?" if fp is None else self.labels.get(fp, "?")

    def phase(self, context: str) -> str:
        """``A/{A,B}``: the issuing root's letter / the trusted roots' letters."""
        c = self.cluster(context)
        trusted = ",".join(sorted({self.label(r) for r in c.trusted}, key=_letter_key))
        return f"{self.label(c.issuing)}/{{{trusted}}}"

    def cluster(self, context: str) -> ClusterTrust:
        return next(c for c in self.clusters if c.context == context)

    def pairs(self) -> list[tuple[str, str]]:
        """The pairs of contexts that would reject each other, in the order the clusters were given."""
        order = {c.context: i for i, c in enumerate(self.clusters)}
        seen: dict[tuple[str, str], None] = {}
        for r in self.rejections:
            if r.issuer == r.rejecter:
                continue  # a cluster that does not trust itself: a problem of its own, not a pair
            a, b = sorted((r.issuer, r.rejecter), key=order.__getitem__)
            seen.setdefault((a, b), None)
        return sorted(seen, key=lambda p: (order[p[0]], order[p[1]]))

    def involving(self, contexts: Sequence[str]) -> list[Rejection]:
        wanted = set(contexts)
        return [r for r in self.rejections if r.issuer in wanted or r.rejecter in wanted]

    def mend(self, r: Rejection) -> str:
        """What to import where so that ``r`` is gone."""
        return (
            f"import into {r.rejecter} a bundle whose root-cert.pem holds root {self.label(r.root)} ({r.root}), "
            f"or move {r.issuer} back to a root {r.rejecter} trusts"
        )

    def problems(self, rejections: Sequence[Rejection] | None = None) -> list[str]:
        """One line per split pair (naming both directions where both fail), then unreadable clusters."""
        rs = self.rejections if rejections is None else tuple(rejections)
        lines = [
            f"{r.issuer} ({self.phase(r.issuer)}) does not trust its own issuing root {self.label(r.root)} "
            f"({r.root}): its root-cert.pem does not hold the root its cert-chain.pem ends at"
            for r in rs
            if r.issuer == r.rejecter
        ]
        for a, b in self.pairs():
            mine = [r for r in rs if {r.issuer, r.rejecter} == {a, b} and r.issuer != r.rejecter]
            if not mine:
                continue
            why = "; ".join(
                f"{r.rejecter} ({self.phase(r.rejecter)}) does not trust {r.issuer}'s issuing root "
                f"{self.label(r.root)} ({r.root}): {self.mend(r)}"
                for r in mine
            )
            lines.append(f"{a} and {b} would reject each other: {why}")
        lines += [f"{c.context}: {c.problem}" for c in self.unreadable]
        return lines

    def legend(self) -> list[tuple[str, str, str]]:
        """(letter, fingerprint, subject) for every root in the table."""
        subjects: dict[str, str] = {}
        for c in self.clusters:
            subjects.update(c.subjects)
        return [(lbl, fp, subjects.get(fp, "")) for fp, lbl in sorted(self.labels.items(), key=_by_letter)]

    def table(self) -> str:
        """CONTEXT, PHASE, ISSUING ROOT, TRUSTED ROOTS (full fingerprints), the roots, the verdict."""
        from airgap.core.display import clean

        rows = [("CONTEXT", "PHASE", "ISSUING ROOT", "TRUSTED ROOTS")]
        for c in self.clusters:
            rows.append((clean(c.context), self.phase(c.context), c.issuing or "-", ",".join(c.trusted) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=False)) + "  " + r[3] for r in rows]
        lines += [f"root {lbl}: {fp} {clean(subj)}".rstrip() for lbl, fp, subj in self.legend()]
        if self.whole:
            lines.append("whole: every cluster trusts every cluster's issuing root")
        else:
            lines += [f"split: {clean(p)}" for p in self.problems()]
        return "\n".join(line.rstrip() for line in lines)

    def as_dict(self) -> JSON:
        return {
            "whole": self.whole,
            "clusters": [{**c.as_dict(), "phase": self.phase(c.context)} for c in self.clusters],
            "roots": [{"label": lbl, "fingerprint": fp, "subject": subj} for lbl, fp, subj in self.legend()],
            "pairs": [list(p) for p in self.pairs()],
            "rejections": [
                {"issuer": r.issuer, "rejecter": r.rejecter, "root": r.root, "mend": self.mend(r)}
                for r in self.rejections
            ],
            "problems": self.problems(),
        }


def _letter_key(label: str) -> tuple[int, str]:
    return (len(label), label)


def _by_letter(item: tuple[str, str]) -> tuple[int, str]:
    return _letter_key(item[1])


def _nth_letter(i: int) -> str:
    """A, B, … Z, then R27, R28, … (a fleet never holds that many roots, but a cluster may claim to)."""
    return string.ascii_uppercase[i] if i < 26 else f"R{i + 1}"


def root_labels(clusters: Sequence[ClusterTrust], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """A letter per root: ``known`` first (e.g. the PKI's root ``A`` and next root ``B``), then the
    others oldest first (notBefore), ties in order of appearance (issuing roots, then trusted roots)."""
    labels = dict(known or {})
    used = set(labels.values())
    nth = _nth_letter
    seen = [c.issuing for c in clusters if c.issuing] + [r for c in clusters for r in c.trusted]
    born: dict[str, str] = {}
    for c in clusters:
        born.update(c.not_before)
    order = sorted(dict.fromkeys(seen), key=lambda fp: (born.get(fp, "~"), seen.index(fp)))
    i = 0
    for fp in order:
        if fp in labels:
            continue
        while nth(i) in used:
            i += 1
        labels[fp] = nth(i)
        used.add(nth(i))
    return labels


def evaluate(clusters: Sequence[ClusterTrust], known: Mapping[str, str] | None = None) -> TrustState:
    """The invariant: for every ordered pair (issuer, rejecter), whether the rejecter trusts the
    issuer's issuing root (a cluster is checked against itself too). Pure."""
    rejections = [
        Rejection(a.context, b.context, a.issuing)
        for a in clusters
        if a.issuing is not None
        for b in clusters
        if b.issuing is not None and a.issuing not in b.trusted
    ]
    return TrustState(tuple(clusters), root_labels(clusters, known), tuple(rejections))


# -- facts from a cacerts Secret -------------------------------------------------------------------


def pem_facts(chain_pem: bytes | None, roots_pem: bytes | None, *, context: str) -> ClusterTrust:
    """:class:`ClusterTrust` from ``cert-chain.pem`` and ``root-cert.pem`` bytes (either may be None)."""
    from airgap.core.x509 import fingerprint, load_certs_pem

    subjects: dict[str, str] = {}
    born: dict[str, str] = {}
    issuing: str | None = None
    problem: str | None = None
    trusted: list[str] = []
    try:
        for c in load_certs_pem(roots_pem or b"", source=f"context {context} cacerts root-cert.pem"):
            fp = fingerprint(c)
            subjects[fp] = c.subject.rfc4514_string()
            born[fp] = c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            if fp not in trusted:
                trusted.append(fp)
    except AirgapError as exc:
        problem = f"cacerts root-cert.pem: {exc.message}" if roots_pem else "cacerts has no root-cert.pem"
    try:
        chain = load_certs_pem(chain_pem or b"", source=f"context {context} cacerts cert-chain.pem")
        issuing = fingerprint(chain[-1])
        subjects.setdefault(issuing, chain[-1].subject.rfc4514_string())
        born.setdefault(issuing, chain[-1].not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"))
    except AirgapError as exc:
        problem = f"cacerts cert-chain.pem: {exc.message}" if chain_pem else "cacerts has no cert-chain.pem"
    if problem is not None:
        issuing = None
    return ClusterTrust(context, issuing, tuple(trusted), subjects, problem, born)


def cluster_trust(context: str, secret: JSON | None) -> ClusterTrust:
    """The trust facts of a ``cacerts`` Secret as the API returns it (None: no Secret)."""
    if secret is None:
        return ClusterTrust(context, None, (), {}, f"secret {NAMESPACE}/{SECRET_NAME} is missing")
    data = secret.get("data") or {}
    if not isinstance(data, dict):
        return ClusterTrust(context, None, (), {}, f"secret {NAMESPACE}/{SECRET_NAME} has no data")
    return pem_facts(secret_value(data, CERT_CHAIN), secret_value(data, ROOT_CERT), context=context)


def read_trust(kube: Any) -> ClusterTrust:
    """One live cluster's facts: a GET of ``istio-system/cacerts``. Writes nothing."""
    return cluster_trust(kube.context, kube.get("Secret", SECRET_NAME, NAMESPACE))


def read_fleet_trust(
    contexts: Sequence[str],
    *,
    parallel: int,
    policy: Any = None,
    kubeconfig: Any = None,
) -> list[ClusterTrust]:
    """:func:`read_trust` of every context, ``parallel`` at a time, in the order given.

    A cluster that cannot be reached raises (its exit code, naming the context): a table without
    it could say "whole" about a fleet it never saw.
    """
    from airgap.connected.kube import connect, policy_from_env

    def read_cluster(ctx: str) -> ClusterTrust:
        with connect(ctx, kubeconfig=kubeconfig, policy=policy or policy_from_env()) as kube:
            return read_trust(kube)

    found = map_contexts(contexts, read_cluster, parallel)
    return [found[c] for c in contexts]


def map_contexts(contexts: Sequence[str], fn: Callable[[str], T], parallel: int) -> dict[str, T]:
    """``fn`` over the contexts, at most ``parallel`` at a time; the first error in context order is raised."""
    import concurrent.futures as cf

    results: dict[str, T] = {}
    errors: dict[str, BaseException] = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(contexts))), thread_name_prefix="trust") as pool:
        futures = {pool.submit(fn, c): c for c in contexts}
        for fut in cf.as_completed(futures):
            try:
                results[futures[fut]] = fut.result()
            except BaseException as exc:  # re-raised below, in context order
                errors[futures[fut]] = exc
    for ctx in contexts:
        if ctx in errors:
            raise errors[ctx]
    return results


__all__ = [
    "ROOT_CONFIGMAP",
    "ClusterTrust",
    "Rejection",
    "TrustState",
    "cluster_trust",
    "evaluate",
    "map_contexts",
    "pem_facts",
    "read_fleet_trust",
    "read_trust",
    "root_labels",
]
