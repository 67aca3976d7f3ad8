"""The jump host: release fetcher, bundle import, Kubernetes, mesh install.

Modules here may import requests or kubernetes, but only inside functions that need them, so
that `airgap --help` stays fast and offline commands never load network code.
"""
