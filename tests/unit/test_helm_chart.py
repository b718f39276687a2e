"""The Helm chart in ``helm/driftwarden``, rendered and linted by the real Helm engine.

``helm-python-sdk`` embeds Helm's own Go library (loader, values schema, template engine, linter). Each
values set is rendered once per module: the defaults, and one with every optional part switched on. Every
manifest is validated against the newest Kubernetes schemas that ``kubernetes-validate`` ships, in strict
mode (unknown fields are errors); the prometheus-operator kinds it has no schema for are checked by hand,
the PrometheusRule's groups by ``promtool check rules``. The ConfigMap's ``config.yaml`` goes through
``driftwarden check-config``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import bcrypt
import kubernetes_validate
import pytest
import yaml

from monitor.config import SECRET_ENV, WEBHOOK_SECRET_ENV
from tests.certificates import make_certificates
from tests.components import require, required_module

#: The dev extra installs it only where it has a wheel (pyproject.toml): elsewhere these tests skip, in CI they fail.
helm_python = required_module("helm_python", "helm-python-sdk (Helm's engine, a wheel only for some platforms)")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "driftwarden"
RULE_FILES = [ROOT / "dashboards" / "prometheus" / "recording.yaml", ROOT / "dashboards" / "prometheus" / "alerts.yaml"]
GRAFANA = ROOT / "dashboards" / "grafana"
RELEASE, NAMESPACE = "dw", "monitoring"
KUBERNETES = kubernetes_validate.latest_version()
#: Kinds whose CRDs kubernetes-validate has no schema for; the tests below check them.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}

#: The defaults, with the one value they leave to the user: the bucket of the state store.
DEFAULTS = {"state": {"s3": {"bucket": "driftwarden-state"}}}

#: The s3 store with every setting: a MinIO endpoint, a prefix, a region, and access keys from a Secret.
S3_STORE = {
    "state": {
        "store": "s3",
        "s3": {"bucket": "ml-state", "prefix": "driftwarden/prod/", "endpoint_url": "http://minio.storage:9000",
               "region": "eu-west-1"},
        "credentials": {"existingSecret": "driftwarden-s3", "accessKeyIdKey": "access-key",
                        "secretAccessKeyKey": "secret-key", "sessionTokenKey": "session-token"},
    },
    "replicaCount": 3,
}  # fmt: skip

ALL_ON = {
    "replicaCount": 1,  # with persistence: the local store, one replica
    "state": {"store": "local"},
    "image": {"digest": "sha256:" + "ab" * 32},
    "imagePullSecrets": [{"name": "ghcr-pull"}],
    "config": {
        "kafka": {
            "bootstrap_servers": ["kafka-0.kafka:9093", "kafka-1.kafka:9093"],
            "topics": ["llm-events", "llm-feedback"],
            "dead_letter_topic": None,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "driftwarden",
        },
        "server": {"host": "127.0.0.1", "port": 8000},
        "state": {"dir": "/somewhere/else", "checkpoint_every": "10s"},
        "models": [
            {
                "name": "support-bot",
                "reference": {"warmup": 1000},
                "features": [
                    {"name": "input_tokens", "kind": "numeric"},
                    {"name": "locale", "kind": "categorical", "path": "segment.locale"},
                ],
            }
        ],
        "alerts": {
            "external_url": "http://dw-driftwarden.monitoring:9108",
            "sinks": {
                "alertmanager": {"url": "http://alertmanager-operated.monitoring:9093"},
                "webhook": {"url": "https://hooks.example.com/drift"},
            },
            "rules": [
                {"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.3, "for": "5m",
                 "severity": "warning", "actions": ["alertmanager", "webhook", "retrain"]},
            ],
        },
        "retraining": {"topic": "driftwarden-retraining", "cooldown": "6h"},
    },
    "kafka": {
        "sasl": {"existingSecret": "kafka-user-driftwarden", "key": "password"},
        "tls": {
            "enabled": True,
            "existingSecret": "kafka-client-tls",
            "clientCertificate": True,
            "keyPassword": {"existingSecret": "kafka-client-key-password", "key": "password"},
        },
    },
    "webhook": {"existingSecret": "driftwarden-webhook", "key": "signing-key"},
    "webConfig": {"existingSecret": "driftwarden-web", "key": "web-config.yml", "tls": True},
    "extraEnv": [
        {"name": "TZ", "value": "UTC"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "persistence": {"enabled": True, "storageClass": "fast-ssd", "size": "20Gi", "annotations": {"team": "ml"}},
    "service": {"annotations": {"example.com/owner": "ml-platform"}},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/dw"}},
    "podAnnotations": {"example.com/scrape": "true"},
    "podLabels": {"team": "ml-platform"},
    "priorityClassName": "monitoring",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "monitoring", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [
                    {"key": "node-role", "operator": "In", "values": ["monitoring"]}]}}
            ]
        }
    },
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "driftwarden"}}}
    ],
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    "serviceMonitor": {
        "enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s",
        "endpoint": {"tlsConfig": {"ca": {"secret": {"name": "driftwarden-ca", "key": "ca.crt"}},
                                   "serverName": "dw-driftwarden.monitoring"},
                     "basicAuth": {"username": {"name": "driftwarden-scrape", "key": "username"},
                                   "password": {"name": "driftwarden-scrape", "key": "password"}}},
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboards": {"enabled": True, "folder": "driftwarden", "labels": {"team": "ml-platform"}},
}  # fmt: skip

VALUE_SETS = {"defaults": DEFAULTS, "s3_store": S3_STORE, "all_on": ALL_ON}


def _documents(rendered: dict[str, str]) -> list[dict]:
    return [
        document
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]


def _one(documents: list[dict], kind: str) -> dict:
    found = [document for document in documents if document["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


@pytest.fixture(scope="module")
def chart():
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def _render(chart, values: dict) -> list[dict]:
    return _documents(chart.render(values, name=RELEASE, namespace=NAMESPACE))


@pytest.fixture(scope="module")
def renders(chart) -> dict[str, list[dict]]:
    return {name: _render(chart, values) for name, values in VALUE_SETS.items()}


def _pod(documents: list[dict]) -> dict:
    return _one(documents, "Deployment")["spec"]["template"]["spec"]


def _container(documents: list[dict]) -> dict:
    (container,) = _pod(documents)["containers"]
    return container


def _config_map(documents: list[dict]) -> dict:
    (found,) = [
        document
        for document in documents
        if document["metadata"]["name"] == f"{RELEASE}-driftwarden" and document["kind"] == "ConfigMap"
    ]
    return found


def _config(documents: list[dict]) -> dict:
    return yaml.safe_load(_config_map(documents)["data"]["config.yaml"])


def _dashboards(documents: list[dict]) -> list[dict]:
    return [
        document for document in documents
        if document["kind"] == "ConfigMap" and document["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]  # fmt: skip


# --- Helm's loader, renderer and linter ------------------------------------------------------------------------


def test_the_chart_deploys_the_projects_version(chart):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart.metadata["apiVersion"] == "v2" and chart.metadata["type"] == "application"
    assert chart.metadata["appVersion"] == project


@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint_finds_nothing(values):
    report = helm_python.lint(CHART, VALUE_SETS[values], namespace=NAMESPACE, strict=True)
    assert report["errors"] == []
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


def test_defaults_render_the_core_and_nothing_optional(renders):
    kinds = sorted(document["kind"] for document in renders["defaults"])
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]


def test_all_on_renders_every_part(renders):
    kinds = {document["kind"] for document in renders["all_on"]}
    assert kinds == {
        "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount", "PersistentVolumeClaim",
        "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip


# --- Kubernetes' own schemas, promtool, and the operator kinds ------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_manifest_validates_against_the_newest_kubernetes(renders, values):
    for document in renders[values]:
        if document["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{document['kind']} {document['metadata']['name']} (Kubernetes {KUBERNETES}): {error}")


def test_prometheus_rule_holds_the_repositorys_rule_files_verbatim(renders):
    rule = _one(renders["all_on"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expected = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected
    summaries = [alert["annotations"]["summary"] for alert in rule["spec"]["groups"][-1]["rules"]]
    assert "Data drift on model {{ $labels.model }}" in summaries


def test_prometheus_rule_passes_promtool(renders, tmp_path):
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package 'prometheus')")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": _one(renders["all_on"], "PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_the_services_metrics_port(renders):
    monitor, service = _one(renders["all_on"], "ServiceMonitor"), _one(renders["all_on"], "Service")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    # webConfig.tls: https, and the endpoint's extra fields say how to trust the server and log in.
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == ALL_ON["serviceMonitor"]["endpoint"]["tlsConfig"]
    assert endpoint["basicAuth"]["password"] == {"name": "driftwarden-scrape", "key": "password"}


def test_grafana_dashboards_are_the_repositorys_json_files(renders):
    files = {path.name: path.read_text() for path in sorted(GRAFANA.glob("*.json"))}
    found = _dashboards(renders["all_on"])
    assert {key: value for config_map in found for key, value in config_map["data"].items()} == files
    assert len(found) == len(files), "one ConfigMap per dashboard"
    for config_map in found:
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "driftwarden"}
        assert config_map["metadata"]["labels"]["team"] == "ml-platform"
        for text in config_map["data"].values():
            json.loads(text)
    assert _dashboards(renders["defaults"]) == []


# --- the daemon's config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_config_passes_check_config(renders, values, tmp_path):
    """With the Deployment's secret variables set, as the daemon in the pod sees them."""
    text = _config_map(renders[values])["data"]["config.yaml"]
    config = yaml.safe_load(text)
    web_config_file = config["server"].get("web_config_file")
    if web_config_file:  # read at load: here a valid one stands in for the Secret's file
        certificates = make_certificates(tmp_path / "web")
        hashed = bcrypt.hashpw(b"scrape", bcrypt.gensalt(rounds=4)).decode()
        tls = {"cert_file": str(certificates.server_cert), "key_file": str(certificates.server_key)}
        web = {"tls_server_config": tls, "basic_auth_users": {"prometheus": hashed}}
        config["server"]["web_config_file"] = str(tmp_path / Path(web_config_file).name)
        Path(config["server"]["web_config_file"]).write_text(yaml.safe_dump(web))
        text = text.replace(web_config_file, config["server"]["web_config_file"])
    path = tmp_path / "config.yaml"
    path.write_text(text)
    secrets = {
        variable["name"]: "not-a-secret" for variable in _container(renders[values])["env"] if "valueFrom" in variable
    }
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **secrets},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_owns_host_port_and_state_dir(renders, values):
    documents = renders[values]
    server, state = _config(documents)["server"], _config(documents)["state"]
    container = _container(documents)
    service_port = _one(documents, "Service")["spec"]["ports"][0]
    web = server.pop("web_config_file", None)
    assert server == {"host": "0.0.0.0", "port": 9108}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert (service_port["port"], service_port["targetPort"]) == (9108, "metrics")
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert state["dir"] == mounts["state"] == "/var/lib/driftwarden"
    assert container["args"] == ["run", "--config", f"{mounts['config']}/config.yaml"]
    if values == "all_on":
        assert web == f"{mounts['web-config']}/web-config.yml" == "/etc/driftwarden-web/web-config.yml"
        (volume,) = [volume for volume in _pod(documents)["volumes"] if volume["name"] == "web-config"]
        assert volume["secret"] == {"secretName": "driftwarden-web", "defaultMode": 0o440}
    else:
        assert web is None and "web-config" not in mounts


def test_users_other_keys_stay_beside_the_forced_ones(renders):
    config = _config(renders["all_on"])
    assert config["state"]["checkpoint_every"] == "10s"
    assert config["kafka"]["sasl_username"] == "driftwarden"
    assert config["kafka"]["dead_letter_topic"] is None, "null in the values turns dead letters off"
    assert config["models"] == ALL_ON["config"]["models"]


def test_tls_paths_in_the_config_are_the_mounted_secret_files(renders):
    documents = renders["all_on"]
    kafka, container = _config(documents)["kafka"], _container(documents)
    (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] == "config"]
    assert mount["readOnly"] is True
    volumes = {volume["name"]: volume for volume in _pod(documents)["volumes"]}
    (secret,) = [source["secret"] for source in volumes["config"]["projected"]["sources"] if "secret" in source]
    assert secret["name"] == "kafka-client-tls"
    mounted = {item["key"]: f"{mount['mountPath']}/{item['path']}" for item in secret["items"]}
    assert mounted == {
        "ca.crt": kafka["ssl_cafile"], "tls.crt": kafka["ssl_certfile"], "tls.key": kafka["ssl_keyfile"],
    }  # fmt: skip


def test_secrets_reach_the_daemon_as_the_environment_it_reads(renders):
    env = {variable["name"]: variable for variable in _container(renders["all_on"])["env"]}
    secret_env = {name for name, variable in env.items() if "secretKeyRef" in variable.get("valueFrom", {})}
    assert secret_env == {*SECRET_ENV.values(), WEBHOOK_SECRET_ENV}
    assert env["DRIFTWARDEN_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user-driftwarden", "key": "password",
    }  # fmt: skip
    assert env["DRIFTWARDEN_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "signing-key"
    assert {"TZ", "POD_NAME"} <= env.keys()
    assert not any("value" in variable for name, variable in env.items() if name.startswith("DRIFTWARDEN_"))
    assert _container(renders["defaults"])["env"] == [{"name": "HOME", "value": "/tmp"}]


# --- how the pod runs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_pod_runs_locked_down(renders, values):
    pod = _pod(renders[values])
    container = _container(renders[values])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (10001, 10001)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}["/tmp"] == "tmp"
    assert "emptyDir" in volumes["tmp"]
    assert {"name": "HOME", "value": "/tmp"} in container["env"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_probes_ask_the_daemon_on_the_metrics_port(renders, values):
    container = _container(renders[values])
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    scheme = {"scheme": "HTTPS"} if values == "all_on" else {}  # webConfig.tls: the daemon speaks only TLS
    assert probes == {
        "startupProbe": {"path": "/healthz", "port": "metrics", **scheme},
        "livenessProbe": {"path": "/healthz", "port": "metrics", **scheme},
        "readinessProbe": {"path": "/readyz", "port": "metrics", **scheme},
    }
    assert _pod(renders[values])["terminationGracePeriodSeconds"] >= 30


@pytest.mark.parametrize("values", VALUE_SETS)
def test_service_and_budget_select_the_pods(renders, values):
    deployment = _one(renders[values], "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _one(renders[values], "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    budget = _one(renders[values], "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert _one(renders[values], "ServiceAccount")["metadata"]["name"] == _pod(renders[values])["serviceAccountName"]


def test_state_is_an_empty_dir_by_default_and_a_claim_with_persistence(renders):
    default = _one(renders["defaults"], "Deployment")["spec"]
    persistent = _one(renders["all_on"], "Deployment")["spec"]
    state = {volume["name"]: volume for volume in default["template"]["spec"]["volumes"]}["state"]
    assert "emptyDir" in state and default["strategy"]["type"] == "RollingUpdate"
    claim = _one(renders["all_on"], "PersistentVolumeClaim")
    state = {volume["name"]: volume for volume in persistent["template"]["spec"]["volumes"]}["state"]
    assert state["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert persistent["strategy"] == {"type": "Recreate"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_defaults_run_two_replicas_on_the_s3_store_with_a_budget_of_one(renders):
    documents = renders["defaults"]
    deployment = _one(documents, "Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert _one(documents, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    state = _config(documents)["state"]
    assert (state["store"], state["s3"]) == ("s3", {"bucket": "driftwarden-state", "prefix": ""})
    assert not any(variable["name"].startswith("AWS_") for variable in _container(documents)["env"])


def test_the_s3_store_settings_reach_the_config_and_its_keys_the_environment(renders):
    documents = renders["s3_store"]
    assert _one(documents, "Deployment")["spec"]["replicas"] == 3
    state = _config(documents)["state"]
    assert state["store"] == "s3" and state["s3"] == S3_STORE["state"]["s3"]
    env = {variable["name"]: variable.get("valueFrom") for variable in _container(documents)["env"]}
    assert {name: env[name] for name in env if name.startswith("AWS_")} == {
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "driftwarden-s3", "key": "access-key"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "driftwarden-s3", "key": "secret-key"}},
        "AWS_SESSION_TOKEN": {"secretKeyRef": {"name": "driftwarden-s3", "key": "session-token"}},
    }


def test_the_local_store_with_one_replica_renders_no_bucket(renders):
    state = _config(renders["all_on"])["state"]
    assert state["store"] == "local" and "s3" not in state
    assert _one(renders["all_on"], "Deployment")["spec"]["replicas"] == 1


def test_config_checksum_rolls_the_pods_on_config_changes_only(chart, renders):
    def checksum(documents: list[dict]) -> str:
        return _one(documents, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum(renders["defaults"])
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum(_render(chart, {**DEFAULTS, "config": {"windows": {"size": 500}}})) != base
    assert checksum(_render(chart, {**DEFAULTS, "podAnnotations": {"example.com/note": "x"}})) == base


# --- values the chart refuses -------------------------------------------------------------------------------------


def test_persistence_with_two_replicas_fails_with_the_reason(chart):
    with pytest.raises(helm_python.HelmRenderError, match=r"persistence\.enabled with replicaCount 2: a ReadWriteOnce"):
        chart.render({**DEFAULTS, "persistence": {"enabled": True}, "replicaCount": 2})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, r"/state/s3/bucket.*minLength: got 0, want 1"),  # the s3 store, the default, needs its bucket
        ({"state": {"store": "s3", "s3": {"bucket": ""}}}, r"/state/s3/bucket.*minLength"),
        ({"state": {"store": "local"}}, r"/replicaCount.*maximum: got 2, want 1"),  # local, with the default 2
        ({"state": {"store": "local"}, "replicaCount": 3}, r"/replicaCount.*maximum: got 3, want 1"),
        ({"state": {"store": "gcs"}}, r"/state/store.*value must be one of"),
        ({**DEFAULTS, "state": {"s3": {"bucket": "b", "endpoint_url": "http://key:secret@minio:9000"}}},
         r"/state/s3/endpoint_url.*does not match pattern"),
        ({"replicaCount": "two"}, r"/replicaCount.*want integer"),
        ({"replicas": 2}, r"additional properties 'replicas' not allowed"),
        ({"terminationGracePeriodSeconds": 15}, r"/terminationGracePeriodSeconds.*minimum"),
        ({"service": {"port": "9108"}}, r"/service/port.*want integer"),
        ({"config": {"models": {"name": "*"}}}, r"/config/models.*want array"),
    ],
)
def test_schema_rejects_bad_values(chart, values, message):
    with pytest.raises(helm_python.HelmValuesError, match=re.compile(message, re.S)):
        chart.render(values)


def test_the_schema_says_why_local_state_allows_one_replica():
    schema = json.loads((CHART / "values.schema.json").read_text())
    (rule,) = [rule for rule in schema["allOf"] if rule["then"]["properties"].get("replicaCount")]
    store = schema["properties"]["state"]["properties"]["store"]
    assert "cannot follow a partition to another pod" in rule["description"]
    assert "cannot follow a partition to another pod" in store["description"]


def test_notes_say_where_the_state_lives_and_why_local_means_one_replica(chart):
    def notes(values: dict) -> str:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
        return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))

    bucket = "s3://ml-state/driftwarden/prod/ at http://minio.storage:9000, which every replica reaches"
    assert bucket in notes(S3_STORE)
    local = notes({"replicaCount": 1, "state": {"store": "local"}})
    assert "a pod's local\ndirectory cannot follow a partition to another pod" in local
    assert "emptyDir: the state is lost with the pod" in local


def test_the_chart_owns_the_state_store_keys_of_the_config(chart):
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.state\.store and config\.state\.s3 are the chart"):
        chart.render({**DEFAULTS, "config": {"state": {"store": "local"}}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka": {"tls": {"enabled": True, "existingSecret": "tls"}}}, r"kafka\.tls\.enabled needs .*SSL"),
        ({"kafka": {"tls": {"enabled": True}}, "config": {"kafka": {"security_protocol": "SSL"}}}, r"existingSecret"),
        ({"kafka": {"sasl": {"existingSecret": "user"}}}, r"kafka\.sasl\.existingSecret needs .*SASL_PLAINTEXT"),
        ({"replicaCount": 1, "state": {"store": "local", "credentials": {"existingSecret": "s3-keys"}}},
         r"state\.credentials\.existingSecret needs state\.store s3 \(got local\)"),
    ],
)
def test_secrets_that_the_protocol_would_ignore_fail(chart, values, message):
    with pytest.raises(helm_python.HelmRenderError, match=message):
        chart.render({**DEFAULTS, **values})


# --- the image --------------------------------------------------------------------------------------------------------


def test_dockerfile_builds_in_stages_and_runs_as_the_charts_user():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages = [index for index, words in enumerate(lines) if words[0] == "FROM"]
    assert len(stages) >= 2
    final = lines[stages[-1] :]
    users = [words[1] for words in final if words[0] == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert ["EXPOSE", "9108"] in final


def test_packaged_chart_carries_the_linked_files(chart, tmp_path):
    """``helm package`` stores the files behind the links, so the archive renders as the directory does."""
    path = chart.save(tmp_path)
    with tarfile.open(path) as archive:
        names = {member.name for member in archive.getmembers() if member.isfile()}
    linked = {f"driftwarden/files/prometheus/{path.name}" for path in RULE_FILES}
    linked |= {f"driftwarden/files/grafana/{path.name}" for path in GRAFANA.glob("*.json")}
    assert linked <= names
    with helm_python.Chart.load(path) as packaged:
        assert packaged.render(ALL_ON, name=RELEASE, namespace=NAMESPACE) == chart.render(
            ALL_ON, name=RELEASE, namespace=NAMESPACE
        )


def test_chart_links_into_dashboards_resolve():
    """Helm refuses to load a chart with a dangling link."""
    links = [path for path in (CHART / "files").rglob("*") if path.is_symlink()]
    assert links and all(path.exists() for path in links), links
    assert all(os.path.realpath(path).startswith(str(ROOT / "dashboards")) for path in links)
