"""guardrail_core: the one package every account-guardrail function imports (Lambda layer)."""

__version__ = "0.1.0"
