# shellcheck shell=bash
# Part 11: mesh install by digest from the private registry (issue 22, docs/images-install.md).
# Needs part 10's $DEMO/images.env: REGISTRY=HOST:PORT/PATH (still running), REGISTRY_CA, and
# REGISTRY_AUTHFILE, IMAGES_BUNDLE, IMAGES_TRUST when it sets them (else $DEMO/images.bundle and
# $DEMO/keys/officer.pub). The release is part 10's Istio release when there is one (its images are
# the bundle's), else the walk's.
if [ -f "$DEMO/images.env" ]; then
  # shellcheck source=/dev/null
  . "$DEMO/images.env"
  PIN_BUNDLE="${IMAGES_BUNDLE:-$DEMO/images.bundle}"
  PIN_TRUST="${IMAGES_TRUST:-$DEMO/keys/officer.pub}"
  PIN_RELEASE=("--release" "$DEMO/jump/asm")
  if [ -d "$DEMO/images/istio" ]; then PIN_RELEASE=("--release" "$DEMO/images/istio" "--profile" "cni"); fi
  PIN_FLAGS=("--images" "$PIN_BUNDLE" "--trust" "$PIN_TRUST" "--registry" "$REGISTRY")
  say "Render the install with every Istio image from the private registry, pinned by digest (--images)"
  if $AIRGAP mesh install "${PIN_RELEASE[@]}" --cluster-name cluster1 --network network1 --mesh-id proj-demo \
    --east-west "${PIN_FLAGS[@]}" --output-dir "$DEMO/rendered-pinned"; then
    grep -E "^  (hub|tag):|image:" "$DEMO/rendered-pinned/cluster.yaml" | sed 's/^ */   /'
    if grep -rqE "gcr\.io|docker\.io|:1\.8\.6" "$DEMO"/rendered-pinned/*.yaml; then
      echo "unexpected: a public hub or the release's mutable tag in $DEMO/rendered-pinned" >&2
      exit 1
    fi
    echo "   every image is $REGISTRY/NAME@sha256:...; no public hub, no mutable tag"
    echo "  rendered-pinned/cluster.yaml                             mesh install by digest from $REGISTRY" >> "$DEMO/MADE"
    if [ -n "${REGISTRY_CA:-}" ] && [ -n "${REGISTRY_AUTHFILE:-}" ]; then
      say "Live, the registry is asked for every pinned digest first (a dry run on emu-1: nothing changes)"
      $AIRGAP mesh install --context emu-1 "${PIN_RELEASE[@]}" --cluster-name cluster1 --network network1 \
        --mesh-id proj-demo "${PIN_FLAGS[@]}" --ca-bundle "$REGISTRY_CA" --authfile "$REGISTRY_AUTHFILE" --dry-run \
        | grep -E "^image |dry run"
    fi
  else
    echo "   (the pinned render was refused: see the error above)"
    echo "  (rendered-pinned/ not made: the pinned render was refused)" >> "$DEMO/MADE"
  fi
else
  say "Install by digest: skipped (no \$DEMO/images.env from the images part)"
  echo "  (rendered-pinned/ not made: no images bundle in this demo)" >> "$DEMO/MADE"
fi
