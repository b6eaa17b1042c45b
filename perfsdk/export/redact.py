"""Redaction: attribute values pass through a policy before they reach disk.

The default is safe, because personal data travels in more places than keys
named "email":

- keys that name secrets or personal data are dropped, and nothing is written unless the user
  opts in: a key containing ``authorization``, ``cookie``, ``password``, ``token``, ``secret``,
  ``signature``, ``assertion``, ``session``, ``email``, ... (``SENSITIVE``, dashes and
  underscores ignored), or with ``auth``, ``key``, ``pwd``, ``sid``, ``jwt``, ... as a whole part
  (``WHOLE_PARTS``; split on dots, dashes, underscores, spaces and camelCase, a plural ``s``
  ignored) -- one rule, ``Redactor.names_secret``, also used for the keys of ``key=value``
  pairs inside texts;
- URL attributes (``http.target``, ``http.url``, ``url.full``, ``url.query``,
  ``url.original``) keep their path and the *names* of their query parameters
  -- routes stay analysable -- but every parameter value (and a parameter
  without one, which may be a key itself) is replaced (``safe_params`` lists the
  harmless ones to keep), the user-info (``user:password@``, to its last ``@``, see
  ``Redactor.url``), the fragment and the path's ``;parameters`` (``;jsessionid=...``) are
  removed, and the host's ``;parameters`` (``jdbc:sqlserver://db;password=...``) lose their
  secret values;
- SQL statements (``db.statement``, ``db.query.text``) have their literals (quoted strings,
  numbers) replaced with ``?``, as OpenTelemetry's conventions recommend;
- in every text written in clear (other attribute values, span names, status
  messages), each URL is redacted the same way (a referer header, a connection
  string, an exception's "for url: ..."), the value of each ``key=value`` (or ``key: value``,
  ``"key": "value"``) pair whose key names a secret is replaced (``password=...`` in a libpq
  or ADO.NET connection string or an exception's message), and so is every ``Bearer`` token;
  e-mail addresses and card numbers (digit runs that pass the Luhn check) are replaced.

Free text is scanned for these forms only: a secret in prose ("the password is hunter2") or in
a key named for nothing secret is written as it is. Every value is cut to ``max_value_chars``
before it is read, and every scan is linear in what is left (an adversarial 100 KB URL took 24 s,
the GIL held, when the cut came after the URL pass).

Keys can instead be *hashed* with a keyed hash (HMAC-SHA256), so rows can be
joined on the value without anyone reading it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any, Callable, Iterable, Mapping

from perfsdk._native import redact_texts
from perfsdk._runtime import check_bool, check_int

__all__ = ["REDACTED", "SENSITIVE", "STATEMENT_KEYS", "URL_KEYS", "WHOLE_PARTS", "Redactor", "sanitize_sql",
           "scrub"]

#: Key fragments that mark a value as sensitive, matched case-insensitively
#: anywhere inside the key (dashes and underscores ignored: ``api-key`` is ``apikey``).
SENSITIVE = (
    "authorization", "cookie", "password", "passwd", "passphrase", "secret", "token", "apikey", "session",
    "signature", "assertion", "csrf", "xsrf",
    "email", "credit", "card", "ssn", "private", "credential", "forwarded", "realip", "phone",
)
#: Attributes holding a URL (or its query): redacted part by part, not dropped.
URL_KEYS = ("http.target", "http.url", "url.full", "url.query", "url.original")
#: Attributes holding a database statement: its literals are replaced with ``?``.
STATEMENT_KEYS = ("db.statement", "db.query.text")
#: What a redacted query value, e-mail address or card number becomes.
REDACTED = "REDACTED"
#: The longest pair value looked at: one running past it is replaced to the next secret's or the text's
#: end (a bound keeps each value's scan, and so a text with many pairs, linear).
PAIR_VALUE_CHARS = 1024
SCRUB_MARGIN = 256  # characters scrubbed past a value's cut, so an address across it is still found
NAMES_KEPT = 10_000  # attribute keys and pair names whose verdicts are remembered (they repeat a lot)
#: Fragments too short to match inside a longer word ("author", "monkey", "inside"): they must be
#: a whole part of the key, or that part with a plural "s" ("x-auth", "db_pwd", "api-key",
#: "accessKeyId", "app.sid", "cache.keys").
WHOLE_PARTS = ("auth", "pwd", "key", "pin", "cvv", "sid", "jwt", "otp")

MEMO_ENTRIES = 4096  # (key, value) outcomes remembered per value type; short scalar values only
_MEMO_TYPES = frozenset((str, bool, int, float))
_SPLIT = re.compile(r"[.\s_\-]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # "accessKeyId" -> "access Key Id"
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")  # a run's start only: linear
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
#: A URL inside free text: ``scheme://...``, or a path (``/reset``, ``api/reset``, ``host.example/x``)
#: with a query, ``;params`` or a fragment ("GET /reset?token=..."). Each alternative starts only
#: where a word or a path starts, so a search stays near linear.
#: Both run to the end of their token (a run without a space, ``<``, ``>`` or a quote), which is
#: searched for them on its own (``_urls``): a failed try costs no more than its token once.
_URL_SCHEME = re.compile(r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://")
_URL_PATH = re.compile(r"(?<![\w/.\-])[\w.\-]*/[^?;#]*[?;#]")
_TOKEN = re.compile(r"[^\s<>\"']+")
_PATH_PARAMS = re.compile(r";[^/]*")  # "/cart;jsessionid=..." (a session id in the path)
#: Where a URL's authority starts: after ``scheme://`` (``jdbc:sqlserver://`` too) or a leading ``//``.
_AUTHORITY = re.compile(r"(?:[A-Za-z][\w+.\-]*:)*//")
_AUTHORITY_END = re.compile(r"[/?#]")
_QUERY_START = re.compile(r"[?#]")
_HOST = r"(?:\[[\w:.%\-]*\]|[^\s:\[\]/?#@,;]*)(?::\d*)?"  # a name, IPv4 or [IPv6], and a port
_HOSTS = re.compile(rf"{_HOST}(?:,{_HOST})*")  # libpq lists hosts: "db1:5432,db2:5433"
_HOSTS_ENDING = re.compile(rf"{_HOST}(?:,{_HOST})*(?=[/?#;]|\Z)")  # ... where the authority ends
#: A host with a port, after an "@" in the path: "app:1234/x@db:5432/shop" (a password with a "/").
_PORTED_HOST = re.compile(r"(?:\[[\w:.%\-]*\]|[^\s:\[\]/?#@,;]*):\d+(?:,[^\s/?#@;]*)*(?=[/?#;]|\Z)")
_EMPTY_PORT = re.compile(r":(?:,|\Z)")  # "app:/x@db": a user without a password, or a host without a port
#: A ``key=value`` (``key: value``, ``"key": "value"``) pair's key and separator, found in the
#: *reversed* text: a search for the separator, which C does fast, instead of one at every word.
_PAIR_KEY = re.compile(r"""(?P<sep>[=:])[ \t]*(?P<q>["']?)(?P<name>[\w.\-]+)(?P=q)(?![\w.\-])""")
#: A pair's value, after its separator: quoted, or running to a space, ``;`` or ``&`` -- or, followed
#: by ``;``, over spaces (ADO.NET's ``Password=two words;``); after an authorization scheme
#: ("Bearer"), one word.
_PAIR_VALUE = re.compile(
    r"""[ \t]*(?:(?P<scheme>(?i:bearer|basic|digest|negotiate|ntlm|token))[ \t]+(?P<credentials>[^\s;&,"']+)"""
    r"""|(?P<value>"(?:[^"\\]|\\.|"")*"?|'(?:[^'\\]|\\.|'')*'?|\{[^}]*\}?"""
    r"""|[^\s;&"'{][^\s;&]*(?:[ \t]+[^\s;&=]+)*(?=[ \t]*;)|[^\s;&"'{][^\s;&]*))""")
_PLACEHOLDER = re.compile(r"\?\d*|\$\d+|%s")  # a statement's parameter, not a value
_BEARER = re.compile(r"(?<![\w\-])(?i:bearer)[ \t]+(?P<credentials>[\w\-.~+/]+=*)")
#: ``X: y`` where X names an exception type ("KeyError: 'token'") is a message, not a pair.
_EXCEPTION_NAMES = ("error", "exception", "warning")
_SQL_LITERAL = re.compile(  # each branch starts with a character from one set, which C scans for
    r"""['"$.\d]"""
    r"""(?:(?<=')(?:[^'\\]|\\.|'')*'?"""  # 'text', 'it''s', 'it\'s' (an unclosed one runs to the end)
    r"""|(?<=")(?:[^"\\]|\\.|"")*"?"""  # "text": MySQL's strings (and standard SQL's quoted names)
    r"""|(?<=\$)(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z)"""  # PostgreSQL's $$text$$, $tag$text$tag$
    r"""|(?<![\w$.@:?].)(?:(?<=0)[xX][0-9A-Fa-f]+|(?<=\d)\d*\.?\d*|(?<=\.)\d+)(?:[eE][-+]?\d+)?(?![\w$]))""",
    re.S)  # 42, 1.5e3, .5, 0xff -- not t2, $1, @p1 or :v1


class Redactor:
    """Decides, key by key, whether an attribute value is kept, hashed or dropped.

    Parameters
    ----------
    allow
        If given, only these keys are kept (exact names; URL and statement keys among them are
        still redacted as such); everything else is dropped, but for ``hash_keys`` and ``opt_in``.
    deny
        Key fragments to drop (default ``SENSITIVE``, and ``WHOLE_PARTS`` as whole parts); pass
        ``()`` to drop none. The same rule picks the ``key=value`` pairs redacted inside texts.
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
    statement_keys
        Attributes holding database statements, whose literals are replaced with ``?``
        (default ``STATEMENT_KEYS``).
    safe_params
        Query parameters whose values are harmless and kept (e.g. ``["page", "sort"]``).
    scrub_values
        Redact URLs, secret ``key=value`` pairs and bearer tokens, and replace e-mail addresses
        and card numbers, inside every value, span name and status message kept in clear.

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
    >>> r({"db.connection_string": "Server=db;User Id=app;Password=hunter2;"})
    {'db.connection_string': 'Server=db;User Id=app;Password=REDACTED;'}
    >>> r({"db.statement": "SELECT * FROM users WHERE email = 'a@b.example' AND id = 7"})
    {'db.statement': 'SELECT * FROM users WHERE email = ? AND id = ?'}
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
        statement_keys: Iterable[str] = STATEMENT_KEYS,
    ) -> None:
        for name, value in (("allow", allow), ("deny", deny), ("hash_keys", hash_keys), ("opt_in", opt_in),
                            ("url_keys", url_keys), ("safe_params", safe_params),
                            ("statement_keys", statement_keys)):
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a collection of strings, not one string: got {value!r}")
        if hash_key is not None and not isinstance(hash_key, bytes):
            raise TypeError(f"hash_key must be bytes, got {hash_key!r}")
        check_int("max_value_chars", max_value_chars, minimum=1)
        self.url_keys = frozenset(url_keys)
        self.statement_keys = frozenset(statement_keys)
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
        self._secret_names: dict[str, bool] = {}  # a pair's key in a text -> names_secret (they repeat too)
        # per value type (1, 1.0 and True are equal keys but are written differently): (key, value)
        # -> what is written. A (key, value) tuple of plain values is untracked by the collector at
        # its first collection; one with the type in it would stay tracked, and reach the oldest
        # generation (a new entry a span when a value never repeats, such as a client's port).
        self._memo: dict[type, dict[tuple[str, Any], str | None]] = {kind: {} for kind in _MEMO_TYPES}
        self.dropped = 0

    def verdict(self, key: str) -> str:
        return _remembered(self._verdicts, key, self._decide)

    def _decide(self, key: str) -> str:
        if key in self.hash_keys:
            return "hash"
        if key in self.opt_in:
            return "clear"  # written as it is: the user said so
        if self.allow is not None and key not in self.allow:
            return "drop"  # before the URL keys: "only these keys" means only these
        if key in self.url_keys:
            return "url"
        if key in self.statement_keys:
            return "sql"
        return "drop" if self.names_secret(key) else "keep"

    def names_secret(self, name: str) -> bool:
        """Whether ``name`` (an attribute's key, or a key inside a text) names something secret: a
        ``deny`` fragment anywhere in it, or a ``WHOLE_PARTS`` one as a whole part -- short ones
        ("key") would match inside harmless words ("monkey"), long ones are safe to look for anywhere.

        >>> r = Redactor()
        >>> [r.names_secret(k) for k in ("x-jwt-assertion", "x-amz-signature", "accessKeyId", "app.sid")]
        [True, True, True, True]
        >>> [r.names_secret(k) for k in ("http.request.method", "book.author", "app.monkey", "inside")]
        [False, False, False, False]
        """
        lowered = name.lower()
        squashed = lowered.replace("-", "").replace("_", "")
        if any(fragment in squashed for fragment in self.deny):
            return True
        if self.deny_whole:
            whole = self.deny_whole
            for part in _SPLIT.split(_CAMEL.sub(" ", name).lower()):
                if part in whole or (part[-1:] == "s" and part[:-1] in whole):
                    return True
        return False

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
        text, cut = self._cut(text)
        if verdict == "url":  # then scrubbed as any text is: URLs within what it kept go too
            return self._bounded(self.url(text, query_only=key == "url.query"), self._scrub, cut)
        if verdict == "sql":  # a literal across the cut runs to the end: gone
            # literals only: a statement is not free text ("price/100", a sqlcommenter comment,
            # ":email" stay); e-mail addresses and card numbers outside literals still go
            return self._bounded(sanitize_sql(text), scrub, cut)
        return self._bounded(text, None if verdict == "clear" else self._scrub, cut)

    def message(self, value: Any) -> str:
        """A span's status description or name as it may be written: scrubbed and cut as a value
        kept in clear is (an exception's message often carries what the attributes are kept
        from, and a span named after a raw request target carries its query).

        >>> Redactor(max_value_chars=40).message("bad password for alice@example.com " + "x" * 50)
        'bad password for REDACTED xxxxxxxxxxxxxx...'
        >>> Redactor().message("GET /reset;jsessionid=9F?token=abc&lang")
        'GET /reset?token=REDACTED&REDACTED'
        >>> Redactor().message("401: Authorization: Bearer abc.def rejected; login user=bob password=hunter2")
        '401: Authorization: Bearer REDACTED rejected; login user=bob password=REDACTED'
        """
        text, cut = self._cut(value if isinstance(value, str) else str(value))
        return self._bounded(text, self._scrub, cut)

    def _cut(self, text: str) -> tuple[str, bool]:
        """``text`` cut before any parsing -- what is kept, and enough beyond it that a URL, address
        or card across the cut is whole -- and whether it was longer: no value costs more than its
        bound (and a margin) to redact."""
        return text[: self.max_value_chars + SCRUB_MARGIN], len(text) > self.max_value_chars

    def _bounded(self, text: str, scrubbed: Callable[[str], str] | None, cut: bool) -> str:
        """``text`` through ``scrubbed`` (unless values are not scrubbed), cut to its bound."""
        cut = cut or len(text) > self.max_value_chars
        if self.scrub_values and scrubbed is not None:
            text = scrubbed(text[: self.max_value_chars + SCRUB_MARGIN] if cut else text)
        if cut:
            text = text[: self.max_value_chars] + "..."
        return text

    def _scrub(self, text: str) -> str:
        """A text written in clear, with its URLs, secret pairs, bearer tokens, e-mail addresses and
        card numbers redacted. Each step first asks whether its mark is in the text at all: most
        texts carry none, and cost a few substring tests. URLs go first, so that a pair's value
        ends where the URL's part does ("...;sid=x/v1"): what a URL keeps, the pairs then scan."""
        if "://" in text or "/" in text and ("?" in text or ";" in text or "#" in text):  # a URL's marks
            text = self._urls(text)
        if "=" in text or ":" in text or "earer" in text or "EARER" in text:  # a pair's, a bearer token's
            text = self.pairs(text)
        return scrub(text)

    def _urls(self, text: str) -> str:
        """``text`` with each URL in it (``scheme://...``, or a path with a query, ``;params`` or a
        fragment) redacted by ``url``. A URL runs to the end of its token; each token is searched
        on its own, a path only up to the token's last ``?``, ``;`` or ``#`` (past it, no path
        can have one): every search ends within its token, and the whole stays linear."""
        pieces: list[str] = []
        last = 0
        for token in _TOKEN.finditer(text):
            word = token.group()
            if "/" not in word:
                continue
            starts = []
            found = _URL_SCHEME.search(word) if "://" in word else None
            if found is not None:
                starts.append(found.start())
            end = max(word.rfind("?"), word.rfind(";"), word.rfind("#"))
            if end >= 0:
                found = _URL_PATH.search(word, 0, end + 1)
                if found is not None:
                    starts.append(found.start())
            if starts:
                start = token.start() + min(starts)
                pieces += (text[last:start], self.url(text[start:token.end()]))
                last = token.end()
        return "".join(pieces) + text[last:] if pieces else text

    def pairs(self, text: str) -> str:
        """``text`` with the value of each ``key=value`` (``key: value``, ``"key": "value"``) pair
        whose key names a secret (``names_secret``), and each bearer token, replaced.

        >>> Redactor().pairs("host=db user=app password='hunter 2' sslmode=require")
        'host=db user=app password=REDACTED sslmode=require'
        >>> Redactor().pairs('KeyError: token in {"api_key": "s3cr3t", "page": 2}')
        'KeyError: token in {"api_key": REDACTED, "page": 2}'
        """
        if "=" in text or ":" in text:
            spans = self._secret_values(text)
            if spans:
                pieces: list[str] = []
                last = 0
                for start, end in sorted(spans):
                    if start > last or start == last and not pieces:  # one REDACTED for values that meet
                        pieces += (text[last:start], REDACTED)
                    last = max(last, end)  # a span inside another (a quoted value holding a pair): gone with it
                text = "".join(pieces) + text[last:]
        if "earer" in text or "EARER" in text:
            text = _BEARER.sub(lambda found: found.group()[: found.start("credentials") - found.start()] + REDACTED,
                               text)
        return text

    def _secret_values(self, text: str) -> list[tuple[int, int]]:
        """Where the values of ``text``'s secret pairs are (start, end), the last pair first."""
        spans: list[tuple[int, int]] = []
        n = len(text)
        bound = n  # where the value found last (the next pair's) starts: no value is scanned past it
        for key in _PAIR_KEY.finditer(text[::-1]):
            name = key.group("name")[::-1]
            secret = _remembered(self._secret_names, name, self.names_secret)
            if not secret or (key.group("sep") == ":" and not key.group("q")
                              and name.lower().endswith(_EXCEPTION_NAMES)):
                continue  # "KeyError: 'token'" is an exception's message, not a pair
            start = n - key.start()
            if start > bound:
                continue  # inside a secret value already
            limit = min(bound, start + PAIR_VALUE_CHARS)
            found = _PAIR_VALUE.match(text, start, limit)
            if found is None:
                continue
            group = "credentials" if found.group("scheme") else "value"
            if found.group(group).startswith(REDACTED) or _PLACEHOLDER.fullmatch(found.group(group)):
                continue  # done already (a URL's), or a placeholder ("password = ?", "email = $1")
            if group == "credentials" and "auth" not in name.lower():
                group = "scheme"  # "password: basic words": no scheme there, all of it secret
            end = found.end()
            if end == limit and limit < n:
                end = bound  # a value longer than looked at: replaced to the next secret's, or the end
            spans.append((found.start(group), end))
            bound = found.start(group)
        return spans

    def url(self, text: str, query_only: bool = False) -> str:
        """``text`` (a URL, a request target, or with ``query_only`` a query string) with
        its query values, user-info and fragment removed; path and parameter names stay.

        The user-info runs to the last ``@`` before the host. A password with an unencoded
        ``/``, ``?``, ``#`` or ``@`` moves where the authority seems to end: where what is left
        after the user-info is not a host (``app:hunter2`` of ``app:hunter2/x@db``), the user-info
        runs to the one ``@`` a host follows; where more than one ``@`` could end it (a
        user-info or a port, and another ``@`` later on), nothing tells which: the URL is written
        as ``REDACTED``.

        >>> r = Redactor()
        >>> r.url("postgresql://app:hunter2/x#y@db:5432,db2/shop?sslmode=require")
        'postgresql://db:5432,db2/shop?sslmode=REDACTED'
        >>> r.url("jdbc:sqlserver://db:1433;databaseName=shop;user=app;password=hunter2")
        'jdbc:sqlserver://db:1433;databaseName=shop;user=app;password=REDACTED'
        >>> r.url("https://bob:p@ss@shop.example/u/@bob"), r.url("https://social.example/@bob")
        ('REDACTED', 'https://social.example/@bob')
        """
        if query_only:
            return self._query(text)
        head = _AUTHORITY.match(text)
        if head is None:  # a request target: "/cart?x=1"
            authority, rest = "", text
        else:
            split = self._authority(text, head.end())
            if split is None:
                return REDACTED  # not a URL we can take apart: keep none of it
            authority, rest = split
            authority = head.group() + authority
        path, _, query = rest.partition("#")[0].partition("?")
        if ";" in path:
            path = _PATH_PARAMS.sub("", path)
        query = self._query(query)
        return authority + path + ("?" + query if query else "")

    def _authority(self, text: str, start: int) -> tuple[str, str] | None:
        """The host part of the authority starting at ``start`` (without its user-info, with its
        ``;parameters``' secrets redacted) and the text after it; None where the user-info's end
        is ambiguous (see ``url``)."""
        found = _AUTHORITY_END.search(text, start)
        end = found.start() if found else len(text)
        at = text.rfind("@", start, end)
        host = text[at + 1 if at >= 0 else start:end].partition(";")[0]
        if _HOSTS.fullmatch(host):
            later = text.find("@", end)
            if later >= 0 and (at >= 0 or ":" in host.rpartition("]")[2] and (
                    _EMPTY_PORT.search(host.rpartition("]")[2]) or _PORTED_HOST.match(text, later + 1)
                    and not _QUERY_START.search(text, end, later))):
                return None  # "bob:p@ss/x@db", "app:/x@db", "app:1234/x@db:5432": a password cut short
            # "host:8080/u/@bob": a port (a user-info's "/" would be percent-encoded, RFC 3986)
        else:  # "app:hunter2" of "app:hunter2/x@db": a password cut by a "/", "?" or "#"
            ends: list[int] = []
            i = text.find("@", start)
            while i >= 0 and len(ends) < 2:  # the "@"s a host follows: one, or it is ambiguous
                if _HOSTS_ENDING.match(text, i + 1):
                    ends.append(i)
                i = text.find("@", i + 1)
            if len(ends) != 1:
                return None
            at = ends[0]
            found = _AUTHORITY_END.search(text, at + 1)
            end = found.start() if found else len(text)
        host, semi, params = text[at + 1 if at >= 0 else start:end].partition(";")
        return host + semi + (self.pairs(params) if params else ""), text[end:]

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


def sanitize_sql(statement: str) -> str:
    """``statement`` with its literals -- quoted strings (a double-quoted name too: in MySQL it is a
    string), dollar-quoted strings, numbers -- replaced with ``?``; names, keywords, placeholders
    stay. A string left open (a statement cut short) is replaced to the end.

    >>> sanitize_sql("UPDATE users SET password = 'hunter2', tries = 0 WHERE id = $1 AND t2.x IN (1, 2.5e3)")
    'UPDATE users SET password = ?, tries = ? WHERE id = $1 AND t2.x IN (?, ?)'
    """
    return _SQL_LITERAL.sub("?", statement)


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


def _remembered(cache: dict[str, Any], name: str, decide: Callable[[str], Any]) -> Any:
    """``decide(name)``, remembered in ``cache`` for the first ``NAMES_KEPT`` names."""
    value = cache.get(name)
    if value is None:
        value = decide(name)
        if len(cache) < NAMES_KEPT:
            cache[name] = value
    return value
