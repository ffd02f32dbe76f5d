"""The Helm chart in deploy/helm: it renders (with Helm's own Go SDK), every manifest is valid
against the Kubernetes schemas, pods are locked down, and every setting of settings.py is wired.

Rendering goes through helm-python-sdk, which bundles Helm's Go SDK as a native library, so no
`helm` binary and no cluster are needed; kubernetes-validate bundles the API schemas, so nothing
is fetched either.
"""

from __future__ import annotations

import base64
import copy
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr, ValidationError

from api.keys import load_key_entries
from settings import Settings

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm"
PRODUCTION_VALUES = CHART / "values-production.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion); its schemas have every
# field the chart uses (container appArmorProfile arrived in 1.30).
KUBERNETES_VERSION = "1.30"
RELEASE, NAMESPACE = "orch", "data-science"

# Settings the chart does not set, each with the reason. Everything else must reach the API's
# or the worker's environment in the default or the production render.
NOT_WIRED = {
    # Optional remote endpoints: unset means "not used", and an empty string would not mean
    # unset, so the chart leaves them out; values.yaml shows them, commented, under `config`.
    "browser_agent_url": "optional remote executor; set config.BROWSER_AGENT_URL to use it",
    "ml_worker_url": "optional remote executor; set config.ML_WORKER_URL to use it",
    "openai_base_url": "optional OpenAI-compatible server; set config.OPENAI_BASE_URL",
    "anthropic_base_url": "optional Anthropic endpoint; set config.ANTHROPIC_BASE_URL",
}

# Where the chart's `config` defaults differ from settings.py's on purpose.
DELIBERATE_CONFIG_DEFAULTS = {
    # Behind a shared API, local paths would expose the pod's files.
    "ALLOW_LOCAL_DATASETS",
    # settings.py allows the dev server's Web UI; a cluster has no such origin.
    "CODEC_CORS_ORIGINS",
}


@dataclass(frozen=True)
class Release:
    """The manifests one render produced."""

    manifests: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        return found

    def deployment(self, component: str) -> dict[str, Any]:
        return self.named("Deployment", f"{RELEASE}-orchestrator-{component}")

    def container(self, component: str) -> dict[str, Any]:
        (container,) = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        return container

    def environment(self, component: str) -> dict[str, str | None]:
        """The container's variables: literal values, ConfigMap entries, None for Secret refs."""
        container = self.container(component)
        env: dict[str, str | None] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                config_map = self.named("ConfigMap", source["configMapRef"]["name"])
                env.update(config_map.get("data") or {})
            if "secretRef" in source:
                env.update(dict.fromkeys(self._secret_data(source["secretRef"]["name"]), None))
        for variable in container.get("env", []):
            env[variable["name"]] = variable.get("value")
        return env

    def _secret_data(self, name: str) -> dict[str, str]:
        secrets = [m for m in self.of_kind("Secret") if m["metadata"]["name"] == name]
        return (secrets[0].get("data") or {}) if secrets else {}

    def secret_file(self, name: str, key: str) -> bytes:
        return base64.b64decode(self._secret_data(name)[key])


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values files layered the way `helm -f a.yaml -f b.yaml` layers them."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(*layers: dict[str, Any]) -> Release:
    values: dict[str, Any] = {}
    for layer in layers:
        values = deep_merge(values, layer)
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = [
        document
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document
    ]
    return Release(manifests)


def production() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text())
    return loaded


# Production on Temporal Cloud, with API keys for callers and secrets the chart makes itself:
# the paths the production file does not take.
CLOUD_WITH_API_KEYS = {
    "temporal": {
        "address": "data-science.a1b2c.tmprl.cloud:7233",
        "tls": {"enabled": False},
        "apiKey": {"existingSecret": "temporal-cloud"},
    },
    "auth": {"mode": "api_key"},
    "secrets": {"existingSecret": "", "values": {"METRICS_TOKEN": "scrape-me"}},
}
SCENARIOS = {
    "default": lambda: render(),
    "production": lambda: render(production()),
    "cloud-api-keys": lambda: render(production(), CLOUD_WITH_API_KEYS),
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def release(request: pytest.FixtureRequest) -> Release:
    return SCENARIOS[request.param]()


@pytest.fixture(scope="module")
def default_release() -> Release:
    return SCENARIOS["default"]()


@pytest.fixture(scope="module")
def production_release() -> Release:
    return SCENARIOS["production"]()


# --- Kubernetes schemas ------------------------------------------------------------------

# prometheus-operator's CRDs are not among the Kubernetes schemas, so the ServiceMonitor is
# checked against the part of monitoring.coreos.com/v1 this chart uses, closed to other fields
# so a misspelt one fails.
_SERVICE_MONITOR_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port", "path"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
        "scrapeTimeout": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
        "authorization": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "credentials"],
            "properties": {
                "type": {"const": "Bearer"},
                "credentials": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "key"],
                    "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                },
            },
        },
    },
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {"type": "array", "minItems": 1, "items": _SERVICE_MONITOR_ENDPOINT},
            },
        },
    },
}


def validate_manifest(manifest: dict[str, Any]) -> None:
    if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(manifest, SERVICE_MONITOR_SCHEMA)
        return
    # Strict: an unknown field (a misspelt key the API server would drop) is an error too.
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_valid_against_the_kubernetes_schemas(release: Release) -> None:
    assert release.manifests
    for manifest in release.manifests:
        try:
            validate_manifest(manifest)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as err:
            where = ".".join(str(part) for part in err.path)
            pytest.fail(
                f"{manifest['kind']}/{manifest['metadata']['name']}: {where}: {err.message}"
            )


def test_a_misspelt_field_fails_validation(default_release: Release) -> None:
    """The validation above is strict enough to catch what the API server would silently drop."""
    deployment = copy.deepcopy(default_release.deployment("worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment)
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {},
            "endpoints": [{"port": "http", "path": "/metrics", "intervall": "5s"}],
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(monitor)


def test_default_render_has_the_expected_objects(default_release: Release) -> None:
    kinds = sorted(m["kind"] for m in default_release.manifests)
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "Deployment", "NetworkPolicy", "NetworkPolicy",
         "PersistentVolumeClaim", "PodDisruptionBudget", "PodDisruptionBudget", "Secret",
         "Secret", "Service", "Service", "ServiceAccount"]
    )  # fmt: skip


def test_production_adds_autoscalers_and_a_service_monitor(production_release: Release) -> None:
    autoscalers = production_release.of_kind("HorizontalPodAutoscaler")
    assert {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers} == {
        production_release.deployment("api")["metadata"]["name"],
        production_release.deployment("worker")["metadata"]["name"],
    }
    for component in ("api", "worker"):
        # The autoscaler owns the replica count; a fixed one would fight it on every upgrade.
        assert "replicas" not in production_release.deployment(component)["spec"]
    assert len(production_release.of_kind("ServiceMonitor")) == 1


def test_helm_lint_finds_no_errors() -> None:
    for values in ({}, production()):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not errors, errors


# --- Pod security, probes, resources -------------------------------------------------------


def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(release: Release) -> None:
    for component in ("api", "worker"):
        pod = release.deployment(component)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        context = release.container(component)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_api_keeps_the_runtime_default_seccomp_profile(release: Release) -> None:
    # Only the worker's sandbox needs more; the API never makes namespaces.
    pod = release.deployment("api")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostUsers" not in pod
    assert "appArmorProfile" not in release.container("api")["securityContext"]


def test_writable_paths_are_volumes(release: Release) -> None:
    """With a read-only root, /tmp, DATA_DIR and the worker's scratch must be mounted."""
    for component in ("api", "worker"):
        mounts = {m["mountPath"]: m["name"] for m in release.container(component)["volumeMounts"]}
        volumes = {
            v["name"]: v
            for v in release.deployment(component)["spec"]["template"]["spec"]["volumes"]
        }
        data_dir = release.environment(component)["DATA_DIR"]
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "persistentVolumeClaim" in volumes[mounts[str(data_dir)]]
    worker_mounts = {m["mountPath"]: m["name"] for m in release.container("worker")["volumeMounts"]}
    worker_volumes = {
        v["name"]: v for v in release.deployment("worker")["spec"]["template"]["spec"]["volumes"]
    }
    # ExecutionActivities keeps its work folders in DATA_DIR/scratch: node-local disk, per pod.
    scratch = posixpath.join(str(release.environment("worker")["DATA_DIR"]), "scratch")
    assert "emptyDir" in worker_volumes[worker_mounts[scratch]]


def _port_number(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_probes_ask_the_health_endpoints_on_the_ports_the_app_listens_on(release: Release) -> None:
    api, worker = release.container("api"), release.container("worker")
    api_env, worker_env = release.environment("api"), release.environment("worker")
    for container, port_name, listening in (
        (api, "http", api_env["PORT"]),
        (worker, "metrics", worker_env["WORKER_METRICS_PORT"]),
    ):
        assert _port_number(container, port_name) == int(str(listening))
        for probe, path in (
            ("startupProbe", "/health/live"),
            ("livenessProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": port_name}
    # The kubelet probes the pod's address: a loopback-only listener would never answer it.
    assert worker_env["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert "--host=0.0.0.0" in api["command"]
    assert f"--port={api_env['PORT']}" in api["command"]


def test_containers_request_and_limit_cpu_and_memory(release: Release) -> None:
    for component in ("api", "worker"):
        resources = release.container(component)["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) >= {"cpu", "memory"}, (component, bound)


def test_services_budgets_and_policies_select_their_own_pods(release: Release) -> None:
    pods = {
        component: release.deployment(component)["spec"]["template"]["metadata"]["labels"]
        for component in ("api", "worker")
    }

    def selects(selector: dict[str, str], component: str) -> bool:
        return selector.items() <= pods[component].items()

    for component in ("api", "worker"):
        name = f"{RELEASE}-orchestrator-{component}"
        other = "worker" if component == "api" else "api"
        for selector in (
            release.named("Service", name)["spec"]["selector"],
            release.named("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"],
            release.named("NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"],
            release.deployment(component)["spec"]["selector"]["matchLabels"],
        ):
            assert selects(selector, component) and not selects(selector, other)


# --- Settings wiring -----------------------------------------------------------------------


def env_name(field: str) -> str:
    return field.upper()  # settings.py has no env_prefix or aliases


def test_settings_read_their_plain_upper_case_names() -> None:
    # env_name above relies on this; a prefix or alias would make every check below vacuous.
    assert not Settings.model_config.get("env_prefix")
    assert not [name for name, field in Settings.model_fields.items() if field.alias]


def test_every_setting_is_wired_into_a_deployment_or_excluded_with_a_reason() -> None:
    wired: set[str] = set()
    for scenario in SCENARIOS.values():
        release = scenario()
        for component in ("api", "worker"):
            wired |= set(release.environment(component))
    missing = [
        name
        for name in Settings.model_fields  # read now: a setting added later is caught too
        if env_name(name) not in wired and name not in NOT_WIRED
    ]
    assert not missing, (
        f"settings not wired through deploy/helm: {missing}. Add each to values.yaml (`config` "
        "or its own block) or to NOT_WIRED in this test with the reason."
    )
    stale = [name for name in NOT_WIRED if name not in Settings.model_fields]
    assert not stale, f"NOT_WIRED names settings that no longer exist: {stale}"
    wired_anyway = [name for name in NOT_WIRED if env_name(name) in wired]
    assert not wired_anyway, f"NOT_WIRED settings the chart now sets: {wired_anyway}"


def test_unwired_optional_settings_are_shown_in_values_yaml() -> None:
    values_text = (CHART / "values.yaml").read_text()
    for name in NOT_WIRED:
        assert f"# {env_name(name)}: " in values_text, f"values.yaml should show {env_name(name)}"


def _settings_from(environment: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)
    for name, value in environment.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_rendered_environment_is_accepted_by_settings(
    release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers, booleans and choices arrive in a form settings.py parses (Helm prints large
    numbers in scientific notation unless the chart takes care)."""
    for component in ("api", "worker"):
        environment = release.environment(component)
        with monkeypatch.context() as patch:
            try:
                settings = _settings_from(environment, patch)
            except ValidationError as err:
                pytest.fail(f"{component}: {err}")
        assert settings.max_dataset_bytes == int(str(environment["MAX_DATASET_BYTES"]))


def test_chart_defaults_are_the_settings_defaults(
    default_release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_map = default_release.named("ConfigMap", f"{RELEASE}-orchestrator")["data"]
    from_chart = _settings_from(config_map, monkeypatch)
    differing = [
        key
        for key in config_map
        if getattr(from_chart, key.lower()) != Settings.model_fields[key.lower()].get_default()
        and key not in DELIBERATE_CONFIG_DEFAULTS
        and not key.startswith("TEMPORAL_")  # the chart points at a cluster, not 127.0.0.1
    ]
    assert not differing, f"values.yaml `config` drifted from settings.py: {differing}"


def _secret_fields() -> list[str]:
    return [
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    ]


def test_secret_settings_come_from_secrets_never_the_config_map(release: Release) -> None:
    assert set(_secret_fields()) >= {
        "openai_api_key",
        "payload_encryption_keys",
        "temporal_api_key",
    }
    config_map = release.named("ConfigMap", f"{RELEASE}-orchestrator")["data"]
    for component in ("api", "worker"):
        container = release.container(component)
        from_secrets = {
            v["name"] for v in container["env"] if "secretKeyRef" in v.get("valueFrom", {})
        }
        for name in map(env_name, _secret_fields()):
            assert name not in config_map
            if name in release.environment(component):
                assert name in from_secrets, (component, name)


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "WEBHOOK_SECRET", "AUTH_MODE", "DATA_DIR"])
def test_a_setting_with_its_own_value_is_refused_under_config(name: str) -> None:
    """A key pasted into `config` would sit in a ConfigMap in plain text, or fight the value the
    chart wires: the render stops and says where it belongs."""
    with pytest.raises(helm.HelmError, match=f"config.{name}: set it through its own value"):
        render({"config": {name: "sk-pasted-here"}})


def test_llm_and_webhook_keys_reach_only_the_worker(release: Release) -> None:
    api_env = release.environment("api")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "WEBHOOK_SECRET"):
        assert name in release.environment("worker")
        assert name not in api_env  # the API never calls an LLM or sends a webhook


# --- Files mounted from Secrets ------------------------------------------------------------


def _mounted_secret(release: Release, component: str, path: str) -> tuple[str, str]:
    """(Secret name, key) of the file at `path` in the container; fails when nothing mounts it."""
    container = release.container(component)
    volumes = {
        v["name"]: v for v in release.deployment(component)["spec"]["template"]["spec"]["volumes"]
    }
    folder, filename = posixpath.split(path)
    for mount in container["volumeMounts"]:
        if mount["mountPath"] == folder:
            secret = volumes[mount["name"]]["secret"]
            keys = [item["path"] for item in secret.get("items", [])] or [filename]
            assert filename in keys
            assert mount.get("readOnly") is True
            return secret["secretName"], filename
    raise AssertionError(f"nothing is mounted at {folder} in the {component} container")


def test_api_keys_file_is_mounted_from_the_chart_secret_and_loads(
    default_release: Release, tmp_path: Path
) -> None:
    path = str(default_release.environment("api")["API_KEYS_FILE"])
    secret, key = _mounted_secret(default_release, "api", path)
    entry = {"name": "alice", "roles": ["approver"], "key_sha256": "ab" * 32}
    release = render({"auth": {"apiKeys": {"entries": [entry]}}})
    copy_of_file = tmp_path / key
    copy_of_file.write_bytes(release.secret_file(secret, key))
    (loaded,) = load_key_entries(copy_of_file)
    assert (loaded.name, loaded.key_sha256) == ("alice", "ab" * 32)


def test_api_keys_file_is_mounted_from_an_existing_secret() -> None:
    release = render(production(), {"auth": {"mode": "api_key"}})
    path = str(release.environment("api")["API_KEYS_FILE"])
    assert _mounted_secret(release, "api", path) == ("orchestrator-api-keys", "api-keys.yaml")
    # The operator's Secret is used as it is; the chart makes none of its own.
    assert not [s for s in release.of_kind("Secret") if "api-keys" in s["metadata"]["name"]]


def test_oidc_mode_mounts_no_key_file(production_release: Release) -> None:
    env = production_release.environment("api")
    assert env["AUTH_MODE"] == "oidc" and "API_KEYS_FILE" not in env
    assert env["OIDC_ISSUER"] == "https://login.example.com/realms/data"
    assert env["OIDC_JWKS_URL"].startswith("https://")  # type: ignore[union-attr]


def test_temporal_mtls_files_come_from_the_named_secret(production_release: Release) -> None:
    for component in ("api", "worker"):
        env = production_release.environment(component)
        for setting, key in (
            ("TEMPORAL_TLS_CERT_PATH", "tls.crt"),
            ("TEMPORAL_TLS_KEY_PATH", "tls.key"),
            ("TEMPORAL_TLS_CA_PATH", "ca.crt"),
        ):
            path = str(env[setting])
            assert _mounted_secret(production_release, component, path) == (
                "orchestrator-temporal-client",
                key,
            )
        assert env["TEMPORAL_TLS_SERVER_NAME"] == "temporal-frontend.temporal.svc.cluster.local"


def test_temporal_api_key_comes_from_its_secret() -> None:
    release = SCENARIOS["cloud-api-keys"]()
    for component in ("api", "worker"):
        (variable,) = [
            v for v in release.container(component)["env"] if v["name"] == "TEMPORAL_API_KEY"
        ]
        assert variable["valueFrom"]["secretKeyRef"] == {
            "name": "temporal-cloud",
            "key": "TEMPORAL_API_KEY",
        }


# --- The worker's sandbox --------------------------------------------------------------------


def test_worker_pod_lets_bubblewrap_make_its_namespaces(default_release: Release) -> None:
    pod = default_release.deployment("worker")["spec"]["template"]["spec"]
    context = default_release.container("worker")["securityContext"]
    assert default_release.environment("worker")["SANDBOX"] == "bubblewrap"
    assert pod["hostUsers"] is False  # the pod's root is nobody on the node
    assert context["procMount"] == "Unmasked"  # a fresh /proc in bwrap's pid namespace
    assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert context["appArmorProfile"] == {"type": "Unconfined"}
    assert "runtimeClassName" not in pod


def test_worker_can_run_under_gvisor() -> None:
    release = render(
        {
            "worker": {
                "runtimeClassName": "gvisor",
                "sandbox": {
                    "hostUsers": None,
                    "procMount": None,
                    "seccompProfile": {"type": "RuntimeDefault"},
                    "appArmorProfile": None,
                },
            }
        }
    )
    pod = release.deployment("worker")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "gvisor"
    assert "hostUsers" not in pod
    assert "procMount" not in release.container("worker")["securityContext"]
    validate_manifest(release.deployment("worker"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": {"mode": "none"}}, "auth.mode none"),
        ({"auth": {"mode": "oidc"}}, "auth.oidc.issuer"),
        ({"auth": {"mode": "sso"}}, 'auth.mode "sso"'),
        ({"storage": {"url": "gs://bucket/runs"}}, "storage.url"),
        ({"worker": {"metricsPort": 0}}, "worker.metricsPort"),
        ({"worker": {"sandbox": {"hostUsers": True}}}, "hostUsers=false"),
        ({"metrics": {"requireToken": True}}, "METRICS_TOKEN"),
        ({"temporal": {"tls": {"enabled": True}}}, "temporal.tls.existingSecret"),
    ],
)
def test_values_that_cannot_work_stop_the_render_with_what_to_change(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message.replace(".", r"\.")):
        render(values)


def test_object_storage_replaces_the_shared_volume() -> None:
    release = render(
        {
            "storage": {
                "url": "s3://runs-bucket/orchestrator",
                "endpointUrl": "http://minio.storage.svc:9000",
                "region": "eu-west-1",
            },
            "secrets": {
                "values": {"STORAGE_ACCESS_KEY_ID": "AKIA", "STORAGE_SECRET_ACCESS_KEY": "s"}
            },
        }
    )
    assert not release.of_kind("PersistentVolumeClaim")  # no disk shared by the pods
    for component in ("api", "worker"):
        env = release.environment(component)
        assert env["STORAGE_URL"] == "s3://runs-bucket/orchestrator"
        assert env["STORAGE_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
        assert env["STORAGE_REGION"] == "eu-west-1"
        assert env["STORAGE_PRESIGN_DOWNLOADS"] == "false"
        # The credentials come from the Secret, never as literal values.
        assert env["STORAGE_ACCESS_KEY_ID"] is None
        assert env["STORAGE_SECRET_ACCESS_KEY"] is None
        volumes = release.deployment(component)["spec"]["template"]["spec"]["volumes"]
        (data,) = [v for v in volumes if v["name"] == "data"]
        assert "persistentVolumeClaim" not in data
        assert data["emptyDir"]["sizeLimit"] == "20Gi"
        validate_manifest(release.deployment(component))


def test_auth_none_renders_when_a_proxy_authenticates() -> None:
    release = render({"auth": {"mode": "none", "allowInsecureBind": True}})
    assert release.environment("api")["ALLOW_INSECURE_BIND"] == "true"


# --- Metrics and network ---------------------------------------------------------------------


def test_service_monitor_scrapes_both_with_the_metrics_token(production_release: Release) -> None:
    (monitor,) = production_release.of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in production_release.of_kind("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == ports == {"http", "metrics"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["authorization"]["credentials"] == {
            "name": "orchestrator-secrets",
            "key": "METRICS_TOKEN",
        }
    for component in ("api", "worker"):
        assert "METRICS_TOKEN" in production_release.environment(component)


def test_egress_policy_keeps_pods_out_of_private_ranges(production_release: Release) -> None:
    for component in ("api", "worker"):
        policy = production_release.named("NetworkPolicy", f"{RELEASE}-orchestrator-{component}")
        assert "Egress" in policy["spec"]["policyTypes"]
        blocks = [
            peer["ipBlock"]
            for rule in policy["spec"]["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert blocks == [
            {
                "cidr": "0.0.0.0/0",
                "except": [
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "169.254.0.0/16",  # cloud metadata
                    "100.64.0.0/10",
                ],
            }
        ]
        temporal_rules = [
            rule
            for rule in policy["spec"]["egress"]
            if rule.get("ports") == [{"port": 7233, "protocol": "TCP"}]
        ]
        assert temporal_rules and temporal_rules[0]["to"]


def test_worker_accepts_connections_only_on_its_metrics_port(release: Release) -> None:
    policy = release.named("NetworkPolicy", f"{RELEASE}-orchestrator-worker")
    ports = [port for rule in policy["spec"]["ingress"] for port in rule["ports"]]
    assert ports == [{"port": "metrics", "protocol": "TCP"}]


def test_values_files_parse_as_helm_reads_them() -> None:
    for path in (CHART / "values.yaml", PRODUCTION_VALUES):
        assert isinstance(helm.values_from_yaml(path.read_text()), dict)
