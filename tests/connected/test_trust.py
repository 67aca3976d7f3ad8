"""The trust invariant as a pure function, and its facts read from ``cacerts`` bytes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from airgap.connected.trust import ClusterTrust, cluster_trust, evaluate, pem_facts

A, B, C = (hashlib.sha256(x).hexdigest() for x in (b"root a", b"root b", b"root c"))


def _c(ctx: str, issuing: str | None, *trusted: str) -> ClusterTrust:
    return ClusterTrust(ctx, issuing, tuple(trusted))


def test_every_phase_of_a_rotation_in_order_is_whole() -> None:
    """A/{A} -> A/{A,B} -> B/{A,B} -> B/{B}, one cluster at a time: whole after every step."""
    names = ("c1", "c2", "c3")
    phases = [(A, (A,)), (A, (A, B)), (B, (A, B)), (B, (B,))]
    current = dict.fromkeys(names, 0)
    seen = []
    for step in range(1, 4):
        for n in names:
            current[n] = step
            st = evaluate([_c(m, phases[current[m]][0], *phases[current[m]][1]) for m in names], {A: "A", B: "B"})
            assert st.whole, st.problems()
            seen.append(st.phase(n))
    assert seen[:3] == ["A/{A,B}"] * 3 and seen[3:6] == ["B/{A,B}"] * 3 and seen[6:] == ["B/{B}"] * 3


def test_a_new_issuer_before_the_peer_trusts_it_splits_the_pair() -> None:
    st = evaluate([_c("c1", B, A, B), _c("c2", A, A), _c("c3", A, A, B)], {A: "A", B: "B"})
    assert not st.whole
    assert st.pairs() == [("c1", "c2")]
    (r,) = st.rejections
    assert (r.issuer, r.rejecter, r.root) == ("c1", "c2", B)
    (line,) = st.problems()
    assert line.startswith("c1 and c2 would reject each other: c2 (A/{A}) does not trust c1's issuing root B")
    assert B in line and "import into c2 a bundle whose root-cert.pem holds root B" in line
    assert [c["phase"] for c in st.as_dict()["clusters"]] == ["B/{A,B}", "A/{A}", "A/{A,B}"]


def test_dropping_a_root_a_peer_still_issues_under_splits_the_pair() -> None:
    st = evaluate([_c("c1", B, B), _c("c2", A, A, B)], {A: "A", B: "B"})
    assert st.pairs() == [("c1", "c2")]
    assert [(r.issuer, r.rejecter) for r in st.rejections] == [("c2", "c1")]


def test_the_table_has_full_fingerprints_and_the_verdict() -> None:
    st = evaluate([_c("c1", A, A, B), _c("c2", C, C)])
    text = st.table()
    assert A in text and B in text and C in text  # 64 hex, never shortened
    assert st.labels == {A: "A", C: "B", B: "C"}  # issuing roots first, then trusted ones, in order
    assert "split: c1 and c2 would reject each other" in text
    assert st.as_dict()["pairs"] == [["c1", "c2"]]


def test_a_cluster_without_cacerts_is_not_whole() -> None:
    st = evaluate([_c("c1", A, A), cluster_trust("c2", None)])
    assert not st.whole and st.problems() == ["c2: secret istio-system/cacerts is missing"]
    assert st.phase("c2") == "?/{}"


def test_facts_from_pem(pki: Path) -> None:
    from airgap.core.x509 import fingerprint, load_cert_pem

    root = fingerprint(load_cert_pem((pki / "root-cert.pem").read_bytes(), source="root"))
    chain, roots = (pki / "c1" / "cert-chain.pem").read_bytes(), (pki / "c1" / "root-cert.pem").read_bytes()
    facts = pem_facts(chain, roots, context="x")
    assert facts.issuing == root and facts.trusted == (root,) and facts.problem is None
    assert len(root) == 64 and root == root.lower()
    secret = {"data": {"cert-chain.pem": base64.b64encode(chain).decode(), "root-cert.pem": "%%%"}}
    broken = cluster_trust("x", secret)
    assert broken.issuing is None and broken.problem == "cacerts has no root-cert.pem"
    garbage = pem_facts(b"not a pem", roots, context="x")
    assert garbage.issuing is None and garbage.problem is not None and "cert-chain.pem" in garbage.problem


def test_a_cluster_that_does_not_trust_its_own_issuer_is_its_own_problem() -> None:
    st = evaluate([_c("c1", A, A), _c("c2", A, B)], {A: "A", B: "B"})
    assert st.pairs() == [("c1", "c2")]  # c2 rejects c1's (and its own) issuing root A
    lines = st.problems()
    assert lines[0].startswith("c2 (A/{B}) does not trust its own issuing root A")
    assert lines[1].startswith("c1 and c2 would reject each other: c2 (A/{B}) does not trust c1's issuing root A")
    assert len(lines) == 2


def test_what_a_cluster_says_is_escaped_in_the_table() -> None:
    evil = ClusterTrust("c\x1b[2J1", A, (A,), {A: "CN=\x1b[31mroot\u202e"})
    text = evaluate([evil]).table()
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31m" in text or "\\x1b" in text
