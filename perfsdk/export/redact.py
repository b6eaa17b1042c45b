"""Redaction: attribute values pass through a policy before they reach disk.

The default is safe, because personal data travels in more places than keys
named "email":

- keys that commonly carry secrets or personal data (authorization headers,
  cookies, passwords, tokens, keys, e-mail addresses, forwarded client
  addresses, ...) are dropped, and nothing is written unless the user opts in;
- URL attributes (``http.target``, ``http.url``, ``url.full``, ``url.query``,
  ``url.original``) keep their path and the *names* of their query parameters
  -- routes stay analysable -- but every parameter value (and a parameter
  without one, which may be a key itself) is replaced (``safe_params`` lists the
  harmless ones to keep), the user-info (``user:password@``), the fragment and
  the path's ``;parameters`` (``;jsessionid=...``) are removed;
- in every text written in clear (other attribute values, span names, status
  messages), each URL is redacted the same way (a referer header, a connection
  string, an exception's "for url: ..."), and e-mail addresses and card numbers
  (digit runs that pass the Luhn check) are replaced.

Keys can instead be *hashed* with a keyed hash (HMAC-SHA256), so rows can be
joined on the value without anyone reading it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from perfsdk._native import redact_texts
from perfsdk._runtime import check_bool, check_int

__all__ = ["REDACTED", "SENSITIVE", "URL_KEYS", "WHOLE_PARTS", "Redactor", "scrub"]

#: Key fragments that mark a value as sensitive, matched case-insensitively
#: anywhere inside the key's parts (split on dots, dashes, underscores and spaces).
SENSITIVE = (
    "authorization", "cookie", "password", "passwd", "secret", "token", "apikey", "session",
    "email", "credit", "card", "ssn", "private", "credential", "forwarded", "realip", "phone",
)
#: Attributes holding a URL (or its query): redacted part by part, not dropped.
URL_KEYS = ("http.target", "http.url", "url.full", "url.query", "url.original")
#: What a redacted query value, e-mail address or card number becomes.
REDACTED = "REDACTED"
SCRUB_MARGIN = 256  # characters scrubbed past a value's cut, so an address across it is still found
#: Fragments too short to match inside a longer word ("author", "ssnapshot"):
#: they must be a whole part of the key ("x-auth", "db_pwd", "api-key").
WHOLE_PARTS = ("auth", "pwd", "key", "pin", "cvv")

MEMO_ENTRIES = 4096  # (key, value) outcomes remembered per value type; short scalar values only
_MEMO_TYPES = frozenset((str, bool, int, float))
_SPLIT = re.compile(r"[.\s_\-]+")
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")  # a run's start only: linear
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
#: A URL inside free text: ``scheme://...``, or a path (``/reset``, ``api/reset``, ``host.example/x``)
#: with a query, ``;params`` or a fragment ("GET /reset?token=..."). Each alternative starts only
#: where a word or a path starts, so a search stays near linear.
_URL = re.compile(r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s<>\"']+"
                  r"|(?<![\w/.\-])[\w.\-]*/[^\s<>\"'?;#]*[?;#][^\s<>\"']*")
_PATH_PARAMS = re.compile(r";[^/]*")  # "/cart;jsessionid=..." (a session id in the path)


class Redactor:
    """Decides, key by key, whether an attribute value is kept, hashed or dropped.

    Parameters
    ----------
    allow
        If given, only these keys are kept (exact names; URL keys among them are still redacted
        as URLs); everything else is dropped, but for ``hash_keys`` and ``opt_in``.
    deny
        Key fragments to drop (default ``SENSITIVE``); pass ``()`` to drop none.
    hash_keys
        Keys whose values are replaced by a keyed hash instead of being dropped.
    opt_in
        Keys written in clear, as they are, even though a ``deny`` fragment matches them.
    hash_key
        The HMAC key; default ``PERFSDK_REDACTION_KEY`` from the environment,
        else a random key per process (hashes then join within one process only).
    max_value_chars
        Longer values are cut (and marked with a trailing ``...``).
    url_keys
        Attributes holding URLs, redacted part by part (default ``URL_KEYS``).
    safe_params
        Query parameters whose values are harmless and kept (e.g. ``["page", "sort"]``).
    scrub_values
        Redact URLs and replace e-mail addresses and card numbers inside every value, span name
        and status message kept in clear.

    Examples
    --------
    >>> r = Redactor(hash_keys=["enduser.id"], hash_key=b"k", safe_params=["page"])
    >>> r({"http.route": "/cart", "http.request.header.authorization": "Bearer x",
    ...    "enduser.id": "alice", "http.target": "/cart?email=alice%40example.com&page=2"})
    {'http.route': '/cart', 'enduser.id': 'hmac:ec631a55bb81f5b9dc96aa930a45628d', 'http.target': '/cart?email=REDACTED&page=2'}
    >>> r({"url.full": "https://bob:hunter2@shop.example/pay?card=4111111111111111#token=abc"})
    {'url.full': 'https://shop.example/pay?card=REDACTED'}
    >>> r({"db.connection_string": "postgresql://app:hunter2@db:5432/shop"})
    {'db.connection_string': 'postgresql://db:5432/shop'}
    """

    def __init__(
        self,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = SENSITIVE,
        hash_keys: Iterable[str] = (),
        opt_in: Iterable[str] = (),
        hash_key: bytes | None = None,
        max_value_chars: int = 1024,
        url_keys: Iterable[str] = URL_KEYS,
        safe_params: Iterable[str] = (),
        scrub_values: bool = True,
    ) -> None:
        for name, value in (("allow", allow), ("deny", deny), ("hash_keys", hash_keys), ("opt_in", opt_in),
                            ("url_keys", url_keys), ("safe_params", safe_params)):
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a collection of strings, not one string: got {value!r}")
        if hash_key is not None and not isinstance(hash_key, bytes):
            raise TypeError(f"hash_key must be bytes, got {hash_key!r}")
        check_int("max_value_chars", max_value_chars, minimum=1)
        self.url_keys = frozenset(url_keys)
        self.safe_params = frozenset(safe_params)
        self.scrub_values = check_bool("scrub_values", scrub_values)
        self.allow = None if allow is None else frozenset(allow)
        self.deny = tuple(d.lower() for d in deny)
        self.deny_whole = WHOLE_PARTS if deny is SENSITIVE else ()
        self.hash_keys = frozenset(hash_keys)
        self.opt_in = frozenset(opt_in)
        env_key = os.environ.get("PERFSDK_REDACTION_KEY")
        self._hash_key = hash_key or (env_key.encode() if env_key else os.urandom(32))
        self.max_value_chars = max_value_chars
        self._verdicts: dict[str, str] = {}  # key -> keep / hash / drop (keys repeat a lot)
        # per value type (1, 1.0 and True are equal keys but are written differently): (key, value)
        # -> what is written. A (key, value) tuple of plain values is untracked by the collector at
        # its first collection; one with the type in it would stay tracked, and reach the oldest
        # generation (a new entry a span when a value never repeats, such as a client's port).
        self._memo: dict[type, dict[tuple[str, Any], str | None]] = {kind: {} for kind in _MEMO_TYPES}
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
            return "clear"  # written as it is: the user said so
        if self.allow is not None and key not in self.allow:
            return "drop"  # before the URL keys: "only these keys" means only these
        if key in self.url_keys:
            return "url"
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
        """The attributes that may be written, as strings.

        Keys and values repeat a lot (``http.method=GET``): each pair's outcome is
        remembered (a bounded memo, cleared when full), so most cost a lookup.
        """
        if not attributes:
            return {}
        return {key: text for key, text in zip(attributes, self.texts(list(attributes), list(attributes.values())))
                if text is not None}

    def texts(self, keys: list[str], values: list[Any]) -> list[str | None]:
        """Each attribute ``(keys[i], values[i])`` as it may be written (a string), or None
        where it is dropped (counted in ``dropped``): ``__call__`` without a dict, for the
        span writer, which redacts a whole batch's attributes in one (compiled) loop."""
        texts, dropped = redact_texts(self._memo, keys, values, self._redact, MEMO_ENTRIES)
        self.dropped += dropped
        return texts

    def _redact(self, key: str, value: Any) -> str | None:
        """One attribute as it may be written, or None to drop it."""
        verdict = self.verdict(key)
        if verdict == "drop":
            return None
        text = value if isinstance(value, str) else _text(value)
        if verdict == "hash":
            return self.hash(text)
        if verdict == "url":
            text = self.url(text, query_only=key == "url.query")
        return self._bounded(text, scrub_it=verdict != "clear")

    def message(self, value: Any) -> str:
        """A span's status description or name as it may be written: scrubbed and cut as a value
        kept in clear is (an exception's message often carries what the attributes are kept
        from, and a span named after a raw request target carries its query).

        >>> Redactor(max_value_chars=40).message("bad password for alice@example.com " + "x" * 50)
        'bad password for REDACTED xxxxxxxxxxxxxx...'
        >>> Redactor().message("GET /reset;jsessionid=9F?token=abc&lang")
        'GET /reset?token=REDACTED&REDACTED'
        """
        return self._bounded(value if isinstance(value, str) else str(value), scrub_it=True)

    def _bounded(self, text: str, scrub_it: bool) -> str:
        cut = len(text) > self.max_value_chars
        if self.scrub_values and scrub_it:
            # what is kept, and enough beyond it that a URL, address or card across the cut is whole
            text = scrub(self._urls(text[: self.max_value_chars + SCRUB_MARGIN] if cut else text))
        if cut:
            text = text[: self.max_value_chars] + "..."
        return text

    def _urls(self, text: str) -> str:
        """``text`` with each URL in it redacted as a URL attribute is (``url``)."""
        if "://" in text or "?" in text or ";" in text or "#" in text:  # most texts have none: no regex
            text = _URL.sub(lambda found: self.url(found.group()), text)
        return text

    def url(self, text: str, query_only: bool = False) -> str:
        """``text`` (a URL, a request target, or with ``query_only`` a query string) with
        its query values, user-info and fragment removed; path and parameter names stay."""
        if query_only:
            return self._query(text)
        try:
            parts = urlsplit(text)
        except ValueError:
            return REDACTED  # not a URL we can take apart: keep none of it
        netloc = parts.netloc.rpartition("@")[2]  # user:password@host -> host
        path = _PATH_PARAMS.sub("", parts.path) if ";" in parts.path else parts.path
        return urlunsplit((parts.scheme, netloc, path, self._query(parts.query), ""))

    def _query(self, query: str) -> str:
        if not query:
            return query
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            if name in self.safe_params or not pair:
                pairs.append(pair)
            else:  # a parameter without a value ("?sk_live_...") may be the secret itself
                pairs.append(f"{name}={REDACTED}" if eq else REDACTED)
        return "&".join(pairs)


def scrub(text: str) -> str:
    """``text`` with e-mail addresses and card numbers (Luhn-valid digit runs) replaced.

    >>> scrub("receipt for alice@example.com, card 4111 1111 1111 1111, order 12345")
    'receipt for REDACTED, card REDACTED, order 12345'
    """
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(REDACTED, text)
    if _CARD.search(text) is not None:  # in C: most values have no long digit run
        text = _CARD.sub(lambda m: REDACTED if _luhn(m.group()) else m.group(), text)
    return text


def _luhn(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    total = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return total % 10 == 0


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
