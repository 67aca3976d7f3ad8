# shellcheck shell=bash
# Part 11: mesh install by digest from the private registry (issue 22, docs/images-install.md).
# Needs part 10's $DEMO/images.env (REGISTRY=HOST:PORT[/PATH], REGISTRY_CA=PEM) and $DEMO/images.bundle.
if [ -f "$DEMO/images.env" ] && [ -f "$DEMO/images.bundle" ]; then
  # shellcheck source=/dev/null
  . "$DEMO/images.env"
  say "Render the install with every Istio image from the private registry, pinned by digest (--images)"
  if $AIRGAP mesh install --release "$DEMO/jump/asm" --cluster-name cluster1 --network network1 \
    --mesh-id proj-demo --east-west --images "$DEMO/images.bundle" --trust "$DEMO/keys/officer.pub" \
    --registry "$REGISTRY" --output-dir "$DEMO/rendered-pinned"; then
    grep -E "^  (hub|tag):|image:" "$DEMO/rendered-pinned/cluster.yaml" | sed 's/^/   /'
    if grep -rqE "gcr\.io|docker\.io|1\.8\.6-asm\.8" "$DEMO"/rendered-pinned/*.yaml; then
      echo "unexpected: a public hub or the mutable release tag in $DEMO/rendered-pinned" >&2
      exit 1
    fi
    echo "   every image is $REGISTRY/NAME@sha256:...; no public hub, no mutable tag"
    echo "  rendered-pinned/cluster.yaml                             mesh install by digest from $REGISTRY" >> "$DEMO/MADE"
  else
    echo "   (the pinned render was refused: see the error above)"
    echo "  (rendered-pinned/ not made: the pinned render was refused)" >> "$DEMO/MADE"
  fi
else
  say "Install by digest: skipped (no \$DEMO/images.env from the images part)"
  echo "  (rendered-pinned/ not made: no images bundle in this demo)" >> "$DEMO/MADE"
fi
