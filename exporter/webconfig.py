"""``--web.config.file``: TLS and basic auth for the exporter's own HTTP endpoint.

The file follows the shape Prometheus and its exporters use::

    tls_server_config:
      cert_file: /etc/tls/tls.crt
      key_file: /etc/tls/tls.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
      client_ca_file: /etc/tls/ca.crt
      min_version: TLS12                             # or TLS13
    basic_auth_users:
      prometheus: $2b$12$...                         # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Passwords are checked with bcrypt, which is slow on purpose; successful and failed checks are
remembered (keyed by an HMAC of the credentials, never the password itself) and unknown ones
are throttled, so scrapes stay cheap and a password flood cannot take the CPU (``BasicAuth``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import yaml

from exporter.files import (SMALL_FILE_MAX_BYTES, FileReadError, is_readable_regular_file,
                            read_regular_file)

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version")


class WebConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    min_version: str = "TLS12"


@dataclass(frozen=True)
class WebSettings:
    tls: TLSSettings | None = None
    # user -> bcrypt hash; never logged or shown
    users: dict[str, bytes] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """For the landing page and logs: what is on, never a secret."""
        parts = [f"TLS ({self.tls.client_auth_type})" if self.tls else "plain HTTP"]
        parts.append(f"basic auth ({len(self.users)} users)" if self.users else "no auth")
        return ", ".join(parts)


def _path(value, where: str, base: str, problems: list[str]) -> str:
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: expected a file path")
        return ""
    path = value if os.path.isabs(value) else os.path.join(base, value)
    problem = is_readable_regular_file(path)  # a FIFO would block the TLS setup for good
    if problem is not None:
        problems.append(f'{where}: cannot read "{path}": {problem}')
    return path


def _tls(raw, source: str, base: str, problems: list[str]) -> TLSSettings | None:
    where = f"{source}: tls_server_config"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    for key in raw:
        if key not in _TLS_KEYS:
            problems.append(f"{where}.{key}: unknown key (valid keys: {', '.join(_TLS_KEYS)})")
    cert = _path(raw.get("cert_file"), f"{where}.cert_file", base, problems)
    key = _path(raw.get("key_file"), f"{where}.key_file", base, problems)
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(f"{where}.client_auth_type: must be one of "
                        f"{', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}")
    ca = ""
    if auth != "NoClientCert" or "client_ca_file" in raw:
        ca = _path(raw.get("client_ca_file"), f"{where}.client_ca_file", base, problems)
    version = raw.get("min_version", "TLS12")
    if version not in TLS_VERSIONS:
        problems.append(f"{where}.min_version: must be one of {', '.join(TLS_VERSIONS)}, "
                        f"got {version!r}")
    return TLSSettings(cert, key, auth, ca, version)


def _users(raw, source: str, problems: list[str]) -> dict[str, bytes]:
    where = f"{source}: basic_auth_users"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of user names to bcrypt hashes")
        return {}
    users = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(f"{where}: user names must be non-empty strings without ':'")
            continue
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) \
                or len(hashed) != 60:
            # Say which user, never echo the value: it is a secret.
            problems.append(f"{where}.{user}: expected a bcrypt hash ($2b$..., 60 characters)")
            continue
        users[user] = hashed.encode()
    return users


def load_web_config(path: str) -> WebSettings:
    """Read and check the file; WebConfigError lists every problem."""
    problems: list[str] = []
    try:
        raw = yaml.safe_load(read_regular_file(path, SMALL_FILE_MAX_BYTES).decode("utf-8"))
    except FileReadError as err:
        raise WebConfigError([f"{path}: cannot read web config file: {err.reason}"]) from None
    except UnicodeDecodeError:
        raise WebConfigError([f"{path}: not UTF-8 text"]) from None
    except yaml.YAMLError as err:
        raise WebConfigError([f"{path}: invalid YAML: {err}"]) from None
    if raw is None:
        return WebSettings()
    if not isinstance(raw, dict):
        raise WebConfigError([f"{path}: top level must be a mapping"])
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{path}: {key}: unknown key (valid keys: {', '.join(_TOP_KEYS)})")
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls(raw["tls_server_config"], path, base, problems) \
        if "tls_server_config" in raw else None
    users = _users(raw["basic_auth_users"], path, problems) if "basic_auth_users" in raw else {}
    if tls is not None and not problems:
        try:
            ssl_context(tls)
        except (ssl.SSLError, OSError) as err:
            problems.append(f"{path}: tls_server_config: certificate or key unusable: {err}")
    if problems:
        raise WebConfigError(problems)
    return WebSettings(tls, users)


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
    return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, cheaply for repeats.

    bcrypt is slow on purpose (~0.25 CPU-s at cost 12), so a flood of wrong passwords must not
    buy one check each. ``check()`` answers "ok", "denied" or "throttled":

    - credentials verified before are remembered (bounded LRU) and pass without bcrypt; failures
      never evict them;
    - recent failures are remembered too (bounded LRU) and are refused without bcrypt;
    - anything else needs a token from a bucket (``checks_per_second``, ``burst``) and the single
      bcrypt slot (waiting at most ``wait`` seconds); without either it is "throttled", unchecked,
      and the caller should answer 429 with Retry-After rather than 401.

    Both caches are keyed by an HMAC-SHA256 of the header under a random per-process key: the
    password is never stored, and the keys are useless outside this process. Unknown users are
    checked against a dummy hash of the same cost, under the same throttle, so a refusal takes
    as long whether or not the user exists.
    """

    OK, DENIED, THROTTLED = "ok", "denied", "throttled"
    # Credentials remembered as good: a handful of Prometheus servers and a person or two.
    REMEMBER_VERIFIED = 64
    # Wrong credentials remembered: a flood repeating a few headers costs no bcrypt at all;
    # 1024 x ~100 bytes is nothing, and a flood of always-new headers is the bucket's job.
    REMEMBER_FAILURES = 1024
    # bcrypt checks of not-yet-known credentials: 2 a second is ~half a core at cost 12, and
    # a burst of 4 lets a few Prometheus replicas log in at once after a restart.
    CHECKS_PER_SECOND = 2.0
    BURST = 4
    # One bcrypt check at a time; a request that cannot start its check this soon is
    # throttled rather than holding an HTTP handler thread.
    WAIT_SECONDS = 0.5

    def __init__(self, users: dict[str, bytes], remember: int = REMEMBER_VERIFIED, *,
                 remember_failures: int = REMEMBER_FAILURES,
                 checks_per_second: float = CHECKS_PER_SECOND, burst: int = BURST,
                 wait: float = WAIT_SECONDS, clock=time.monotonic) -> None:
        self._users = users
        self._remember = remember
        self._remember_failures = remember_failures
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._dummy: bytes | None = None
        self._key = os.urandom(32)
        self._rate = checks_per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._refilled = clock()
        self._wait = wait
        self._slot = threading.BoundedSemaphore(1)
        # bcrypt checks done (including dummy ones), and requests refused unchecked.
        self.checks = 0
        self.throttled = 0

    def _dummy_hash(self) -> bytes:
        # Unknown users are checked against a real hash of the same cost, so a failed login
        # takes as long whether or not the user exists.
        import bcrypt

        if self._dummy is None:
            cost = int(next(iter(self._users.values()))[4:6]) if self._users else 12
            self._dummy = bcrypt.hashpw(b"not a password", bcrypt.gensalt(cost))
        return self._dummy

    def allows(self, header: str | None) -> bool:
        return self.check(header) == self.OK

    def _remembered(self, key: bytes) -> str | None:
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return self.OK
            if key in self._failed:
                self._failed.move_to_end(key)
                return self.DENIED
        return None

    def _take_token(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            if self._tokens < 1.0:
                self.throttled += 1
                return False
            self._tokens -= 1.0
            return True

    def _remember_result(self, key: bytes, ok: bool) -> None:
        with self._lock:
            cache, size = (self._verified, self._remember) if ok else \
                (self._failed, self._remember_failures)
            cache[key] = None
            cache.move_to_end(key)
            while len(cache) > size:
                cache.popitem(last=False)

    def check(self, header: str | None) -> str:
        """"ok", "denied" (wrong or malformed credentials: 401) or "throttled" (not checked:
        too many unknown credentials lately, or the bcrypt slot is busy: 429)."""
        if not header or not header.startswith("Basic "):
            return self.DENIED
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return self.DENIED
        user, separator, password = decoded.partition(":")
        if not separator:
            return self.DENIED
        key = hmac.new(self._key, header.encode("utf-8", "surrogatepass"),
                       hashlib.sha256).digest()
        remembered = self._remembered(key)
        if remembered is not None:
            return remembered
        if not self._take_token():
            return self.THROTTLED
        if not self._slot.acquire(timeout=self._wait):
            with self._lock:
                self.throttled += 1
            return self.THROTTLED
        try:
            # Another request may have checked the same header while this one waited.
            remembered = self._remembered(key)
            if remembered is not None:
                return remembered
            import bcrypt

            hashed = self._users.get(user)
            with self._lock:
                self.checks += 1
            try:
                ok = bcrypt.checkpw(password.encode(), hashed or self._dummy_hash()) \
                    and hashed is not None
            except ValueError:  # e.g. a password bcrypt refuses (longer than 72 bytes)
                ok = False
            self._remember_result(key, ok)
        finally:
            self._slot.release()
        return self.OK if ok else self.DENIED
