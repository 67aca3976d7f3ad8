"""``mesh trust --plan PKI``: the ordered steps left of a root rotation across a fleet.

Reads the PKI folder's certificates (:class:`airgap.core.pkitrust.PkiTrust`: root A, next root B
during ``ca rotate-root``, each cluster folder's issuing and trusted roots) and each cluster
(``cacerts``, its ``airgap.dev/cluster`` annotation naming the PKI cluster, the injected
namespaces, the running istiod's release line). :func:`build_plan` is pure.

The order is the one the gate (:mod:`airgap.connected.gate`) lets through, and what the tools
really do: ``ca rotate-root`` gives every cluster folder ``root-cert.pem`` = {A, B} with its
intermediate still under A; ``ca rotate`` moves one folder's intermediate under B; ``ca
rotate-root --finish`` (refused until every folder is under B) leaves ``root-cert.pem`` = {B}.

1. trust: every cluster imports a bundle with trust {A,B}, issuer A  (phase A/{A} -> A/{A,B});
2. issuer: then each ``ca rotate`` + import, issuer B                (-> B/{A,B});
3. ``ca rotate-root --finish``, once every cluster issues under B and its workloads restarted;
4. trust: every cluster imports a bundle with trust {B}              (-> B/{B}).

After each import, the workloads of injected namespaces restart (``mesh inject NS --restart``)
where the release line's istiod does not reload roots (ASM 1.8); where the catalog names a reload
flag, the plan says so instead.

Trust: what the clusters say is untrusted and only chooses which steps to print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap.connected.trust import ClusterTrust, TrustState, cluster_trust, evaluate
from airgap.core.pkitrust import PkiTrust

JSON = dict[str, Any]

A_CLUSTER = "airgap.dev/cluster"


@dataclass(frozen=True)
class LiveCluster:
    """One context's facts for the plan."""

    trust: ClusterTrust
    cluster: str  # the PKI cluster its cacerts came from
    namespaces: tuple[str, ...] = ()  # injected namespaces (restarted after a trust change)
    reload: tuple[str, str] | None = None  # (istiod flag, public source) when istiod reloads roots
    istiod: bool = False  # istiod pods run in istio-system
    named_by_cacerts: bool = True  # False: no airgap cluster annotation (or no cacerts); ``cluster`` is the context's

    def unknown_note(self, pki_path: object) -> str:
        """Why the plan leaves this context out: its cluster has no folder in the PKI."""
        if self.trust.issuing is None:
            return f"{self.context}: no readable cacerts; import its cluster's bundle first (left out of the plan)"
        if not self.named_by_cacerts:
            return (
                f"{self.context}: its cacerts has no airgap cluster annotation (not imported by airgap?), and "
                f"{pki_path} has no folder named after the context ({self.cluster!r}); left out of the plan"
            )
        return f"{self.context}: its cacerts names cluster {self.cluster!r}, which {pki_path} has no folder for"

    @property
    def context(self) -> str:
        return self.trust.context


@dataclass(frozen=True)
class Step:
    """One thing to do: ``action`` is rotate-root, bundle (create, import, restart), ca-rotate or finish."""

    stage: int
    action: str
    where: str  # "root host" | "jump host"
    commands: tuple[str, ...]
    why: str
    cluster: str | None = None
    context: str | None = None

    def as_dict(self) -> JSON:
        return {
            "stage": self.stage,
            "action": self.action,
            "where": self.where,
            "commands": list(self.commands),
            "why": self.why,
            "cluster": self.cluster,
            "context": self.context,
        }


@dataclass(frozen=True)
class RotationPlan:
    state: TrustState
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> JSON:
        return {"steps": [s.as_dict() for s in self.steps], "notes": list(self.notes)}

    def text(self) -> str:
        lines = ["plan (steps left, in order):"] if self.steps else ["plan: nothing left to do"]
        for i, s in enumerate(self.steps, start=1):
            lines.append(f"{i:>2}. [stage {s.stage}, {s.where}] {s.why}")
            lines += [f"      {c}" for c in s.commands]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _q(value: object) -> str:
    """A shell word (paths and context names may hold spaces or quotes)."""
    import shlex

    return shlex.quote(str(value))


def _bundle(pki: PkiTrust, live: LiveCluster, stage: int, carries: str) -> Step:
    n, ctx = _q(live.cluster), live.context
    from airgap.connected.fleet import context_label

    # bundle create never replaces a file: one name per step and context (a safe path element)
    out = _q(f"{live.cluster}-{context_label(ctx)}-stage{stage}.bundle")
    return Step(
        stage,
        "bundle",
        "root host, then jump host",
        (
            f"airgap bundle create {n} --dir {_q(pki.path)} --sign-key OFFICER.key --recipient JUMP.pub "
            f"--passphrase-file PASSFILE --out {out}",
            f"airgap bundle import {out} --trust OFFICER.pub --identity JUMP.key --cluster {n} "
            f"--context {_q(ctx)} --rotate",
        ),
        f"import into {ctx} a bundle of {live.cluster} carrying {carries}",
        live.cluster,
        ctx,
    )


def _restart(live: LiveCluster, what: str) -> tuple[tuple[str, ...], str]:
    """The restart command (none where istiod reloads roots, or nothing is injected) and why."""
    if live.reload is not None:
        flag, source = live.reload
        return (), (
            f"; istiod of this release line reloads cacerts when run with {flag} ({source}), "
            f"so the proxies get {what} without a restart (restart the workloads if in doubt)"
        )
    ctx = _q(live.context)
    commands: tuple[str, ...] = ()
    why = ""
    if live.istiod:
        commands += (f"kubectl --context {ctx} -n istio-system rollout restart deployment -l app=istiod",)
        why = "; restart istiod (it reads cacerts at start)"
    if not live.namespaces:
        return commands, why + "; no injected namespace to restart"
    commands += (f"airgap mesh inject {' '.join(map(_q, live.namespaces))} --context {ctx} --restart",)
    return commands, why + f"; then restart the injected workloads so their proxies load {what} (no reload without it)"


def _import_and_restart(pki: PkiTrust, live: LiveCluster, stage: int, carries: str, what: str) -> list[Step]:
    """One step: create the bundle, import it, restart: a stateless plan cannot know a restart is still due."""
    step = _bundle(pki, live, stage, carries)
    more, why = _restart(live, what)
    return [Step(stage, step.action, step.where, step.commands + more, step.why + why, step.cluster, step.context)]


def _finish(pki: PkiTrust, stage: int) -> Step:
    return Step(
        stage,
        "finish",
        "root host",
        (f"airgap ca rotate-root --dir {_q(pki.path)} --finish --passphrase-file PASSFILE",),
        "retire root A: allowed now that every cluster issues under B and its workloads restarted "
        "(the PKI refuses it while a cluster folder is still under A)",
    )


def _rotating(pki: PkiTrust, live: Sequence[LiveCluster]) -> tuple[list[Step], list[str]]:
    """Stages 1-4 while a next root exists."""
    assert pki.next_root is not None
    a, b = pki.root, pki.next_root
    steps: list[Step] = []
    notes: list[str] = []
    for lc in live:  # 1. trust {A,B}, issuer still A
        pc = pki.cluster(lc.cluster)
        if b in lc.trust.trusted or pc is None:
            continue
        if pc.issuing == a:
            steps += _import_and_restart(pki, lc, 1, "trust {A,B}, issuer A", "the new trust bundle")
        else:
            notes.append(f"{lc.context}: the PKI's {lc.cluster} is already under B; its bundle moves the issuer too")
    for lc in live:  # 2. issuer B
        pc = pki.cluster(lc.cluster)
        if lc.trust.issuing == b or pc is None:
            continue
        if pc.issuing != b:
            rotate = f"airgap ca rotate {_q(lc.cluster)} --dir {_q(pki.path)} --passphrase-file PASSFILE"
            steps.append(
                Step(
                    2,
                    "ca-rotate",
                    "root host",
                    (rotate,),
                    f"a new intermediate for {lc.cluster} under root B",
                    lc.cluster,
                )
            )
        steps += _import_and_restart(pki, lc, 2, "trust {A,B}, issuer B", "certificates of the new chain")
    named = {lc.cluster for lc in live}
    for pc in pki.clusters:
        if pc.name not in named and pc.issuing != b:
            notes.append(f"PKI cluster {pc.name} (in no given context) is still under A: 'ca rotate {pc.name}' first")
    steps.append(_finish(pki, 3))
    for lc in live:  # 4. trust {B}
        steps += _import_and_restart(pki, lc, 4, "trust {B}, issuer B", "the trust bundle without A")
    return steps, notes


def _settled(pki: PkiTrust, live: Sequence[LiveCluster]) -> tuple[list[Step], list[str]]:
    """No next root: drop retired roots from trust, or say how to start a rotation."""
    r = pki.root
    movers = [lc for lc in live if lc.trust.issuing != r]
    others = [lc for lc in live if lc not in movers]
    if movers and not all(r in lc.trust.trusted for lc in others):
        odd = ", ".join(lc.context for lc in movers)
        return [], [f"{odd}: issue(s) under a root that is not the PKI's; 'mesh trust' names the mend"]
    steps: list[Step] = []
    for lc in movers:  # the rotation finished in the PKI before these clusters moved: move them now
        steps += _import_and_restart(pki, lc, 2, "trust {A}, issuer A", "certificates of the new chain")
    for lc in others:
        if lc.trust.trusted != (r,):
            steps += _import_and_restart(pki, lc, 4, "trust {A} only", "the trust bundle without the retired root")
    if steps:
        return steps, []
    start = Step(
        1,
        "rotate-root",
        "root host",
        (f"airgap ca rotate-root --dir {_q(pki.path)} --passphrase-file PASSFILE",),
        "every cluster issues under the root and trusts only it; to rotate the root, make the next "
        "one, then run 'mesh trust --plan' again",
    )
    return [start], []


def build_plan(pki: PkiTrust, live: Sequence[LiveCluster]) -> RotationPlan:
    """The steps left, in order, for these clusters and this PKI. Pure."""
    labels = {pki.root: "A"} | ({pki.next_root: "B"} if pki.next_root else {})
    state = evaluate([lc.trust for lc in live], labels)
    unknown = [lc for lc in live if pki.cluster(lc.cluster) is None]
    notes = [lc.unknown_note(pki.path) for lc in unknown]
    known = [lc for lc in live if lc not in unknown and lc.trust.issuing is not None]
    steps, more = _rotating(pki, known) if pki.next_root else _settled(pki, known)
    if not state.whole:
        more.append("the mesh is split now: mend it first (see the split lines above)")
    return RotationPlan(state, tuple(steps), tuple(notes + more))


def read_live(kube: Any) -> LiveCluster:
    """One cluster's facts for the plan (GETs and LISTs only)."""
    from airgap.connected.catalog import line_of_revision
    from airgap.connected.fleet import context_cluster
    from airgap.connected.inject import LEGACY_LABEL
    from airgap.connected.mesh import ISTIOD_SELECTOR, REV_LABEL

    secret = kube.get("Secret", "cacerts", "istio-system")
    ann = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    named = bool(ann.get(A_CLUSTER))
    name = str(ann.get(A_CLUSTER) or context_cluster(kube.context))
    namespaces = tuple(
        sorted(
            str(ns["metadata"]["name"])
            for ns in kube.list("Namespace")
            if (ns["metadata"].get("labels") or {}).get(LEGACY_LABEL) == "enabled"
            or REV_LABEL in (ns["metadata"].get("labels") or {})
        )
    )
    reload: tuple[str, str] | None = None
    pods = kube.list("Pod", "istio-system", selector=ISTIOD_SELECTOR)
    for pod in pods:
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        rev = str((pod["metadata"].get("labels") or {}).get(REV_LABEL, ""))
        line = line_of_revision(rev, str(containers[0].get("image") or ""))
        if line is None or line.reload_flag is None or line.reload_source is None:
            reload = None
            break  # one istiod that needs restarts decides
        reload = (line.reload_flag, line.reload_source)
    return LiveCluster(cluster_trust(kube.context, secret), name, namespaces, reload, bool(pods), named)


def fleet_plan(pki: PkiTrust, contexts: Sequence[str], *, parallel: int, policy: Any = None) -> RotationPlan:
    """:func:`read_live` of every context, then :func:`build_plan`."""
    from airgap.connected.kube import connect, policy_from_env
    from airgap.connected.trust import map_contexts

    def read_cluster(ctx: str) -> LiveCluster:
        with connect(ctx, policy=policy or policy_from_env()) as kube:
            return read_live(kube)

    found = map_contexts(list(contexts), read_cluster, parallel)
    return build_plan(pki, [found[c] for c in contexts])


__all__ = ["LiveCluster", "RotationPlan", "Step", "build_plan", "fleet_plan", "read_live"]
