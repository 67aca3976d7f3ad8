"""Run one cluster task over many kubeconfig contexts, concurrently with a bound.

One cluster's failure never stops the others; every cluster gets a row in the summary; the
fleet's exit code is the worst one (highest contract code; an unexpected error counts as 70).
:func:`run_on_contexts` is the one place a command chooses between one cluster and a fleet.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from airgap.core.names import LABEL_VALUE_RE
from airgap.errors import AirgapError, InvalidInput

DEFAULT_PARALLEL = 8
INTERNAL_ERROR = 70

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What happened on one cluster: exit code, a one-word result, a detail line, and any value."""

    context: str
    exit_code: int
    result: str
    detail: str = ""
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"context": self.context, "exit_code": self.exit_code, "result": self.result, "detail": self.detail}


class FleetFailed(AirgapError):
    """Some clusters failed; the exit code is the worst of theirs."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class FleetReport:
    outcomes: list[Outcome]

    @property
    def exit_code(self) -> int:
        return max((o.exit_code for o in self.outcomes), default=0)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.exit_code != 0]

    def table(self) -> str:
        """A plain-text summary table, one row per cluster, in the order the contexts were given."""
        rows = [("CONTEXT", "RESULT", "EXIT", "DETAIL")]
        rows += [(o.context, o.result, str(o.exit_code), o.detail) for o in self.outcomes]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`FleetFailed` (worst exit code) naming the failed clusters, or return."""
        bad = self.failed
        if bad:
            names = ", ".join(f"{o.context} (exit {o.exit_code})" for o in bad)
            raise FleetFailed(f"{len(bad)} of {len(self.outcomes)} clusters failed: {names}", self.exit_code)

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "clusters": [o.as_dict() for o in self.outcomes]}


_GKE = re.compile(r"^gke_[^_]+_[^_]+_(.+)$")  # gke_PROJECT_LOCATION_CLUSTER (gcloud get-credentials)
_EKS = re.compile(r"^arn:aws[a-z-]*:eks:[^:]+:[0-9]+:cluster/(.+)$")  # aws eks update-kubeconfig


def context_label(context: str) -> str:
    """A kubeconfig context name made safe as a Kubernetes label value AND a single path element.

    What ``{context}`` becomes in ``--cluster-name``/``--network`` and the per-context folder under
    ``--output-dir``. A name that already is a label value (1-63 letters, digits, '-', '_', '.',
    starting and ending with a letter or digit) is kept as it is; otherwise every run of other
    characters (dots included) becomes '-' (``arn:aws:eks:eu-west-1:123:cluster/prod`` →
    ``arn-aws-eks-eu-west-1-123-cluster-prod``), and a name over 63 characters keeps its first 54
    and gets 8 hex digits of its SHA-256. The result never is empty, ``.``, ``..`` or holds a
    ``/``. Trust: the name is the kubeconfig's.
    """
    if LABEL_VALUE_RE.match(context):
        return context
    digest = hashlib.sha256(context.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", context).strip("-_")
    if not slug:
        return f"ctx-{digest}"
    if len(slug) > 63:
        slug = slug[:54].rstrip("-_.") + "-" + digest
    return slug


def context_cluster(context: str) -> str:
    """The cluster part of a GKE (``gke_P_L_NAME``) or EKS (``arn:…:cluster/NAME``) context, else
    the whole context; made safe like :func:`context_label`. What ``{cluster}`` becomes."""
    for pattern in (_GKE, _EKS):
        m = pattern.match(context)
        if m:
            return context_label(m.group(1))
    return context_label(context)


def expand_context(template: str, context: str) -> str:
    """``{context}`` and ``{cluster}`` in ``template`` for one kubeconfig context."""
    if not context:
        return template.replace("{context}", "").replace("{cluster}", "")
    return template.replace("{context}", context_label(context)).replace("{cluster}", context_cluster(context))


def check_distinct(template: str, contexts: Sequence[str], flag: str) -> None:
    """Refuse (exit 3) a fleet in which two contexts would get the same ``template`` value."""
    seen: dict[str, str] = {}
    for c in contexts:
        value = expand_context(template, c)
        if value in seen:
            raise InvalidInput(
                f"{flag} {template!r} gives {value!r} for both contexts {seen[value]!r} and {c!r}; "
                "use {context} (the whole name) or {cluster} so that each cluster's name differs"
            )
        seen[value] = c


def unique_contexts(contexts: Sequence[str]) -> list[str]:
    """The contexts in the order given, each once."""
    seen: dict[str, None] = {}
    for c in contexts:
        if not c:
            raise InvalidInput("--context must not be empty")
        seen.setdefault(c, None)
    return list(seen)


def run_fleet(
    contexts: Sequence[str],
    task: Callable[[str], Outcome],
    *,
    parallel: int = DEFAULT_PARALLEL,
    on_done: Callable[[Outcome], None] | None = None,
) -> FleetReport:
    """Run ``task(context)`` for every context, at most ``parallel`` at a time.

    ``task`` returns its cluster's :class:`Outcome`; an :class:`AirgapError` it raises becomes a
    failed outcome with that error's exit code and message; anything else becomes exit 70.
    """
    if parallel < 1:
        raise InvalidInput(f"--parallel must be at least 1 (got {parallel})")
    ordered = unique_contexts(contexts)

    def guarded(ctx: str) -> Outcome:
        try:
            return task(ctx)
        except AirgapError as exc:
            return Outcome(ctx, exc.exit_code, "failed", exc.message)
        except Exception as exc:  # one cluster's bug must not take the fleet down
            return Outcome(ctx, INTERNAL_ERROR, "failed", f"internal error: {type(exc).__name__}: {exc}")

    results: dict[str, Outcome] = {}
    with cf.ThreadPoolExecutor(max_workers=min(parallel, max(1, len(ordered))), thread_name_prefix="fleet") as pool:
        futures = {pool.submit(guarded, ctx): ctx for ctx in ordered}
        for fut in cf.as_completed(futures):
            outcome = fut.result()
            results[futures[fut]] = outcome
            if on_done is not None:
                on_done(outcome)
    return FleetReport([results[c] for c in ordered])


def run_on_contexts(
    contexts: Sequence[str | None],
    run: Callable[[str | None], T],
    *,
    show_one: Callable[[T], None],
    row: Callable[[str, T], Outcome],
    show_fleet: Callable[[FleetReport], None],
    ask_first: Callable[[list[str]], None] | None = None,
    parallel: int = DEFAULT_PARALLEL,
    on_done: Callable[[Outcome], None] | None = None,
) -> None:
    """Run a command's per-cluster ``run`` on one context or on a fleet: the one place that forks.

    One context, or none (``None``: the kubeconfig's current one): ``show_one(run(context))``; an error
    propagates as it is, with its own message and exit code. Several: ``ask_first(names)`` (so that
    every cluster can refuse before any is written), then ``run`` on each with :func:`run_fleet`,
    each result made a summary row by ``row``, and ``show_fleet(report)``, which prints the table
    and raises the worst exit code.
    """
    if len(contexts) <= 1:
        show_one(run(contexts[0] if contexts else None))
        return
    names = [c for c in contexts if c]
    if len(names) != len(contexts):
        raise InvalidInput("a fleet needs a named --context for every cluster")
    if ask_first is not None:
        ask_first(names)

    def task(ctx: str) -> Outcome:
        return row(ctx, run(ctx))

    show_fleet(run_fleet(names, task, parallel=parallel, on_done=on_done))
