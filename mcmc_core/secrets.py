"""Masking of secrets in what the project prints or writes: passwords in URLs and the values of
keys named like a password, token or secret become ``***``.

The services themselves are always given the real values; only copies meant for people, logs
and stores (stdout, MLflow params and tags, ``config.yaml``, checkpoints, ``.hydra/``, reports)
go through :func:`mask_url` / :func:`mask_config`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "mask_config", "mask_error", "mask_text", "mask_url"]

MASK = "***"
_SECRET_KEY = re.compile(
    r"passw(or)?d|passphrase|^pass$|^pwd?$|token|secret|api[_-]?key|credential", re.IGNORECASE)
# scheme://user:password@host -- the password part of any URL inside a text; also without the
# scheme (a mistyped ``postgresql:user:pw@host``).
_URL_PASSWORD = re.compile(
    r"(?P<head>(?:[a-zA-Z][a-zA-Z0-9+.\-]*://)?[^\s:/@'\"]*:)(?P<pw>[^\s@/'\"]+)@")
# key=value of a secret-named key (a Hydra override, ``db_password=...``).
_KEY_VALUE = re.compile(r"(?P<key>[\w.+~\-]+)=(?P<value>[^\s,'\"]+)")


def is_secret_key(key: str) -> bool:
    """Whether a config key (its last dotted part) names a secret: ``password``, ``token``,
    ``secret``, ``api_key``, ``credentials`` ... (any case, as part of a longer name too)."""
    return bool(_SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def mask_url(url: str) -> str:
    """``url`` with its password and any secret query parameter replaced by ``***``
    (``postgresql://me:pw@db/optuna`` -> ``postgresql://me:***@db/optuna``); other text is
    returned unchanged."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        elif parts.scheme in ("http", "https") and userinfo:  # a bare token as the user
            userinfo = MASK
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs],
                              safe="*/:")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret (and urlunsplit would drop sqlite:///'s empty host)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_text(text: str) -> str:
    """``text`` (a log line, an error message, a Hydra override) with the password of every URL
    in it, and the value of every ``key=value`` whose key names a secret, masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}={MASK}" if is_secret_key(m["key"].lstrip("+~"))
                          else m[0], text)


def mask_config(tree: Any) -> Any:
    """A copy of a plain config tree (dicts, lists, scalars) with secret keys' values and URL
    passwords masked."""
    if isinstance(tree, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else mask_config(v))
                for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(mask_config(v) for v in tree)
    if isinstance(tree, str):
        return mask_text(mask_url(tree)) if ("@" in tree or "=" in tree) else tree
    return tree


def mask_error(err: BaseException, limit: int = 300) -> str:
    """``err`` in one line for a warning: its type and first line, secrets masked, at most
    ``limit`` characters."""
    first = (str(err).splitlines() or [""])[0]
    return mask_text(f"{type(err).__name__}: {first}")[:limit]
