"""Render a 50-cluster GitOps tree (``bundle import --context (50 of them) --output-dir --sops-age``).

Side by side: airgap in plaintext (``--plaintext-secrets``), airgap with SOPS (one real ``sops
encrypt`` per cluster, ``--parallel 8``), and what an operator would do instead: render plaintext,
then run ``sops encrypt --in-place`` on every Secret file in a shell loop (which leaves the key in
plaintext on disk first). Also: a re-render of the unchanged tree (no sops run at all). The bundle
is verified and decrypted once, outside the timing, as ``bundle import`` does.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLUSTERS = 50


def _prepared(tmp: Path) -> object:
    from airgap.connected.bundle_import import prepare_import
    from airgap.core.keys import load_public_key
    from tests.bundle_fixtures import PASSPHRASE, make_bundle, new_keys
    from tests.helpers import make_pki

    pki = tmp / "pki"
    make_pki(pki, ["c1"], passphrase=PASSPHRASE, key_passphrase=None)
    keys = new_keys(tmp / "keys")
    bundle, signer_pub, identity, _pw = make_bundle(pki, tmp, keys=keys)
    return prepare_import(bundle, [load_public_key(signer_pub)], identity, None, "c1", state_dir=tmp / "state")


def _tree(prepared: object, out: Path, recipients: tuple[str, ...] | None) -> float:
    from airgap.connected.bundle_import import import_to_tree

    contexts = [f"cluster-{i:02d}" for i in range(CLUSTERS)]
    t0 = time.perf_counter()
    report = import_to_tree(prepared, out, contexts, recipients=recipients)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(report.table())
    return elapsed


def main() -> list[dict[str, object]]:
    from airgap.core import age
    from airgap.core.sops import find_sops

    with tempfile.TemporaryDirectory(prefix="bench-gitops-") as d:
        tmp = Path(d)
        prepared = _prepared(tmp)
        flux = age.new_recipient_key("flux", tmp, None)
        recipients = (flux.recipient,)
        plain = _tree(prepared, tmp / "plain", None)
        with_sops = _tree(prepared, tmp / "sops", recipients)
        again = _tree(prepared, tmp / "sops", recipients)
        loop_dir = tmp / "loop"
        t0 = time.perf_counter()
        _tree(prepared, loop_dir, None)
        script = (
            'for f in "$1"/clusters/*/10-cacerts-secret.yaml; do '
            '"$2" encrypt --in-place --age "$3" --encrypted-regex "^(data|stringData)$" "$f"; done'
        )
        subprocess.run(
            ["sh", "-c", script, "sh", str(loop_dir), str(find_sops()), flux.recipient],
            check=True,
            env={"PATH": "/usr/bin:/bin", "SOPS_DISABLE_VERSION_CHECK": "1"},
        )
        loop = time.perf_counter() - t0
    rows: list[dict[str, object]] = [
        {
            "case": f"bundle import --output-dir, {CLUSTERS} clusters",
            "airgap_plaintext_s": round(plain, 3),
            "airgap_sops_s": round(with_sops, 3),
            "airgap_sops_rerender_unchanged_s": round(again, 3),
            "plaintext_then_sops_loop_s": round(loop, 3),
            "ratio_sops_vs_plaintext": round(with_sops / plain, 2),
            "ratio_sops_vs_shell_loop": round(with_sops / loop, 2),
        }
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gitops.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
