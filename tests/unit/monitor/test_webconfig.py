"""exporter-toolkit's web configuration file: what it accepts, what it refuses (by key), and basic auth."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys

import bcrypt
import pytest
import yaml

from monitor.config import ConfigError, load_config, parse_config
from monitor.export.webconfig import BasicAuth, WebConfig, WebConfigError
from tests.certificates import make_certificates

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _parse(data: dict, directory) -> WebConfig:
    return WebConfig.parse(data, directory / "web.yml")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_tls_and_users_as_exporter_toolkit_writes_them(certificates, tmp_path):
    web = _parse(
        {
            "tls_server_config": {
                "cert_file": str(certificates.server_cert),
                "key_file": str(certificates.server_key),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(certificates.ca),
                "min_version": "TLS13",
            },
            "basic_auth_users": {"prometheus": HASH, "oncall": HASH.replace("$2b$", "$2y$")},
        },
        tmp_path,
    )
    assert web.tls.verify_mode == ssl.CERT_REQUIRED
    assert web.tls.minimum_version == ssl.TLSVersion.TLSv1_3
    assert web.auth.users == ("prometheus", "oncall")
    assert web.describe().startswith("https with client certificates, basic auth for prometheus, oncall")


def test_relative_paths_are_relative_to_the_web_config_file(certificates):
    directory = certificates.ca.parent
    web = _parse({"tls_server_config": {"cert_file": certificates.server_cert.name,
                                         "key_file": certificates.server_key.name}}, directory)  # fmt: skip
    assert web.tls is not None and web.auth is None


def test_an_empty_file_means_plain_http_without_auth(tmp_path):
    web = _parse(None, tmp_path)
    assert (web.tls, web.auth) == (None, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tls_config": {}}, "tls_config: unknown key (valid keys: tls_server_config, basic_auth_users)"),
        ({"tls_server_config": {"cert_fil": "x"}}, "tls_server_config.cert_fil: unknown key (valid keys: cert_file"),
        ({"tls_server_config": {"cert_file": "a.crt"}}, "tls_server_config.key_file: required"),
        ({"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}},
         "tls_server_config.cipher_suites: not supported by driftwarden"),
        ({"http_server_config": {"http2": False}}, "http_server_config: not supported by driftwarden"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "RequireAnyClientCert"}},
         "tls_server_config.client_auth_type: RequireAnyClientCert is not supported"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Always"}},
         "tls_server_config.client_auth_type: must be one of NoClientCert, VerifyClientCertIfGiven"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "ca.crt"}},
         "tls_server_config.client_ca_file: needs client_auth_type"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "SSL3"}},
         "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13 (got 'SSL3')"),
        ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
         "tls_server_config.cert_file, key_file:"),
        ({"basic_auth_users": {"prometheus": "plain-text-password"}},
         "basic_auth_users.prometheus: must be a bcrypt hash"),
        ({"basic_auth_users": {"a:b": HASH}}, "basic_auth_users.a:b: a user name is a non-empty string without ':'"),
        ({"basic_auth_users": ["prometheus"]}, "basic_auth_users: must be a mapping of user to bcrypt hash"),
    ],
)  # fmt: skip
def test_a_wrong_key_or_value_is_an_error_that_names_it(data, message, tmp_path):
    with pytest.raises(WebConfigError) as raised:
        _parse(data, tmp_path)
    assert f"{tmp_path / 'web.yml'}: {message}" in str(raised.value)


def test_a_password_given_instead_of_its_hash_is_not_repeated_in_the_error(tmp_path):
    with pytest.raises(WebConfigError) as raised:
        _parse({"basic_auth_users": {"prometheus": "hunter2-but-longer"}}, tmp_path)
    assert "hunter2" not in str(raised.value)


def test_the_daemon_config_reads_the_file_at_load_and_reports_its_errors_under_its_key(tmp_path):
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_fil: server.crt\n")
    with pytest.raises(ConfigError) as raised:
        parse_config({"server": {"web_config_file": str(tmp_path / "web.yml")}})
    assert str(raised.value).startswith(f"server.web_config_file: {tmp_path / 'web.yml'}: tls_server_config.cert_fil:")
    (tmp_path / "web.yml").write_text("basic_auth_users:\n  a: x\n  a: y\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 3, column 3: duplicate key 'a'"):
        parse_config({"server": {"web_config_file": str(tmp_path / "web.yml")}})
    with pytest.raises(ConfigError, match="server.web_config_file: .*missing.yml: cannot read"):
        parse_config({"server": {"web_config_file": str(tmp_path / "missing.yml")}})


def test_check_config_reports_an_unknown_key_of_the_web_config_and_exits_2(tmp_path):
    (tmp_path / "web.yml").write_text("basic_auth_user:\n  prometheus: x\n")
    config = tmp_path / "driftwarden.yaml"
    config.write_text(yaml.safe_dump({"server": {"web_config_file": str(tmp_path / "web.yml")}}))
    finished = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    assert "server.web_config_file:" in finished.stderr and "basic_auth_user: unknown key" in finished.stderr

    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    finished = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    assert "server: 0.0.0.0:9108, http, basic auth for prometheus" in finished.stdout
    assert load_config(config).server.web_config_file.auth.users == ("prometheus",)


def test_basic_auth_accepts_the_right_password_only():
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.check(_basic("prometheus", "s3cret"))
    assert auth.check(_basic("prometheus", "s3cret"))  # from the cache of verified pairs
    assert not auth.check(_basic("prometheus", "wrong"))
    assert not auth.check(_basic("nobody", "s3cret"))
    assert not auth.check(_basic("prometheus", "s3cret").replace("Basic", "Bearer"))
    assert not auth.check("Basic not-base64!")
    assert not auth.check(None)


def test_a_verified_password_is_not_hashed_again_but_a_wrong_one_always_is(monkeypatch):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuth({"prometheus": hashed.encode()})
    checks = []
    checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *arguments: checks.append(1) or checkpw(*arguments))
    assert auth.check(_basic("prometheus", "s3cret"))
    for _ in range(20):
        assert auth.check(_basic("prometheus", "s3cret"))
    assert len(checks) == 1  # remembered after the first
    assert not auth.check(_basic("nobody", "s3cret"))  # an unknown user costs a bcrypt check too
    assert not auth.check(_basic("prometheus", "wrong"))  # and so does a wrong password, every time
    assert not auth.check(_basic("prometheus", "wrong"))
    assert len(checks) == 4
