#!/usr/bin/env bash
# The offline ceremony, then the air-gap workflow, in a fresh folder (./demo by default).
set -euo pipefail
cd "$(dirname "$0")/.."
AIRGAP="${AIRGAP:-.venv/bin/airgap}"
DEMO="${1:-demo}"
rm -rf "$DEMO"
mkdir -p "$DEMO"
umask 077
STEP=0
say() {  # numbered steps; a line starting with --- is a scene change, not a step
  case "$1" in
    ---*) printf '\n\033[1m%s\033[0m\n' "$*" ;;
    *) STEP=$((STEP + 1)); printf '\n\033[1m== %s. %s\033[0m\n' "$STEP" "$*" ;;
  esac
}

say "The officer checks the root host first: Python, OpenSSL, tools, no default route (airgap doctor; offline)"
$AIRGAP doctor

say "The security officer picks a passphrase for the PKI folder (kept in a file here; a prompt in real life)"
head -c 24 /dev/urandom | base64 > "$DEMO/passphrase.txt"
echo "   $DEMO/passphrase.txt"

say "The officer's signing key: signs transfer bundles and every entry of the ceremony log"
$AIRGAP keys new officer --kind signing --out "$DEMO/keys" --passphrase-file "$DEMO/passphrase.txt"
export AIRGAP_LOG_KEY="$DEMO/keys/officer.key"

say "Root CA on the offline host (ECDSA P-384 for the demo's speed; the default is RSA-4096)"
$AIRGAP ca init --dir "$DEMO/pki" --key-type ecdsa-p384 --passphrase-file "$DEMO/passphrase.txt"

say "One intermediate CA per cluster, issued in parallel"
$AIRGAP ca issue cluster1 cluster2 cluster3 --dir "$DEMO/pki" --key-type ecdsa-p256 \
  --passphrase-file "$DEMO/passphrase.txt"

say "The inventory: every intermediate checked as istiod would"
$AIRGAP ca list --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt"

say "Revoke and rotate: cluster3's intermediate is replaced, and the root-signed CRL lists the old one"
$AIRGAP ca revoke cluster3 --reason superseded --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt"
$AIRGAP ca rotate cluster3 --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt"
openssl crl -in "$DEMO/pki/ca-crl.pem" -noout -text | grep -E -A1 "Serial Number|Reason Code" | grep -v "^--"

say "The auditor checks the signed ceremony log, offline"
$AIRGAP audit verify "$DEMO/pki" --trust "$DEMO/keys/officer.pub"
$AIRGAP audit show "$DEMO/pki"
$AIRGAP ca list --dir "$DEMO/pki" --expiring-within 90 && echo "   nothing expires within 90 days"

say "Split custody: a second root that opens only with 2 of its 3 custodians' shares (docs/custody.md)"
for who in alice bob carol; do
  $AIRGAP keys new "$who" --kind recipient --out "$DEMO/custodians" --no-passphrase >/dev/null
  echo "   custodian $who: $(cat "$DEMO/custodians/$who.pub")"
done
$AIRGAP ca init --dir "$DEMO/pki-custody" --key-type ecdsa-p384 --custody 2-of-3 \
  --custodian "$DEMO/custodians/alice.pub" --custodian "$DEMO/custodians/bob.pub" \
  --custodian "$DEMO/custodians/carol.pub" --passphrase-file "$DEMO/passphrase.txt"

say "Alice and Carol bring their shares: the root signs an intermediate"
$AIRGAP ca issue cluster9 --dir "$DEMO/pki-custody" --key-type ecdsa-p256 --passphrase-file "$DEMO/passphrase.txt" \
  --share "$DEMO/custodians/alice.key" --share "$DEMO/custodians/carol.key"
.venv/bin/python - "$DEMO/pki-custody/ceremony.log" <<'PY'
import json
import sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    shares = entry["params"].get("custody", {}).get("shares")
    if shares:
        print("   ceremony log:", entry["act"], entry["params"].get("cluster", ""), "opened with shares", shares)
PY

say "Bob alone is refused (exit 3), and nothing is written"
if $AIRGAP ca issue cluster8 --dir "$DEMO/pki-custody" --key-type ecdsa-p256 \
  --passphrase-file "$DEMO/passphrase.txt" --share "$DEMO/custodians/bob.key"; then
  echo "unexpected: accepted" >&2; exit 1
else
  test ! -e "$DEMO/pki-custody/cluster8" && echo "   refused, as it should be"
fi
$AIRGAP ca custody status --dir "$DEMO/pki-custody"

say "The operator's recipient key (on the jump host; only its .pub crosses to the officer)"
$AIRGAP keys new operator --kind recipient --out "$DEMO/jump/keys" --no-passphrase

say "A signed bundle for cluster1: cacerts files, the CA key age-encrypted to the operator"
$AIRGAP bundle create cluster1 --dir "$DEMO/pki" --sign-key "$DEMO/keys/officer.key" \
  --recipient "$DEMO/jump/keys/operator.pub" --passphrase-file "$DEMO/passphrase.txt" --out "$DEMO/cluster1.bundle"
$AIRGAP bundle create cluster2 --dir "$DEMO/pki" --sign-key "$DEMO/keys/officer.key" \
  --recipient "$DEMO/jump/keys/operator.pub" --passphrase-file "$DEMO/passphrase.txt" --out "$DEMO/cluster2.bundle"

say "--- the bundle crosses the air gap (USB stick, data diode); on the jump host: ---"
export AIRGAP_STATE_DIR="$DEMO/jump/state"
cp "$DEMO/keys/officer.pub" "$DEMO/jump/officer.pub"
cp "$DEMO/cluster1.bundle" "$DEMO/jump/cluster1.bundle"
cp "$DEMO/cluster2.bundle" "$DEMO/jump/cluster2.bundle"

say "What the bundle claims (unverified)"
$AIRGAP bundle inspect "$DEMO/jump/cluster1.bundle"

say "Verify it against the officer's public key"
$AIRGAP bundle verify "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub"

say "The GitOps engine's age key (Flux's sops-age Secret in real life): rendered Secrets are encrypted to it"
$AIRGAP keys new flux --kind recipient --out "$DEMO/flux" --no-passphrase

say "Import: verify, decrypt, check the CA as istiod would, render the manifests (cacerts as a SOPS file)"
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --output-dir "$DEMO/jump/rendered" \
  --sops-age "$DEMO/flux/flux.pub"
ls -l "$DEMO/jump/rendered"
cat "$DEMO/jump/rendered/00-namespace.yaml"
grep -E "^(data|  ca-key.pem|sops)" "$DEMO/jump/rendered/10-cacerts-secret.sops.yaml" | cut -c1-90

say "The auditor: the officer's ceremony log still holds the head this bundle carried"
H=$(.venv/bin/python -c 'import json,sys; print(next(iter(json.load(open(sys.argv[1]))["accepted"].values()))["ceremony_head"])' "$DEMO/jump/state/accepted.json")
$AIRGAP audit verify "$DEMO/pki" --trust "$DEMO/keys/officer.pub" --head "$H"

if command -v age >/dev/null 2>&1; then
  say "Interop: the standard age CLI opens the same secret member"
  tar -xOf "$DEMO/jump/cluster1.bundle" cacerts/ca-key.pem.age | age -d -i "$DEMO/jump/keys/operator.key" \
    | openssl pkey -noout && echo "   age -d gave a valid private key (not shown)"
fi

say "A bundle made for cluster1 is refused for cluster2 (exit 4)"
if $AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster2 --dry-run; then
  echo "unexpected: accepted" >&2; exit 1
else
  echo "   refused, as it should be"
fi

say "--- keys that never cross the gap: cluster4's CA key is made on the jump host, only a CSR crosses ---"
head -c 24 /dev/urandom | base64 > "$DEMO/jump/passphrase.txt"
$AIRGAP keys new requester --kind signing --out "$DEMO/jump/keys" --no-passphrase
$AIRGAP ca request cluster4 --dir "$DEMO/jump/ca" --sign-key "$DEMO/jump/keys/requester.key" --key-type ecdsa-p256 \
  --passphrase-file "$DEMO/jump/passphrase.txt" --out "$DEMO/jump/cluster4.request"
ls -l "$DEMO/jump/ca/cluster4"

say "--- the signed request crosses to the root host (with the requester's .pub, out of band) ---"
cp "$DEMO/jump/cluster4.request" "$DEMO/jump/keys/requester.pub" "$DEMO/"
$AIRGAP ca sign "$DEMO/cluster4.request" --trust "$DEMO/requester.pub" --dir "$DEMO/pki" \
  --out "$DEMO/signed-cluster4" --passphrase-file "$DEMO/passphrase.txt"
echo "   PKI/cluster4 holds no key: $(ls "$DEMO/pki/cluster4" | tr '\n' ' ')"

say "A keyless bundle for cluster4: certificates only, no recipient needed, bound to the key's SPKI"
$AIRGAP bundle create cluster4 --dir "$DEMO/pki" --sign-key "$DEMO/keys/officer.key" \
  --passphrase-file "$DEMO/passphrase.txt" --out "$DEMO/cluster4.bundle"

say "--- back on the jump host: cacerts from the bundle's certificates and the local key ---"
cp "$DEMO/cluster4.bundle" "$DEMO/jump/cluster4.bundle"
$AIRGAP bundle import "$DEMO/jump/cluster4.bundle" --trust "$DEMO/jump/officer.pub" \
  --key "$DEMO/jump/ca/cluster4/ca-key.pem" --key-passphrase-file "$DEMO/jump/passphrase.txt" \
  --cluster cluster4 --output-dir "$DEMO/jump/rendered-cluster4" --sops-age "$DEMO/flux/flux.pub"
openssl verify -CAfile "$DEMO/pki/root-cert.pem" "$DEMO/signed-cluster4/ca-cert.pem"
$AIRGAP ca list --dir "$DEMO/pki" | grep -E "cluster4|key check"

say "A stand-in release mirror (the real ASM tarball cannot be downloaded here: this one is built and
    signed by the tests, and its bin/istioctl only records its arguments)"
.venv/bin/python - "$DEMO/mirror" <<'PY'
import sys
from pathlib import Path
from tests.release_fixtures import make_signed_release
tarball, sig, pub = make_signed_release(Path(sys.argv[1]))
(Path(sys.argv[1]) / "release-key.pem").write_bytes(pub.read_bytes())
print(f"   {tarball.name}, {sig.name}, signing key release-key.pem")
PY

say "Fetch from the mirror, verify against the pinned key, extract safely (RELEASE.json records every file)"
$AIRGAP release fetch 1.8.6-asm.8 --base-url "file://$(cd "$DEMO" && pwd)/mirror" --key "$DEMO/mirror/release-key.pem" \
  --out "$DEMO/jump/releases"
$AIRGAP release fetch 1.8.6-asm.8 --base-url "file://$(cd "$DEMO" && pwd)/mirror" --key "$DEMO/mirror/release-key.pem" \
  --out "$DEMO/jump/releases"   # again: safe to re-run, nothing is downloaded twice
$AIRGAP release verify "$DEMO/jump/releases/istio-1.8.6-asm.8-linux-amd64.tar.gz" --key "$DEMO/mirror/release-key.pem"
$AIRGAP release extract "$DEMO/jump/releases/istio-1.8.6-asm.8-linux-amd64.tar.gz" \
  --signature "$DEMO/jump/releases/istio-1.8.6-asm.8-linux-amd64.tar.gz.1.sig" \
  --key "$DEMO/mirror/release-key.pem" --out "$DEMO/jump/asm"

say "Render the whole install without touching a cluster (--output-dir)"
$AIRGAP mesh install --release "$DEMO/jump/asm" --cluster-name cluster1 --network network1 --mesh-id proj-demo \
  --output-dir "$DEMO/jump/rendered-install"
ls "$DEMO/jump/rendered-install"

say "A Git tree for Flux / Argo CD: clusters/NAME/ with a kustomization.yaml, Secrets SOPS-encrypted"
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context cluster1 \
  --output-dir "$DEMO/gitops" --sops-age "$DEMO/flux/flux.pub"
$AIRGAP mesh install --context cluster1 --layout clusters --release "$DEMO/jump/asm" --cluster-name cluster1 \
  --network network1 --mesh-id proj-demo --output-dir "$DEMO/gitops" --sops-age "$DEMO/flux/flux.pub"
(cd "$DEMO/gitops" && find . -type f | sort && cat clusters/cluster1/kustomization.yaml)
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$DEMO/gitops/clusters/cluster1" | grep -E "^kind:|ENC\[AES256_GCM" | cut -c1-60 | sort | uniq -c
fi
if grep -rq "PRIVATE KEY" "$DEMO/gitops"; then echo "unexpected: a private key in the Git tree" >&2; exit 1; fi
echo "   no private key anywhere under $DEMO/gitops"
SOPS_AGE_KEY_FILE="$DEMO/flux/flux.key" .venv/bin/sops decrypt "$DEMO/gitops/clusters/cluster1/10-cacerts-secret.sops.yaml" \
  | grep -c "ca-key.pem: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t" | sed 's/^/   sops decrypt with the Flux key gives back the CA key (lines: /; s/$/)/'

say "Render again: Git would see no change (the SOPS file is left as it is)"
before=$(sha256sum "$DEMO/gitops/clusters/cluster1/10-cacerts-secret.sops.yaml")
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context cluster1 \
  --output-dir "$DEMO/gitops" --sops-age "$DEMO/flux/flux.pub"
[ "$before" = "$(sha256sum "$DEMO/gitops/clusters/cluster1/10-cacerts-secret.sops.yaml")" ] && echo "   unchanged, byte for byte"

say "The connected half against the Kubernetes API EMULATOR (tests/kubeapi), NOT a real cluster"
mkdir -p "$DEMO/emu"
.venv/bin/python -m tests.kubeapi --kubeconfig "$DEMO/emu/kubeconfig" --clusters 2 --workloads --publish-roots-after 0.5 \
  --istioctl-log "$DEMO/emu/istioctl.log" > "$DEMO/emu/emulator.log" 2>&1 &
EMU_PID=$!
trap 'kill $EMU_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q '^kubeconfig:' "$DEMO/emu/emulator.log" && break; sleep 0.1; done
export KUBECONFIG="$DEMO/emu/kubeconfig" ISTIOCTL_LOG="$DEMO/emu/istioctl.log"
$AIRGAP preflight --context emu-1 || echo "   (preflight found the problems listed above)"
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context emu-1 --context emu-2 --dry-run
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context emu-1
$AIRGAP mesh install --context emu-1 --release "$DEMO/jump/asm" --cluster-name cluster1 --network network1 \
  --mesh-id proj-demo
$AIRGAP mesh inject demo --context emu-1 --restart
$AIRGAP mesh status --context emu-1 \
  || echo "   (status flags the proxies run by tag: this install had no --images; see docs/images.md)"
if command -v kubectl >/dev/null 2>&1; then
  say "The real kubectl reads the same emulated cluster"
  kubectl --context emu-1 -n demo get pods --show-labels
  kubectl --context emu-1 -n istio-system get secret cacerts
  kubectl --context emu-1 auth can-i create clusterrolebindings --all-namespaces
fi

say "A second cluster on its own network (with its east-west gateway), then one mesh across both"
$AIRGAP bundle import "$DEMO/jump/cluster2.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster2 --context emu-2
$AIRGAP mesh install --context emu-2 --release "$DEMO/jump/asm" --cluster-name cluster2 --network network2 \
  --mesh-id proj-demo --east-west
$AIRGAP mesh connect --context emu-1 --context emu-2 --dry-run
$AIRGAP mesh connect --context emu-1 --context emu-2
$AIRGAP mesh connect --context emu-1 --context emu-2   # again: nothing to change
# the same remote secrets for Git: their API tokens SOPS-encrypted to the Flux key
$AIRGAP mesh connect --context emu-1 --context emu-2 --output-dir "$DEMO/gitops-connect" \
  --sops-age "$DEMO/flux/flux.pub" > /dev/null
grep -l "ENC\[AES256_GCM" "$DEMO"/gitops-connect/clusters/*/50-istio-remote-secret-*.sops.yaml
{ $AIRGAP mesh status --context emu-1 --context emu-2 || true; } | sed -n '/^mesh trust:/,$p'  # proxies by tag: exit 1

say "Run again: nothing changes the second time"
$AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context emu-1
$AIRGAP mesh install --context emu-1 --release "$DEMO/jump/asm" --cluster-name cluster1 --network network1 \
  --mesh-id proj-demo

# Later parts of the walk (images, the fleet's root rotation, the auditor's report), in name order;
# each sees DEMO, AIRGAP, say and the emulator's KUBECONFIG, and lists what it made in $DEMO/MADE.
: > "$DEMO/MADE"
for part in scripts/demo.d/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  . "$part"
done

cat <<MSG

What was made, in $DEMO/:
  pki/root-cert.pem, pki/root-key.pem (encrypted, 0600)    the offline root
  pki/clusterN/{ca-cert,ca-key,cert-chain,root-cert}.pem   each cluster's cacerts files
  pki/inventory.json                                       what was issued, when, until when
  pki/ceremony.log, pki/ceremony-head.json                 every act, hash-chained and signed
  pki/ca-crl.pem                                           the root-signed CRL (cluster3's old intermediate)
  pki-custody/custody/share-{1,2,3}.age                    a 2-of-3 root's SLIP-39 shares, one per custodian
  keys/officer.key (encrypted, 0600), keys/officer.pub     the bundle signing key
  cluster1.bundle                                          signed, CA key encrypted to the operator
  jump/ca/cluster4/ca-key.pem (encrypted, 0600)            a CA key made on the jump host (never crossed)
  cluster4.request, cluster4.bundle                        the CSR going over, the certificates coming back
  jump/rendered/                                           the istio-system Namespace and cacerts Secret (SOPS)
  flux/flux.key, flux/flux.pub                             the GitOps engine's age key (sops-age in flux-system)
  gitops/.sops.yaml, gitops/clusters/cluster1/             a Git tree Flux or Argo CD reconcile (docs/gitops.md)
  gitops-connect/clusters/emu-N/                           mesh connect's remote secrets, SOPS-encrypted
  jump/asm/ (RELEASE.json)                                 the verified, extracted release
  jump/rendered-install/                                   cluster.yaml, istiod Service, the istioctl command
  (emulator) istio-remote-secret-cluster1/2                each cluster's istiod reads the other (mesh connect)
$(cat "$DEMO/MADE")

The cluster steps ran against the loopback Kubernetes API emulator in tests/kubeapi.
On a real jump host, the same commands take a real kubeconfig context.
MSG
