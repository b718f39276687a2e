"""``driftwarden run`` behind exporter-toolkit's web configuration, scraped by a real Prometheus over TLS.

The daemon gets a certificate from a CA made for the test and one bcrypt
user. Prometheus scrapes it twice, as an operator would configure it
(``scheme: https``, ``tls_config.ca_file``, ``basic_auth``) and with a wrong
password: the first target is up, the second down with a 401. Kafka is not
needed for this (the daemon serves while it waits for a broker).
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import urllib.error
import urllib.request

import bcrypt
import yaml

from monitor.demo.broker import free_port
from tests.certificates import make_certificates
from tests.components import DaemonProcess, daemon_config, http_get, wait_for

PASSWORD = "scrape-me-please"


def _get(url: str, context: ssl.SSLContext, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"prometheus:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _job(name: str, target: str, ca_file: str, password: str) -> dict:
    return {
        "job_name": name,
        "scheme": "https",
        "tls_config": {"ca_file": ca_file},
        "basic_auth": {"username": "prometheus", "password": password},
        "static_configs": [{"targets": [target]}],
    }


def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_is_down(tmp_path, start_prometheus):
    certificates = make_certificates(tmp_path / "tls")
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "tls/test-server.crt", "key_file": "tls/test-server.key"},
                "basic_auth_users": {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()},
            }
        )
    )
    server = {"web_config_file": str(web_config)}
    config = daemon_config(f"127.0.0.1:{free_port()}", tmp_path / "state", "web", server=server)
    daemon = DaemonProcess(config, tmp_path).launch()
    try:
        base = f"https://127.0.0.1:{daemon.port}"
        context = ssl.create_default_context(cafile=str(certificates.ca))
        wait_for(lambda: daemon._alive() and _get(f"{base}/healthz", context) == 200, 30, "/healthz over TLS")
        assert _get(f"{base}/metrics", context) == 401
        assert _get(f"{base}/metrics", context, PASSWORD) == 200
        assert http_get(f"http://127.0.0.1:{daemon.port}/healthz")[0] != 200  # no plain HTTP on a TLS port
        assert "serving https://" in daemon.log()

        target = f"127.0.0.1:{daemon.port}"
        prometheus = start_prometheus(
            [],
            scrape_configs=[
                _job("driftwarden", target, str(certificates.ca), PASSWORD),
                _job("driftwarden-wrong-password", target, str(certificates.ca), "guess"),
            ],
        )

        def both_scraped():
            up = prometheus.values("up", "job")
            return up if len(up) == 2 else None

        up = wait_for(both_scraped, 30, "Prometheus to scrape both jobs")
        assert up == {("driftwarden",): 1.0, ("driftwarden-wrong-password",): 0.0}
        scraped = prometheus.values('driftwarden_events_unmonitored_total{job="driftwarden"}')
        assert scraped == {(): 0.0}
        status, body = http_get(f"{prometheus.url}/api/v1/targets")
        errors = {
            target["labels"]["job"]: target["lastError"] for target in json.loads(body)["data"]["activeTargets"]
        }
        assert errors["driftwarden"] == "" and "401" in errors["driftwarden-wrong-password"]
        assert daemon.stop(signal.SIGTERM, timeout_s=30) == 0
    finally:
        daemon.close()
