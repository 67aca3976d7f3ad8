# shellcheck shell=bash
# Part 20: the fleet's root rotation, end to end through the gate (docs/rotation.md).
# Sourced by scripts/demo.sh: emu-1 holds cluster1, emu-2 cluster2, both installed and connected.

ROT="$DEMO/rotation"
mkdir -p "$ROT"
FLEET=(--context emu-1 --context emu-2)

rot_bundle() {  # CLUSTER NAME: seal PKI/CLUSTER's current files (on the root host), carry it over
  $AIRGAP bundle create "$1" --dir "$DEMO/pki" --sign-key "$DEMO/keys/officer.key" \
    --recipient "$DEMO/jump/keys/operator.pub" --passphrase-file "$DEMO/passphrase.txt" \
    --out "$ROT/$2" > /dev/null
  echo "   sealed $ROT/$2"
}
rot_import() {  # CONTEXT CLUSTER NAME [more options]: import --rotate on the jump host, through the gate
  local ctx=$1 cluster=$2 name=$3
  shift 3
  $AIRGAP bundle import "$ROT/$name" --trust "$DEMO/jump/officer.pub" --identity "$DEMO/jump/keys/operator.key" \
    --cluster "$cluster" --context "$ctx" --rotate --poll 0.2 --trust-wait 30 "$@"
}
rot_restart() {  # CONTEXT [NAMESPACE]: what the plan says for ASM 1.8 after an import (no reload without it)
  kubectl --context "$1" -n istio-system rollout restart deployment -l app=istiod > /dev/null
  echo "   istiod restarted on $1"
  if [ -n "${2:-}" ]; then
    $AIRGAP mesh inject "$2" --context "$1" --restart --poll 0.2 > /dev/null && echo "   $2 restarted on $1"
  fi
}
rot_check() {  # the invariant after every step: exit 0 or the demo stops
  $AIRGAP mesh trust "${FLEET[@]}" | sed -n '2,3p;/^whole/p'
}

say "--- The fleet's root rotation: A/{A} -> A/{A,B} -> B/{A,B} -> B/{B}, one cluster at a time, through the gate"
say "Where the fleet stands: each cluster's issuing root and trusted roots, by full fingerprint"
$AIRGAP mesh trust "${FLEET[@]}"

say "Offline: the next root B (every cluster folder's root-cert.pem now holds A, then B)"
$AIRGAP ca rotate-root --dir "$DEMO/pki" --key-type ecdsa-p384 --passphrase-file "$DEMO/passphrase.txt"

say "The plan reads the PKI folder and the clusters (certificates only, no passphrase): the steps left"
$AIRGAP mesh trust "${FLEET[@]}" --plan "$DEMO/pki" | sed -n '/^plan/,$p'

say "Stage 1 on emu-1: trust {A,B}, still issuing under A; restart its injected workloads (ASM 1.8)"
rot_bundle cluster1 cluster1-trust-ab.bundle
rot_import emu-1 cluster1 cluster1-trust-ab.bundle
rot_restart emu-1 demo
rot_check

say "Out of order, refused: cluster1's intermediate moves under B while emu-2 still trusts only A"
$AIRGAP ca rotate cluster1 --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt" > /dev/null
rot_bundle cluster1 cluster1-issuer-b.bundle
before=$(kubectl --context emu-1 -n istio-system get secret cacerts -o jsonpath='{.data.cert-chain\.pem}' | sha256sum)
if rot_import emu-1 cluster1 cluster1-issuer-b.bundle; then
  echo "   UNEXPECTED: the gate let a split through" >&2
  exit 1
fi
after=$(kubectl --context emu-1 -n istio-system get secret cacerts -o jsonpath='{.data.cert-chain\.pem}' | sha256sum)
[ "$before" = "$after" ] && echo "   refused (exit 4); emu-1's cacerts is byte-identical, no backup, nothing recorded"

say "Stage 1 on emu-2: trust {A,B} (no injected namespace there: nothing to restart)"
rot_bundle cluster2 cluster2-trust-ab.bundle
rot_import emu-2 cluster2 cluster2-trust-ab.bundle
rot_restart emu-2
rot_check

say "Stage 2: the same issuer-B bundle now passes (istiod published B into the injected namespaces first)"
rot_import emu-1 cluster1 cluster1-issuer-b.bundle
rot_restart emu-1 demo
rot_check
$AIRGAP ca rotate cluster2 --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt" > /dev/null
rot_bundle cluster2 cluster2-issuer-b.bundle
rot_import emu-2 cluster2 cluster2-issuer-b.bundle
rot_restart emu-2
rot_check

say "The PKI's clusters in no emulated context move under B too (cluster4's key stays off the root host: a CSR)"
$AIRGAP ca rotate cluster3 --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt" > /dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ROT/cluster4-ca-key.pem" \
  -subj "/O=Istio/CN=Intermediate CA cluster4" -out "$ROT/cluster4.csr" 2> /dev/null
$AIRGAP ca rotate cluster4 --csr "$ROT/cluster4.csr" --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt" \
  > /dev/null
echo "   cluster3 and cluster4 now under B"

say "Stage 3, offline: every cluster issues under B, so the old root retires (ca rotate-root --finish)"
$AIRGAP ca rotate-root --dir "$DEMO/pki" --finish --passphrase-file "$DEMO/passphrase.txt"

say "Stage 4: trust {B} only, on each cluster"
for n in 1 2; do
  rot_bundle "cluster$n" "cluster$n-trust-b.bundle"
  rot_import "emu-$n" "cluster$n" "cluster$n-trust-b.bundle"
  rot_restart "emu-$n" "$([ "$n" = 1 ] && echo demo)"
done
$AIRGAP mesh trust "${FLEET[@]}" --plan "$DEMO/pki"

say "The jump host's history: every import, with its bundle, sequence and CA fingerprint"
.venv/bin/python - "$AIRGAP_STATE_DIR" <<'PY'
import sys
from pathlib import Path
from airgap.core.history import read_events
for e in read_events(Path(sys.argv[1])).events:
    if e["kind"] == "bundle-import":
        print(f"   {e['time']} {e['cluster']} -> {e['context'] or '(rendered)'} sequence {e['sequence']} "
              f"ca {e['ca_fingerprint']} forced {e['forced_split']}")
PY

cat >> "$DEMO/MADE" <<MADE
  pki/next-root/ -> pki/root-cert.pem                      root B (ca rotate-root), the root after --finish
  pki/archive/root/<serial>/                               root A, retired by ca rotate-root --finish
  rotation/cluster{1,2}-*.bundle                           the rotation's bundles: trust {A,B}, issuer B, trust {B}
  (emulator) cacerts of emu-1/emu-2                        issuing under B, trusting only B (mesh trust: whole)
  jump/state/history.jsonl                                 every bundle import, for the auditor's report
MADE
