"""How a secret is named where it must not be shown: a short, stable, non-reversible label. A leaf module
(it imports nothing from mlxgw), so the config planner, the store and the UI share it without importing
one another."""

from __future__ import annotations

import hashlib


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible label for a key, safe to print."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:10]
