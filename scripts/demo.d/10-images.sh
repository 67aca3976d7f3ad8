# shellcheck shell=bash
# Images across the gap (docs/images.md): a source registry seeded with small synthetic images, a
# pull into one signed bundle, verify, and a push by digest into a second registry with TLS and
# credentials. The push registry keeps running until the demo ends (11-images-install.sh renders
# mesh install --images against it); $DEMO/images.env says where it is.

if ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then
  say "--- images across the gap: SKIPPED (needs docker-registry and skopeo: scripts/system-deps.sh) ---"
else
  say "--- images across the gap: two loopback registries, TLS from a test CA; the second wants credentials ---"
  IMG="$DEMO/images"
  eval "$(.venv/bin/python -m tests.images_demo prepare "$IMG")"
  docker-registry serve "$IMG/src/config.yml" > "$IMG/src/registry.log" 2>&1 &
  IMG_SRC_PID=$!
  docker-registry serve "$IMG/dst/config.yml" > "$IMG/dst/registry.log" 2>&1 &
  IMG_DST_PID=$!
  # chain with the trap already set (the emulator's): both registries stop too when the demo ends
  _img_prev_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  trap "kill $IMG_SRC_PID $IMG_DST_PID 2>/dev/null || true; ${_img_prev_trap:-:}" EXIT
  for _ in $(seq 1 100); do
    curl -s --cacert "$IMG_CA" -o /dev/null "https://$SRC/v2/" && curl -s --cacert "$IMG_CA" -o /dev/null "https://$DST/v2/" && break
    sleep 0.1
  done
  .venv/bin/python -m tests.images_demo seed "$IMG" "$SRC"
  echo "   source registry $SRC (istio/pilot: a two-platform index; istio/install-cni: Docker v2), push registry $DST"

  say "A verified Istio 1.8.6 release: which images does an install with CNI need? (its own profile files)"
  $AIRGAP release extract "$IMG_TARBALL" --signature "$IMG_SIG" --key "$IMG/release/release-key.pem" \
    --out "$IMG/istio" > /dev/null 2>&1
  $AIRGAP images list --release "$IMG/istio" --profile cni

  say "Pull them from the source (a mirror of the hub, --from) into one bundle signed by the officer's key: each blob once, every platform"
  $AIRGAP images pull --release "$IMG/istio" --profile cni --from "$SRC/istio" --ca-bundle "$IMG_CA" \
    --sign-key "$DEMO/keys/officer.key" --passphrase-file "$DEMO/passphrase.txt" --out "$DEMO/images.bundle"

  say "--- the images bundle crosses the gap; on the jump host: ---"
  say "Verify the signature, every blob and every manifest reference, in one pass"
  $AIRGAP images verify "$DEMO/images.bundle" --trust "$DEMO/keys/officer.pub"

  say "One flipped byte: exit 1, and nothing would be pushed"
  cp "$DEMO/images.bundle" "$IMG/tampered.bundle"
  .venv/bin/python -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(f.seek(0, 2) // 2); b = f.read(1); f.seek(-1, 1); f.write(bytes([b[0] ^ 1]))' \
    "$IMG/tampered.bundle"   # flip one bit in the middle of a layer
  if $AIRGAP images verify "$IMG/tampered.bundle" --trust "$DEMO/keys/officer.pub"; then
    echo "   UNEXPECTED: a tampered bundle verified"; exit 1
  else
    echo "   refused (exit $?)"
  fi

  say "Push into the private registry by digest: TLS to its CA, credentials only from a containers-auth.json"
  $AIRGAP images push "$DEMO/images.bundle" --trust "$DEMO/keys/officer.pub" --registry "$DST/mesh" \
    --ca-bundle "$IMG_CA" --authfile "$IMG/auth.json"
  $AIRGAP images push "$DEMO/images.bundle" --trust "$DEMO/keys/officer.pub" --registry "$DST/mesh" \
    --ca-bundle "$IMG_CA" --authfile "$IMG/auth.json" > /dev/null   # again: nothing changes
  mkdir -p "$IMG/certs.d" && cp "$IMG_CA" "$IMG/certs.d/ca.crt"
  upstream=$(skopeo inspect --raw --cert-dir "$IMG/certs.d" "docker://$SRC/istio/pilot:1.8.6" | sha256sum | cut -c1-64)
  pushed=$(skopeo inspect --raw --cert-dir "$IMG/certs.d" --authfile "$IMG/auth.json" "docker://$DST/mesh/pilot:1.8.6" \
    | sha256sum | cut -c1-64)
  echo "   skopeo: pilot upstream sha256:$upstream, pushed sha256:$pushed"
  [ "$upstream" = "$pushed" ] || { echo "   UNEXPECTED: digests differ"; exit 1; }

  kill "$IMG_SRC_PID" 2>/dev/null || true   # the source is done; the push registry stays up
  img_abs=$(cd "$IMG" && pwd)
  cat > "$DEMO/images.env" <<ENV
REGISTRY=$DST/mesh
REGISTRY_CA=$img_abs/ca/ca.pem
REGISTRY_AUTHFILE=$img_abs/auth.json
IMAGES_BUNDLE=$(cd "$DEMO" && pwd)/images.bundle
IMAGES_TRUST=$(cd "$DEMO" && pwd)/keys/officer.pub
ENV
  cat >> "$DEMO/MADE" <<MADE
  images.bundle                                            the mesh's images, signed by the officer, every blob once (docs/images.md)
  images.env                                               the push registry (still running), its CA, auth file
MADE
fi
