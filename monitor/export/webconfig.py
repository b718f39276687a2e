"""exporter-toolkit's web configuration file: TLS and basic authentication for the HTTP server.

The file every Prometheus exporter takes with ``--web.config.file``, given to
driftwarden as ``server.web_config_file``. It is read once, when the config is
loaded (``driftwarden run`` and ``check-config``), so that a mistake stops the
start with the key that is wrong. These keys are understood::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the web config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
      client_ca_file: clients-ca.crt
      min_version: TLS12             # TLS10..TLS13; default TLS12
      max_version: TLS13
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'

Keys exporter-toolkit knows but this server does not implement (cipher
suites, curves, allowed SANs, inline certificates, ``http_server_config``)
are refused by name rather than ignored: each would tighten security, and a
setting that silently does nothing is worse than an error.

>>> web = WebConfig.parse({"basic_auth_users": {"prometheus": _DUMMY_HASH.decode()}}, Path("web.yml"))
>>> (web.tls, web.auth.users)
(None, ('prometheus',))
>>> WebConfig.parse({"tls_server_config": {"cert_fil": "a.crt"}}, Path("web.yml"))
Traceback (most recent call last):
...
monitor.export.webconfig.WebConfigError: web.yml: tls_server_config.cert_fil: unknown key (valid keys: cert_file, ...)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

__all__ = ["BasicAuth", "WebConfig", "WebConfigError"]

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
#: exporter-toolkit's keys that this server refuses, with why.
_NOT_SUPPORTED = {
    "http_server_config": "not supported by driftwarden (it sets its own security headers; HTTP/1.1 only)",
    "tls_server_config.cipher_suites": "not supported by driftwarden (OpenSSL's defaults for min_version apply)",
    "tls_server_config.curve_preferences": "not supported by driftwarden (OpenSSL's defaults apply)",
    "tls_server_config.prefer_server_cipher_suites": "not supported by driftwarden",
    "tls_server_config.client_allowed_sans": "not supported by driftwarden (trust a CA that signs only the clients)",
    "tls_server_config.cert": "not supported by driftwarden: use cert_file",
    "tls_server_config.key": "not supported by driftwarden: use key_file",
    "tls_server_config.client_ca": "not supported by driftwarden: use client_ca_file",
    "tls_server_config.client_auth_type.RequestClientCert": "not supported (Python's TLS verifies every "
    "certificate it asks for): use VerifyClientCertIfGiven",
    "tls_server_config.client_auth_type.RequireAnyClientCert": "not supported (Python's TLS verifies every "
    "certificate it asks for): use RequireAndVerifyClientCert",
}
_TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
#: A bcrypt hash (cost 10) of nothing anyone sends: an unknown user costs what a known one does.
_DUMMY_HASH = b"$2b$10$hqdR9oJLPyYgElS6kc71muc6dm/9vySFZCK9hKP4BSZ5dpBUayjcC"
#: What htpasswd -B and bcrypt libraries write: variant, cost 4 to 31, 22 characters of salt, 31 of hash.
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_MAX_VERIFIED = 64


class WebConfigError(ValueError):
    """A web configuration file that cannot be used; the message names the file and the key."""


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, remembering recent successes.

    bcrypt is slow on purpose (a tenth of a second at cost 10), so a
    verified (user, password) pair is kept, as a SHA-256 digest, for the
    next scrapes; failures are never cached. An unknown user is checked
    against a dummy hash, so timing does not tell which users exist.
    """

    def __init__(self, hashes: dict[str, bytes]):
        self._hashes = dict(hashes)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._hashes)

    def check(self, authorization: str | None) -> bool:
        """True when the header's user and password match a configured user."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._hashes.get(user)
        digest = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        with self._lock:
            if hashed is not None and digest in self._verified:
                return True
        matches = bcrypt.checkpw(password, hashed or _DUMMY_HASH) and hashed is not None
        if matches:
            with self._lock:
                if len(self._verified) >= _MAX_VERIFIED:
                    self._verified.clear()
                self._verified.add(digest)
        return matches


def _basic_credentials(authorization: str | None) -> tuple[str, bytes] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, separator, password = decoded.partition(b":")
        return (user.decode("utf-8"), password) if separator else None
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True, eq=False)
class WebConfig:
    """A parsed web configuration: the server's TLS context (None: plain HTTP) and its users (None: no auth)."""

    path: Path
    tls: ssl.SSLContext | None
    auth: BasicAuth | None

    @classmethod
    def parse(cls, data: Any, path: Path) -> WebConfig:
        """Validate the file's YAML content (``path`` names it in errors and anchors relative paths)."""
        try:
            data = {} if data is None else data
            _keys(data, "", ("tls_server_config", "basic_auth_users"))
            return cls(path, _tls_context(data.get("tls_server_config"), path.parent), _auth(data))
        except WebConfigError as error:
            raise WebConfigError(f"{path}: {error}") from None

    def describe(self) -> str:
        """One line for ``check-config``: the scheme and who may ask."""
        scheme = "https" if self.tls is not None else "http"
        if self.tls is not None and self.tls.verify_mode != ssl.CERT_NONE:
            scheme += " with client certificates"
        users = f"basic auth for {', '.join(self.auth.users)}" if self.auth else "no basic auth"
        return f"{scheme}, {users} ({self.path})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Config fields hold a parsed WebConfig and dump as its path (see ``monitor.config``)."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(lambda web: str(web.path))
        )


def _keys(data: Any, where: str, known: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise WebConfigError(f"{where or 'the file'}: must be a mapping (got {type(data).__name__})")
    for key in data:
        location = f"{where}.{key}" if where else str(key)
        if location in _NOT_SUPPORTED:
            raise WebConfigError(f"{location}: {_NOT_SUPPORTED[location]}")
        if key not in known:
            raise WebConfigError(f"{location}: unknown key (valid keys: {', '.join(known)})")


def _string(data: dict, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise WebConfigError(f"{where}.{key}: must be a non-empty string (got {value!r})")
    return value


def _choice(data: dict, key: str, choices: dict, default: str) -> Any:
    where = "tls_server_config"
    value = _string(data, key, where) or default
    if f"{where}.{key}.{value}" in _NOT_SUPPORTED:
        raise WebConfigError(f"{where}.{key}: {value} is {_NOT_SUPPORTED[f'{where}.{key}.{value}']}")
    if value not in choices:
        raise WebConfigError(f"{where}.{key}: must be one of {', '.join(choices)} (got {value!r})")
    return choices[value]


def _tls_context(data: Any, directory: Path) -> ssl.SSLContext | None:
    """The server-side context, certificates loaded now so that a wrong file fails the start."""
    if not data:
        return None
    where = "tls_server_config"
    _keys(data, where, _TLS_KEYS)
    files = {key: _string(data, key, where) for key in ("cert_file", "key_file", "client_ca_file")}
    for key in ("cert_file", "key_file"):
        if files[key] is None:
            raise WebConfigError(f"{where}.{key}: required with tls_server_config")
    verify_mode = _choice(data, "client_auth_type", _CLIENT_AUTH, "NoClientCert")
    if (verify_mode == ssl.CERT_NONE) != (files["client_ca_file"] is None):
        raise WebConfigError(
            f"{where}.client_ca_file: needs client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert, "
            "and they need it"
        )
    lowest = _choice(data, "min_version", _TLS_VERSIONS, "TLS12")
    highest = _choice(data, "max_version", _TLS_VERSIONS, "TLS13")
    if lowest > highest:
        raise WebConfigError(f"{where}.min_version: is above max_version")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = lowest, highest
    paths = {key: directory / value for key, value in files.items() if value is not None}
    try:
        context.load_cert_chain(paths["cert_file"], paths["key_file"])
    except (OSError, ssl.SSLError) as error:
        pair = f"{paths['cert_file']}, {paths['key_file']}"
        raise WebConfigError(f"{where}.cert_file, key_file: {pair}: {error}") from None
    if "client_ca_file" in paths:
        try:
            context.load_verify_locations(cafile=paths["client_ca_file"])
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(f"{where}.client_ca_file: {paths['client_ca_file']}: {error}") from None
    context.verify_mode = verify_mode
    return context


def _auth(data: dict) -> BasicAuth | None:
    users = data.get("basic_auth_users")
    if not users:
        return None
    if not isinstance(users, dict):
        raise WebConfigError(f"basic_auth_users: must be a mapping of user to bcrypt hash (got {type(users).__name__})")
    hashes = {}
    for user, hashed in users.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where}: a user name is a non-empty string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise WebConfigError(f"{where}: must be a bcrypt hash ($2y$10$ and 53 characters; got {len(str(hashed))})")
        hashes[user] = hashed.encode()
    return BasicAuth(hashes)
