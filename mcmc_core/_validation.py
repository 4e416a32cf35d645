"""One-line configuration errors: each names the key, the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcmc_core.secrets import MASK, is_secret_key, mask_config


class ConfigError(ValueError):
    """Raised before any work starts when a configuration has invalid values.

    The message has one line per violation, e.g.
    ``sampler.flip_ratio=1.5 is not allowed: expected 0 < flip_ratio <= 1``.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def violation(key: str, value: Any, allowed: str) -> str:
    """Format one violation line; a secret in ``value`` (a URL's password, the value of a key
    named like a password or token) shows as ``***``."""
    shown = MASK if is_secret_key(key) and value not in (None, "") else mask_config(value)
    return f"{key}={shown!r} is not allowed: expected {allowed}"


def check(errors: list[str], ok: bool, key: str, value: Any, allowed: str) -> None:
    """Append a violation line to ``errors`` unless ``ok``."""
    if not ok:
        errors.append(violation(key, value, allowed))


def check_choice(errors: list[str], key: str, value: Any, choices: Iterable[str]) -> None:
    """Append a violation unless ``value`` is one of ``choices``."""
    choices = list(choices)
    check(errors, value in choices, key, value, "one of " + ", ".join(choices))


def raise_if_any(errors: list[str]) -> None:
    """Raise :class:`ConfigError` if ``errors`` is not empty."""
    if errors:
        raise ConfigError(errors)
