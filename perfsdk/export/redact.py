"""Redaction: attribute values pass through a policy before they reach disk.

The default is safe: keys that commonly carry secrets or personal data
(authorization headers, cookies, passwords, tokens, keys, e-mail addresses,
...) are dropped, and nothing is written unless the user opts in. Keys can
instead be *hashed* with a keyed hash (HMAC-SHA256), so rows can be joined on
the value without anyone reading it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any, Iterable, Mapping

__all__ = ["SENSITIVE", "WHOLE_PARTS", "Redactor"]

#: Key fragments that mark a value as sensitive, matched case-insensitively
#: anywhere inside the key's parts (split on dots, dashes, underscores and spaces).
SENSITIVE = (
    "authorization", "cookie", "password", "passwd", "secret", "token", "apikey", "session",
    "email", "credit", "card", "ssn", "private", "credential",
)
#: Fragments too short to match inside a longer word ("author", "ssnapshot"):
#: they must be a whole part of the key ("x-auth", "db_pwd", "api-key").
WHOLE_PARTS = ("auth", "pwd", "key", "pin", "cvv")

_SPLIT = re.compile(r"[.\s_\-]+")


class Redactor:
    """Decides, key by key, whether an attribute value is kept, hashed or dropped.

    Parameters
    ----------
    allow
        If given, only these keys are kept (exact names); everything else is dropped.
    deny
        Key fragments to drop (default ``SENSITIVE``); pass ``()`` to drop none.
    hash_keys
        Keys whose values are replaced by a keyed hash instead of being dropped.
    opt_in
        Keys written in clear even though a ``deny`` fragment matches them.
    hash_key
        The HMAC key; default ``PERFSDK_REDACTION_KEY`` from the environment,
        else a random key per process (hashes then join within one process only).
    max_value_chars
        Longer values are cut (and marked with a trailing ``...``).

    Examples
    --------
    >>> r = Redactor(hash_keys=["enduser.id"], hash_key=b"k")
    >>> r({"http.route": "/cart", "http.request.header.authorization": "Bearer x",
    ...    "enduser.id": "alice"})
    {'http.route': '/cart', 'enduser.id': 'hmac:ec631a55bb81f5b9dc96aa930a45628d'}
    """

    def __init__(
        self,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = SENSITIVE,
        hash_keys: Iterable[str] = (),
        opt_in: Iterable[str] = (),
        hash_key: bytes | None = None,
        max_value_chars: int = 1024,
    ) -> None:
        self.allow = None if allow is None else frozenset(allow)
        self.deny = tuple(d.lower() for d in deny)
        self.deny_whole = WHOLE_PARTS if deny is SENSITIVE else ()
        self.hash_keys = frozenset(hash_keys)
        self.opt_in = frozenset(opt_in)
        env_key = os.environ.get("PERFSDK_REDACTION_KEY")
        self._hash_key = hash_key or (env_key.encode() if env_key else os.urandom(32))
        self.max_value_chars = max_value_chars
        self._verdicts: dict[str, str] = {}  # key -> keep / hash / drop (keys repeat a lot)
        self.dropped = 0

    def verdict(self, key: str) -> str:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._decide(key)
            if len(self._verdicts) < 10_000:
                self._verdicts[key] = verdict
        return verdict

    def _decide(self, key: str) -> str:
        if key in self.hash_keys:
            return "hash"
        if key in self.opt_in:
            return "keep"
        if self.allow is not None and key not in self.allow:
            return "drop"
        lowered = key.lower()
        parts = _SPLIT.split(lowered)
        if any(fragment in lowered.replace("-", "").replace("_", "") for fragment in self.deny):
            return "drop"
        if any(part in self.deny_whole for part in parts):
            return "drop"
        return "keep"

    def hash(self, value: str) -> str:
        return "hmac:" + hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def __call__(self, attributes: Mapping[str, Any] | None) -> dict[str, str]:
        """The attributes that may be written, as strings."""
        if not attributes:
            return {}
        out: dict[str, str] = {}
        for key, value in attributes.items():
            verdict = self.verdict(key)
            if verdict == "drop":
                self.dropped += 1
                continue
            text = value if isinstance(value, str) else _text(value)
            if verdict == "hash":
                text = self.hash(text)
            elif len(text) > self.max_value_chars:
                text = text[: self.max_value_chars] + "..."
            out[key] = text
        return out


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
