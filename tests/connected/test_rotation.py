"""The rotation plan as a pure function of the PKI's trust facts and the clusters' (no cluster)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from airgap.connected.catalog import CATALOG, line_of_revision
from airgap.connected.rotation import LiveCluster, build_plan
from airgap.connected.trust import ClusterTrust
from airgap.core.pkitrust import PkiCluster, PkiTrust

A, B = (hashlib.sha256(x).hexdigest() for x in (b"root a", b"root b"))


def _pki(next_root: str | None, *clusters: tuple[str, str, tuple[str, ...]]) -> PkiTrust:
    return PkiTrust(Path("/pki"), A, next_root, tuple(PkiCluster(n, i, t) for n, i, t in clusters))


def _live(ctx: str, cluster: str, issuing: str, *trusted: str, reload: tuple[str, str] | None = None) -> LiveCluster:
    return LiveCluster(ClusterTrust(ctx, issuing, tuple(trusted)), cluster, ("shop",), reload, istiod=True)


def test_before_a_rotation_the_plan_is_to_start_one() -> None:
    plan = build_plan(_pki(None, ("n1", A, (A,))), [_live("k1", "n1", A, A)])
    assert [s.action for s in plan.steps] == ["rotate-root"]
    assert plan.steps[0].commands == ("airgap ca rotate-root --dir /pki --passphrase-file PASSFILE",)


def test_mid_rotation_the_steps_left_are_in_the_gates_order() -> None:
    """k1 already trusts B, k2 does not; the PKI rotated n1 already, n2 not."""
    pki = _pki(B, ("n1", B, (A, B)), ("n2", A, (A, B)))
    plan = build_plan(pki, [_live("k1", "n1", A, A, B), _live("k2", "n2", A, A)])
    got = [(s.stage, s.action, s.context) for s in plan.steps]
    assert got == [
        (1, "bundle", "k2"),  # trust {A,B} first, everywhere
        (2, "bundle", "k1"),  # n1 is already under B in the PKI: no ca rotate
        (2, "ca-rotate", None),
        (2, "bundle", "k2"),
        (3, "finish", None),
        (4, "bundle", "k1"),
        (4, "bundle", "k2"),
    ]
    first = plan.steps[0]
    assert first.commands[0].startswith("airgap bundle create n2 --dir /pki ")
    assert "--cluster n2 --context k2 --rotate" in first.commands[1]
    assert first.commands[2] == "kubectl --context k2 -n istio-system rollout restart deployment -l app=istiod"
    assert first.commands[3] == "airgap mesh inject shop --context k2 --restart"  # ASM 1.8: no root reload
    assert plan.steps[2].commands == ("airgap ca rotate n2 --dir /pki --passphrase-file PASSFILE",)
    assert plan.state.phase("k1") == "A/{A,B}" and plan.state.phase("k2") == "A/{A}"


def test_where_istiod_reloads_roots_the_plan_says_so_and_restarts_nothing() -> None:
    line = CATALOG["istio-1.24"]
    assert line.reload_flag is not None and line.reload_source is not None
    reload = (line.reload_flag, line.reload_source)
    pki = _pki(B, ("n1", A, (A, B)))
    plan = build_plan(pki, [_live("k1", "n1", A, A, reload=reload)])
    step = plan.steps[0]
    assert len(step.commands) == 2  # create and import, no mesh inject --restart
    assert "AUTO_RELOAD_PLUGIN_CERTS=true" in step.why and "istio/istio#31522" in step.why


def test_after_finish_a_cluster_left_under_the_old_root_moves_before_anyone_drops_it() -> None:
    pki = _pki(None, ("n1", A, (A,)), ("n2", A, (A,)))  # A is the new root here
    plan = build_plan(pki, [_live("k1", "n1", A, B, A), _live("k2", "n2", B, B, A)])
    assert [(s.stage, s.context) for s in plan.steps] == [(2, "k2"), (4, "k1")]


def test_a_context_of_an_unknown_cluster_is_a_note_and_a_quoted_command() -> None:
    pki = _pki(B, ("n 1", A, (A, B)))
    plan = build_plan(pki, [_live("k;1", "n 1", A, A), _live("k2", "elsewhere", A, A)])
    assert any("'elsewhere'" in n for n in plan.notes)
    assert "airgap bundle create 'n 1' " in plan.steps[0].commands[0]
    assert "--context 'k;1' --rotate" in plan.steps[0].commands[1]


def test_a_context_without_cacerts_or_without_the_annotation_is_not_said_to_name_a_cluster() -> None:
    pki = _pki(None, ("n1", A, (A,)))
    empty = LiveCluster(ClusterTrust("k2", None, (), problem="secret istio-system/cacerts is missing"), "k2",
                        named_by_cacerts=False)  # fmt: skip
    by_hand = LiveCluster(ClusterTrust("k3", A, (A,)), "k3", named_by_cacerts=False)  # kubectl create secret
    plan = build_plan(pki, [_live("k1", "n1", A, A), empty, by_hand])
    notes = {n.split(":", 1)[0]: n for n in plan.notes}
    assert "no readable cacerts; import its cluster's bundle first" in notes["k2"]
    assert "no airgap cluster annotation" in notes["k3"] and "names cluster" not in notes["k3"]
    assert "names cluster" not in notes["k2"]


def test_the_release_line_of_a_running_istiod() -> None:
    assert line_of_revision("asm-186-8", "gcr.io/x/pilot:1.8.6-asm.8") is CATALOG["asm-1.8"]
    assert line_of_revision("asm-186-8", "example/istiod:1") is CATALOG["asm-1.8"]
    assert line_of_revision("1-24-2") is CATALOG["istio-1.24"]
    assert line_of_revision("canary", "registry:5000/pilot@sha256") is None


def test_mesh_install_turns_on_the_reload_flag_of_lines_that_have_one() -> None:
    from airgap.connected.catalog import istiod_env
    from airgap.connected.mesh import MeshSettings, render_operator

    assert istiod_env(CATALOG["asm-1.8"]) == () and istiod_env(None) == ()
    env = istiod_env(CATALOG["istio-1.20"])
    assert env == (("AUTO_RELOAD_PLUGIN_CERTS", "true"),)
    op = render_operator(MeshSettings("c", "n", "m", revision="1-20-3", istiod_env=env))
    assert op["spec"]["values"]["pilot"] == {"env": {"AUTO_RELOAD_PLUGIN_CERTS": "true"}}
    assert "pilot" not in render_operator(MeshSettings("c", "n", "m"))["spec"]["values"]  # ASM 1.8: as the guide
    assert MeshSettings("{context}", "n", "m", istiod_env=env).for_context("x").istiod_env == env
