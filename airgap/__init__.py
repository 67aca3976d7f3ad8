"""airgap: service-mesh PKI and installs across an air gap, with every byte verified.

Importing this package is cheap: no cryptography, network or Kubernetes modules are loaded here.
"""

__version__ = "0.1.0"
