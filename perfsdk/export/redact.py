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
  or ADO.NET connection string or an exception's message), and so is the value of each command-line
  option naming one (``--password hunter2``, ``--api-key=...``), every ``Bearer`` token and every
  ``Basic``, ``Digest``, ``Token``, ``Negotiate`` or ``NTLM`` credential that looks like one (a digit,
  ``+/=`` or a lower-case letter before a capital in it), a Digest authorization's parameters (but the
  challenge's: ``realm``, ``uri``, ...), the password of an Oracle-style connect string
  (``scott/tiger@//db:1521/orcl``, ``scott/tiger@orcl``) and of a login without a scheme
  (``app:hunter2@db:5432``), every JSON Web Token (``eyJ...``) and
  the body of every PEM private key; e-mail addresses and card numbers (digit runs that pass the Luhn
  check) are replaced. A statement's comments (``/* ... */``, ``-- ...``, MySQL's ``# ...``) are free text too.
- with ``opaque_tokens`` (off for spans, on for what goes to an LLM), long opaque tokens (32 or more
  letters and digits, with both) are replaced as well: API keys and session ids, but also the trace
  ids, span ids and hashes that make span attributes joinable.

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
#: "accessKeyId", "app.sid", "cache.keys", an Azure SAS URL's "sig").
WHOLE_PARTS = ("auth", "pwd", "key", "pin", "cvv", "sid", "jwt", "otp", "sig")

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
#: ("Bearer"), one word. (No pattern here has a possessive quantifier or an atomic group: Python 3.10
#: has neither. ``(?=(X))\1`` is X taken atomically: the blanks are not given back one by one.)
_PAIR_VALUE = re.compile(
    r"""(?=([ \t]*(?:\r?\n[ \t]*)?))\1(?:(?P<scheme>(?i:bearer|basic|digest|negotiate|ntlm|token))[ \t]+"""
    r"""(?P<credentials>[^\s;&,"']+)"""
    r"""|(?P<value>"(?:[^"\\]|\\.|"")*"?|'(?:[^'\\]|\\.|'')*'?|\{[^}]*\}?"""
    r"""|[^\s;&"'{][^\s;&]*(?:[ \t]+[^\s;&=]+)*(?=[ \t]*;)|[^\s;&"'{][^\s;&]*))""")
_PLACEHOLDER = re.compile(r"\?\d*|\$\d+|%s")  # a statement's parameter, not a value
#: An authorization scheme and its credentials in free text ("Bearer abc", "Basic dXNlcjpw"): a bearer
#: token always goes, the others when they look like a credential (``_CREDENTIAL``, 6 characters or
#: more, "=" only as base64's padding): "basic checkout", "token expired", "negotiate terms" are words,
#: "token sv=2020&sig=..." a pair.
_SCHEME = re.compile(r"(?<![\w\-])(?P<scheme>(?i:bearer|basic|digest|token|negotiate|ntlm))[ \t\r\n]+"
                     r"(?P<credentials>[\w\-.~+/=]+)")
#: A Digest authorization's parameters (RFC 7616: ``Digest username="bob", realm="x", response="6629..."``):
#: each value goes but for those naming the server's challenge (``_DIGEST_KEPT``) -- the response is a
#: hash of the password, open to a dictionary attack, and the user is personal data.
_DIGEST = re.compile(r"(?<![\w\-])(?i:digest)[ \t]+(?=[A-Za-z][\w\-]*\*?[ \t]*=)")
_AUTH_PARAM = re.compile(r"""[ \t]*(?P<name>[A-Za-z][\w\-]*\*?)[ \t]*=[ \t]*"""
                         r"""(?P<value>"(?:[^"\\]|\\.)*"?|[^\s,"]*)""")
_PARAM_COMMA = re.compile(r"[ \t]*,")
_DIGEST_KEPT = frozenset(("realm", "uri", "algorithm", "qop", "nc", "stale", "domain", "charset", "userhash"))
_CREDENTIAL = re.compile(r"[\d+/=]|[a-z][A-Z]")  # a digit, base64's "+/=", or a capital after a lower-case letter
_LOOSE_SCHEMES = ("basic", "digest")  # with opaque_tokens: any word of 6 or more characters after them
#: A command-line option naming a secret and its value, after a space ("--password hunter2") or, in a
#: list joined with commas (``process.command_args``), after a comma; never "-p x" (too many meanings).
#: A value starting with "-" is the next option.
_QUOTED = r""""(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?"""
_OPTION = re.compile(rf"""(?<![^\s,])--(?P<name>[A-Za-z][\w.\-]*)"""
                     rf"""(?:[ \t]+(?P<value>{_QUOTED}|[^\s"'\-]\S*)|,(?P<item>{_QUOTED}|[^\s,"'\-][^\s,]*))""")
#: An Oracle-style connect string's password: ``user/password@host`` (``@//host:1521/service``,
#: ``@host:1521/service``, ``@tnsalias``), the user where a word starts (a path's "/a/b@c" is none).
#: What follows the "@" may not be a version, a digest or a branch or tag word: "actions/checkout@v4",
#: "lodash/fp@4.17", "library/nginx@sha256:...", "actions/setup-python@main", "origin/feature@HEAD" are
#: references, not logins; nor is a password all digits ("user/42@session": Oracle's start with a letter).
_REFERENCE = (r"""(?!v?\d+(?:\.\d+){0,2}(?![\w.:@])|sha\d+:"""
              r"""|(?i:main|master|latest|head|next|stable|canary|beta|alpha|dev|edge)(?![\w.:@]))""")
_CONNECT = re.compile(r"""(?<![^\s"'=(,:])[A-Za-z_][\w$#.\-]*/(?!\d+@)(?P<password>[^\s/@"']+)@(?=//|[\w\[])"""
                      + _REFERENCE)
#: A login without a scheme: ``app:hunter2@db:5432/shop`` (redis-cli's, a log's "connecting to ..."), the
#: user where a word starts; the password may hold a "/" but not start with one (a URL's "//") nor hold a
#: ":" ("jdbc:oracle:thin:scott/...@db", a logger's "WARNING:app:bob@x" are none), and what follows the
#: "@" is no reference ("nginx:1.25@sha256:...").
_LOGIN = re.compile(r"""(?<![^\s"'=(,])[A-Za-z_][\w$.\-]*:(?P<password>[^\s/@"':][^\s@"':]*)@(?=[\w\[])"""
                    + _REFERENCE)
#: A JSON Web Token (JWS, and JWE's five parts): base64url of '{"' is "eyJ", where a word starts or after
#: a "-". Only a run's first such "eyJ" is tried (``before`` runs to it, taken atomically): a later one
#: in the run ends where it does, and fails too -- '-eyJ' * N tried each, to the run's end, in 7 s at 100 KB.
_JWT = re.compile(r"(?<![\w\-])(?=(?P<before>(?:[\w\-]*?-)??)eyJ)(?P=before)"
                  r"eyJ[\w\-]{4,}\.[\w\-]{4,}\.[\w\-]*(?:\.[\w\-]*)*")
#: A PEM private key's header; its body runs to the "-----END" after it (or the text's end).
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
#: With ``opaque_tokens``: a run of 32 or more letters, digits, "_" and "-", with a letter and a digit.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*?[0-9])(?=[A-Za-z0-9_\-]*?[A-Za-z])"
                     r"[A-Za-z0-9_\-]{32,}")
#: A statement's comments: their bodies are free text (an unclosed one runs to the end). MySQL's "#" starts
#: one too; elsewhere it is an operator (PostgreSQL's "a # b", "#>"), whose operands, literals already
#: replaced, lose nothing by being scanned as text.
_SQL_COMMENT = re.compile(r"/\*(?P<block>.*?)(?:\*/|\Z)|(?P<dashes>--|#)(?P<line>[^\n]*)", re.S)
#: URL schemes whose paths often hold an "@" ("/@scope/pkg", "/u/bob@x", "/pkg@1.2"): after a host
#: with a port, a later "@" is read as the path's (see ``Redactor.url``).
_WEB_SCHEMES = frozenset(("http", "https", "ws", "wss", "ftp", "ftps", ""))
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
        Redact URLs, secret ``key=value`` pairs and command-line options, authorization credentials,
        connect strings' passwords, JSON Web Tokens and PEM private keys, and replace e-mail addresses
        and card numbers, inside every value, span name and status message kept in clear.
    opaque_tokens
        Also replace, in those texts, every run of 32 or more letters and digits (with both): API
        keys and session ids with no name beside them -- but also trace ids, span ids and hashes,
        which is why it is off by default (span attributes are joined on them). For text that leaves
        the process for good (a prompt to an LLM).

    Attributes
    ----------
    dropped
        Attribute values not written: dropped by the policy, or unreadable (``rejected``).
    rejected
        Values that could not be read at all (a ``__str__`` that raises, an integer too long for
        ``str``, ...): each is dropped (a span's name or status message is written ``REDACTED``) and
        counted here, and nothing else of its span or batch is lost. A short value that repeats is
        remembered, and counted in ``dropped`` only after its first time.

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
        opaque_tokens: bool = False,
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
        self.opaque_tokens = check_bool("opaque_tokens", opaque_tokens)
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
        self.rejected = 0

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
        # (a lone surrogate is hashed as it is: "strict" raised, and lost the value's whole batch)
        return "hmac:" + hmac.new(self._hash_key, value.encode("utf-8", "surrogatepass"),
                                  hashlib.sha256).hexdigest()[:32]

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
        """One attribute as it may be written, or None to drop it -- also where it cannot be read
        (counted in ``rejected``): one bad value must not cost its batch (``redact_texts`` would
        raise for all of it)."""
        try:
            verdict = self.verdict(key)
            if verdict == "drop":
                return None
            text = value if type(value) is str else _text(value)
            if verdict == "hash":
                return self.hash(text)
            text, cut = self._cut(text)
            if verdict == "url":  # then scrubbed as any text is: URLs within what it kept go too
                return self._bounded(self.url(text, query_only=key == "url.query"), self._scrub, cut)
            if verdict == "sql":  # a literal across the cut runs to the end: gone
                # literals only: a statement is not free text ("price/100", a sqlcommenter comment's
                # names, ":email" stay); its comments are, and e-mail addresses and card numbers go anywhere
                return self._bounded(sanitize_sql(text), self._statement, cut)
            return self._bounded(text, None if verdict == "clear" else self._scrub, cut)
        except Exception:
            self.rejected += 1
            return None

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
        >>> Redactor().message("sqlplus scott/tiger@//db:1521/orcl --password hunter2 sig=AbC%3D")
        'sqlplus scott/REDACTED@//db:1521/orcl --password REDACTED sig=REDACTED'

        A value that cannot be read at all is written ``REDACTED`` (and counted in ``rejected``).
        """
        try:
            text, cut = self._cut(value if type(value) is str else _plain(value))
            return self._bounded(text, self._scrub, cut)
        except Exception:
            self.rejected += 1
            return REDACTED

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
        """A text written in clear, with its private keys, URLs, secret pairs and options, credentials,
        connect strings' passwords, JSON Web Tokens, e-mail addresses and card numbers (and with
        ``opaque_tokens``, long opaque tokens) redacted. Each step first asks whether its mark is in
        the text at all: most texts carry none, and cost a few substring tests. A private key goes
        first (its body would read as words and pairs); URLs next, so that a pair's value ends where the
        URL's part does ("...;sid=x/v1"): what a URL keeps, the later steps then scan."""
        if "PRIVATE KEY" in text:
            text = _private_keys(text)
        if "://" in text or "/" in text and ("?" in text or ";" in text or "#" in text):  # a URL's marks
            text = self._urls(text)
        text = self.pairs(text)
        if "@" in text:
            if "/" in text:
                text = _CONNECT.sub(_password_redacted, text)
            if ":" in text:
                text = _LOGIN.sub(_password_redacted, text)
        if "eyJ" in text:
            text = _JWT.sub(r"\g<before>" + REDACTED, text)
        text = scrub(text)
        if self.opaque_tokens:
            text = _OPAQUE.sub(REDACTED, text)
        return text

    def _statement(self, statement: str) -> str:
        """A statement whose literals are gone (``sanitize_sql``), with its comments' bodies scrubbed
        as free text (a sqlcommenter tag or a note may carry ``password=...``, unquoted), and its
        e-mail addresses and card numbers replaced."""
        if "/*" in statement or "--" in statement or "#" in statement:
            statement = _SQL_COMMENT.sub(self._comment, statement)
        return scrub(statement)

    def _comment(self, found: re.Match[str]) -> str:
        body = found.group("block")
        if body is None:
            return found.group("dashes") + self._scrub(found.group("line"))
        return "/*" + self._scrub(body) + found.group()[2 + len(body):]

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
        and each command-line option (``--key value``) whose key names a secret (``names_secret``),
        and each authorization scheme's credentials (``_SCHEME``), replaced.

        >>> Redactor().pairs("host=db user=app password='hunter 2' sslmode=require")
        'host=db user=app password=REDACTED sslmode=require'
        >>> Redactor().pairs('KeyError: token in {"api_key": "s3cr3t", "page": 2}')
        'KeyError: token in {"api_key": REDACTED, "page": 2}'
        >>> Redactor().pairs("deploy --user bob --api-key sk_live_1 --verbose; got Basic dXNlcjpwYXNz")
        'deploy --user bob --api-key REDACTED --verbose; got Basic REDACTED'
        """
        pair = "=" in text or ":" in text
        option = "--" in text
        if pair and ("igest" in text or "IGEST" in text):  # Digest's parameters first: they are pairs too
            text = _digest_params_redacted(text)
        if pair or option:
            spans = self._secret_values(text) if pair else []
            if option:
                spans += self._option_values(text)
            if spans:
                pieces: list[str] = []
                last = 0
                for start, end in sorted(spans):
                    if start > last or start == last and not pieces:  # one REDACTED for values that meet
                        pieces += (text[last:start], REDACTED)
                    last = max(last, end)  # a span inside another (a quoted value holding a pair): gone with it
                text = "".join(pieces) + text[last:]
        if " " in text or "\t" in text or "\n" in text or "\r" in text:  # a scheme's credentials follow one
            lowered = text.lower()  # (its names asked one by one: a generator cost more than the rest)
            if ("token" in lowered or "bearer" in lowered or "basic" in lowered or "digest" in lowered
                    or "negotiate" in lowered or "ntlm" in lowered):
                text = _SCHEME.sub(self._credentials_redacted, text)
        return text

    def _credentials_redacted(self, found: re.Match[str]) -> str:
        """A scheme's credentials replaced where they look like some: a bearer token always; another
        scheme's if ``_CREDENTIAL`` finds a mark in them, and they are no pair ("sv=2020") nor a label
        ("digest sha256:...") -- with ``opaque_tokens``, pairs and labels too, and any word after
        "basic" or "digest" (6 characters or more, always)."""
        scheme, credentials = found.group("scheme").lower(), found.group("credentials")
        if scheme == "digest" and _AUTH_PARAM.match(credentials):
            return found.group()  # a parameter list: its values are redacted already (``_digest_params_redacted``)
        if scheme != "bearer" and (len(credentials) < 6 or not (
                self.opaque_tokens and (scheme in _LOOSE_SCHEMES or _CREDENTIAL.search(credentials))
                or "=" not in credentials.rstrip("=") and found.string[found.end():found.end() + 1] != ":"
                and _CREDENTIAL.search(credentials))):
            return found.group()
        return found.group()[: found.start("credentials") - found.start()] + REDACTED

    def _option_values(self, text: str) -> list[tuple[int, int]]:
        """Where the values of ``text``'s command-line options naming a secret are (start, end)."""
        spans = []
        for found in _OPTION.finditer(text):
            if _remembered(self._secret_names, found.group("name"), self.names_secret):
                group = "value" if found.group("value") is not None else "item"
                spans.append((found.start(group), found.end(group)))
        return spans

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
            if group == "credentials" and _AUTH_PARAM.match(found.group(group)):
                continue  # Digest's parameters: redacted one by one already
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
        as ``REDACTED``. After a host with a port, a web URL's (``http``, ``https``, ``ws``, ``ftp``)
        later ``@`` is its path's ("/@scope/pkg", "/pkg@1.2") unless a host with a port follows it;
        any other scheme's (``postgresql://app:1234/x@db``) is a password's.

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
            scheme = head.group()[:-2].rstrip(":").rpartition(":")[2].lower()
            split = self._authority(text, head.end(), scheme in _WEB_SCHEMES)
            if split is None:
                return REDACTED  # not a URL we can take apart: keep none of it
            authority, rest = split
            authority = head.group() + authority
        path, _, query = rest.partition("#")[0].partition("?")
        if ";" in path:
            path = _PATH_PARAMS.sub("", path)
        query = self._query(query)
        return authority + path + ("?" + query if query else "")

    def _authority(self, text: str, start: int, web: bool = True) -> tuple[str, str] | None:
        """The host part of the authority starting at ``start`` (without its user-info, with its
        ``;parameters``' secrets redacted) and the text after it; None where the user-info's end
        is ambiguous (see ``url``). ``web``: a scheme whose paths often hold an "@"."""
        found = _AUTHORITY_END.search(text, start)
        end = found.start() if found else len(text)
        at = text.rfind("@", start, end)
        host = text[at + 1 if at >= 0 else start:end].partition(";")[0]
        if _HOSTS.fullmatch(host):
            later = text.find("@", end)
            if later >= 0 and (at >= 0 or ":" in host.rpartition("]")[2] and (
                    _EMPTY_PORT.search(host.rpartition("]")[2])
                    or (_PORTED_HOST if web else _HOSTS_ENDING).match(text, later + 1)
                    and not _QUERY_START.search(text, end, later))):
                return None  # "bob:p@ss/x@db", "app:/x@db", "app:1234/x@db:5432": a password cut short
            # "host:8080/u/@bob": a port (a user-info's "/" would be percent-encoded, RFC 3986) -- in
            # a web URL; a database's path has no "@": "postgresql://app:1234/x@db" is a password's
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
    """An attribute value as a plain ``str`` (a subclass's own ``__str__`` or slicing is not asked)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(_plain, value))
    return _plain(value)


def _plain(value: Any) -> str:
    return str.__str__(value) if isinstance(value, str) else str(value)


def _digest_params_redacted(text: str) -> str:
    """``text`` with the values of each Digest authorization's parameters replaced, but the challenge's
    (``_DIGEST_KEPT``).

    >>> _digest_params_redacted('Authorization: Digest username="bob", realm="shop", response="6629fae4"')
    'Authorization: Digest username=REDACTED, realm="shop", response=REDACTED'
    """
    pieces: list[str] = []
    last = 0
    for found in _DIGEST.finditer(text):
        if found.start() < last:
            continue  # inside the list just read
        position = found.end()
        while (param := _AUTH_PARAM.match(text, position)) is not None:
            if param.group("name").rstrip("*").lower() not in _DIGEST_KEPT:
                pieces += (text[last:param.start("value")], REDACTED)
                last = param.end("value")
            comma = _PARAM_COMMA.match(text, param.end())
            if comma is None:
                break  # the list ends
            position = comma.end()
    return "".join(pieces) + text[last:] if pieces else text


def _password_redacted(found: re.Match[str]) -> str:
    return found.group()[: found.start("password") - found.start()] + REDACTED + "@"


def _private_keys(text: str) -> str:
    """``text`` with each PEM private key's body (to its ``-----END ...-----``, or the text's end)
    replaced; the header and footer stay, so a reader sees what was there."""
    pieces: list[str] = []
    last = 0
    for header in _PEM_BEGIN.finditer(text):
        if header.start() < last:
            continue  # inside a key already replaced
        footer = text.find("-----END", header.end())
        pieces += (text[last:header.end()], REDACTED)
        last = len(text) if footer < 0 else footer
    return "".join(pieces) + text[last:] if pieces else text


def _remembered(cache: dict[str, Any], name: str, decide: Callable[[str], Any]) -> Any:
    """``decide(name)``, remembered in ``cache`` for the first ``NAMES_KEPT`` names."""
    value = cache.get(name)
    if value is None:
        value = decide(name)
        if len(cache) < NAMES_KEPT:
            cache[name] = value
    return value
