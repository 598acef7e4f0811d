"""logcap: a log-shipping agent that tails files and containers into Grafana Loki.

Every moving part is a pykka actor under an OTP-style supervisor; see docs/ARCHITECTURE.md.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
