"""Text from the guide (../shared/seed/) that several tests apply as it is."""

from __future__ import annotations

REV = "asm-186-8"

# The guide's istiod-service.yaml, verbatim (comments dropped).
ISTIOD_SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels:
    istio.io/rev: asm-186-8
    app: istiod
    istio: pilot
    release: istio
spec:
  ports:
    - port: 15010
      name: grpc-xds
      protocol: TCP
    - port: 15012
      name: https-dns
      protocol: TCP
    - port: 443
      name: https-webhook
      targetPort: 15017
      protocol: TCP
    - port: 15014
      name: http-monitoring
      protocol: TCP
  selector:
    app: istiod
    istio.io/rev: asm-186-8
"""
