//! The deployment files in `deploy/`, checked without a cluster: every kustomize overlay is
//! rendered with `kubectl kustomize` and its objects are checked against what the `spanflow`
//! binary needs (ports, probes, settings, the agent's watch permissions, Services that reach
//! the right pods), and the example collector configuration against DeepFlow's guide in
//! `../shared/seed`. Uses nothing of spanflow's crates, so it builds whatever they are doing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml::Value;

/// The overlays, each with the namespace everything in it must land in.
const OVERLAYS: &[(&str, &str)] = &[
    ("embedded", "spanflow"),
    ("clickhouse", "spanflow"),
    ("deepflow-names", "deepflow"),
];

/// What the agent watches, as (API group, resource); it may get, list and watch these only.
const AGENT_WATCHES: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "nodes"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
];

const AGENT_PORTS: &[i64] = &[38086, 4317, 4318];
const SERVER_PORTS: &[i64] = &[30033, 20416];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------------------------
// Rendered objects and the fields of them the checks read

/// One object of a rendered overlay (or of a file), named in every failure by where it came
/// from, its kind, namespace and name.
struct Doc {
    source: String,
    value: Value,
}

impl fmt::Display for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.get("kind").is_none() {
            return write!(f, "{}", self.source);
        }
        write!(f, "{}: {}", self.source, self.what())
    }
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn items(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A map of strings (labels, selectors) as a sorted map.
fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|mapping| {
            mapping
                .iter()
                .filter_map(|(key, value)| Some((text(key)?, text(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

impl Doc {
    fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    fn name(&self) -> &str {
        at(&self.value, &["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    fn namespace(&self) -> Option<&str> {
        at(&self.value, &["metadata", "namespace"]).and_then(Value::as_str)
    }

    /// Kind, namespace and name, as `kubectl` would name the object.
    fn what(&self) -> String {
        match self.namespace() {
            Some(namespace) => format!("{} {namespace}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    fn at(&self, path: &[&str]) -> Option<&Value> {
        at(&self.value, path)
    }

    /// The field at `path`, or a failure that names this object and the field.
    fn field(&self, path: &[&str]) -> &Value {
        self.at(path)
            .unwrap_or_else(|| panic!("{self}: has no {}", path.join(".")))
    }

    fn str_field(&self, path: &[&str]) -> String {
        text(self.field(path))
            .unwrap_or_else(|| panic!("{self}: {} is not a scalar", path.join(".")))
    }

    fn is_workload(&self) -> bool {
        matches!(self.kind(), "DaemonSet" | "Deployment" | "StatefulSet")
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(self.at(&["spec", "template", "metadata", "labels"]))
    }

    fn containers(&self) -> Vec<Container<'_>> {
        items(self.at(&["spec", "template", "spec", "containers"]))
            .iter()
            .map(|value| Container { doc: self, value })
            .collect()
    }

    fn container(&self, name: &str) -> Container<'_> {
        self.containers()
            .into_iter()
            .find(|container| container.name() == name)
            .unwrap_or_else(|| panic!("{self}: has no container {name:?}"))
    }

    fn volumes(&self) -> &[Value] {
        items(self.at(&["spec", "template", "spec", "volumes"]))
    }
}

/// A container of a workload.
struct Container<'a> {
    doc: &'a Doc,
    value: &'a Value,
}

impl fmt::Display for Container<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: container {}", self.doc, self.name())
    }
}

impl Container<'_> {
    fn name(&self) -> &str {
        self.value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// Declared ports as (name, number).
    fn ports(&self) -> Vec<(Option<String>, i64)> {
        items(self.value.get("ports"))
            .iter()
            .map(|port| {
                let number = port
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| panic!("{self}: a port without a numeric containerPort"));
                (port.get("name").and_then(text), number)
            })
            .collect()
    }

    /// The number of a port given as a number or by name, if this container declares it.
    fn resolve_port(&self, port: &Value) -> Option<i64> {
        let ports = self.ports();
        match port {
            Value::Number(number) => {
                let number = number.as_i64()?;
                ports
                    .iter()
                    .any(|(_, declared)| *declared == number)
                    .then_some(number)
            }
            Value::String(name) => ports
                .iter()
                .find(|(declared, _)| declared.as_deref() == Some(name))
                .map(|(_, number)| *number),
            _ => None,
        }
    }

    fn env(&self, name: &str) -> Option<&Value> {
        items(self.value.get("env"))
            .iter()
            .find(|variable| variable.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The literal value of an environment variable, or a failure that names it.
    fn env_value(&self, name: &str) -> String {
        let variable = self
            .env(name)
            .unwrap_or_else(|| panic!("{self}: has no environment variable {name}"));
        variable
            .get("value")
            .and_then(text)
            .unwrap_or_else(|| panic!("{self}: {name} has no literal value"))
    }

    fn args(&self) -> Vec<String> {
        items(self.value.get("args"))
            .iter()
            .filter_map(text)
            .collect()
    }

    /// The volume mounted at the longest mount path that contains `path`.
    fn volume_holding(&self, path: &str) -> Option<String> {
        items(self.value.get("volumeMounts"))
            .iter()
            .filter_map(|mount| {
                let mount_path = mount.get("mountPath").and_then(Value::as_str)?;
                let inside = path == mount_path
                    || path.starts_with(&format!("{}/", mount_path.trim_end_matches('/')));
                inside.then(|| (mount_path.len(), mount.get("name").and_then(text)))
            })
            .max_by_key(|(length, _)| *length)
            .and_then(|(_, name)| name)
    }
}

/// The objects of one rendered overlay.
struct Render {
    overlay: String,
    namespace: String,
    docs: Vec<Doc>,
}

impl Render {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Doc> + 'a {
        self.docs.iter().filter(move |doc| doc.kind() == kind)
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Doc> {
        self.docs
            .iter()
            .find(|doc| doc.kind() == kind && doc.name() == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Doc {
        self.find(kind, name).unwrap_or_else(|| {
            panic!("{}: renders no {kind} {name}", self.overlay);
        })
    }

    fn workloads(&self) -> impl Iterator<Item = &Doc> {
        self.docs.iter().filter(|doc| doc.is_workload())
    }

    /// The workloads in `namespace` whose pods carry every label of `selector`.
    fn selected(&self, namespace: Option<&str>, selector: &BTreeMap<String, String>) -> Vec<&Doc> {
        self.workloads()
            .filter(|workload| workload.namespace() == namespace)
            .filter(|workload| {
                let labels = workload.pod_labels();
                selector
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
            .collect()
    }

    fn agent(&self) -> &Doc {
        self.get("DaemonSet", "spanflow-agent")
    }

    fn server(&self) -> &Doc {
        self.get("Deployment", "spanflow-server")
    }

    /// Where a request to `url` from a pod in `from_namespace` lands: the Service, the port of
    /// the Service, and each (workload, container, container port) behind it.
    fn follow_url(&self, url: &str, from_namespace: &str) -> Landing<'_> {
        let (host, port, path) = split_http_url(url);
        let mut labels = host.split('.');
        let name = labels.next().unwrap_or_default();
        let namespace = labels.next().unwrap_or(from_namespace);
        let rest: Vec<&str> = labels.collect();
        assert!(
            rest.is_empty() || rest == ["svc"] || rest == ["svc", "cluster", "local"],
            "{}: {url:?} does not name a Service",
            self.overlay
        );
        let service = self
            .of_kind("Service")
            .find(|service| service.name() == name && service.namespace() == Some(namespace))
            .unwrap_or_else(|| {
                panic!(
                    "{}: {url:?} names Service {namespace}/{name}, which is not rendered",
                    self.overlay
                )
            });
        let service_port = items(service.at(&["spec", "ports"]))
            .iter()
            .find(|entry| entry.get("port").and_then(Value::as_i64) == Some(port))
            .unwrap_or_else(|| panic!("{service}: has no port {port}, which {url:?} uses"));
        let targets = self.service_targets(service, service_port);
        Landing {
            service,
            path,
            targets,
        }
    }

    /// The container ports a port of a Service reaches, for every workload it selects.
    fn service_targets<'a>(&'a self, service: &'a Doc, service_port: &Value) -> Vec<Target<'a>> {
        let selector = string_map(service.at(&["spec", "selector"]));
        let target_port = service_port
            .get("targetPort")
            .or_else(|| service_port.get("port"))
            .unwrap_or_else(|| panic!("{service}: a port without port or targetPort"));
        let mut targets = Vec::new();
        for workload in self.selected(service.namespace(), &selector) {
            let found: Vec<Target> = workload
                .containers()
                .into_iter()
                .filter_map(|container| {
                    let number = container.resolve_port(target_port)?;
                    Some(Target {
                        workload,
                        container: container.name().to_string(),
                        port: number,
                    })
                })
                .collect();
            assert!(
                !found.is_empty(),
                "{service}: targetPort {} is not a port that {} declares",
                text(target_port).unwrap_or_default(),
                workload.what()
            );
            targets.extend(found);
        }
        targets
    }
}

/// Where a URL lands.
struct Landing<'a> {
    service: &'a Doc,
    path: String,
    targets: Vec<Target<'a>>,
}

struct Target<'a> {
    workload: &'a Doc,
    container: String,
    port: i64,
}

impl Landing<'_> {
    /// Asserts that the URL reaches exactly `port` of container `container` of `workload`.
    fn assert_reaches(&self, url: &str, workload: &str, container: &str, port: i64) {
        assert!(
            !self.targets.is_empty(),
            "{}: {url:?} selects no pods",
            self.service
        );
        for target in &self.targets {
            assert!(
                target.workload.name() == workload
                    && target.container == container
                    && target.port == port,
                "{}: {url:?} reaches {}: container {} port {}, not {workload}: container \
                 {container} port {port}",
                self.service,
                target.workload.what(),
                target.container,
                target.port
            );
        }
    }
}

/// `http://host[:port][/path]` as (host, port, path).
fn split_http_url(url: &str) -> (String, i64, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url:?} is not an http:// URL"));
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], rest[slash..].to_string()),
        None => (rest, String::new()),
    };
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .unwrap_or_else(|_| panic!("{url:?}: port {port:?} is not a number")),
        ),
        None => (authority, 80),
    };
    (host.to_string(), port, path)
}

fn parse_documents(source: &str, text: &str) -> Vec<Doc> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, document)| {
            let value = Value::deserialize(document).unwrap_or_else(|error| {
                panic!("{source}: document {} is not YAML: {error}", index + 1)
            });
            Doc {
                source: source.to_string(),
                value,
            }
        })
        .filter(|doc| !doc.value.is_null())
        .collect()
}

fn render(overlay: &str, namespace: &str) -> Render {
    let directory = repo_root().join("deploy/kubernetes/overlays").join(overlay);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&directory)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "running `kubectl kustomize {}`: {error}; these tests need kubectl (it bundles \
                 kustomize) on PATH",
                directory.display()
            )
        });
    assert!(
        output.status.success(),
        "`kubectl kustomize {}` failed: {}",
        directory.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8(output.stdout).expect("kubectl prints UTF-8");
    let source = format!("overlays/{overlay}");
    Render {
        overlay: source.clone(),
        namespace: namespace.to_string(),
        docs: parse_documents(&source, &yaml),
    }
}

/// Every overlay, rendered once for all the tests.
fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        OVERLAYS
            .iter()
            .map(|(overlay, namespace)| render(overlay, namespace))
            .collect()
    })
}

fn rendered(overlay: &str) -> &'static Render {
    renders()
        .iter()
        .find(|render| render.overlay == format!("overlays/{overlay}"))
        .unwrap_or_else(|| panic!("no overlay {overlay}"))
}

/// Every file under `directory`, sorted.
fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn every_yaml_file_under_deploy_parses() {
    let yaml_files: Vec<PathBuf> = files_under(&repo_root().join("deploy"))
        .into_iter()
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
        })
        .collect();
    assert!(
        yaml_files.len() >= 10,
        "deploy/ holds only {} YAML files",
        yaml_files.len()
    );
    for path in yaml_files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        let docs = parse_documents(&relative(&path), &text);
        assert!(
            !docs.is_empty(),
            "{}: holds no YAML document",
            relative(&path)
        );
    }
}

#[test]
fn every_overlay_renders_objects_that_refer_to_each_other() {
    for render in renders() {
        let kinds: BTreeSet<&str> = render.docs.iter().map(Doc::kind).collect();
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "Deployment",
            "Service",
            "ConfigMap",
        ] {
            assert!(
                kinds.contains(kind),
                "{}: renders no {kind} (it renders {kinds:?})",
                render.overlay
            );
        }
        render.get("Namespace", &render.namespace);
        for doc in &render.docs {
            let cluster_wide = matches!(
                doc.kind(),
                "Namespace" | "ClusterRole" | "ClusterRoleBinding"
            );
            let expected = (!cluster_wide).then_some(render.namespace.as_str());
            assert_eq!(
                doc.namespace(),
                expected,
                "{doc}: is in the wrong namespace"
            );
        }
        for workload in render.workloads() {
            check_workload(render, workload);
        }
        for service in render.of_kind("Service") {
            check_service(render, service);
        }
    }
}

/// A workload's selector matches its pods, its probes hit declared ports, and what it refers
/// to (ConfigMaps, Secrets, claims, a service account) is rendered beside it.
fn check_workload(render: &Render, workload: &Doc) {
    let selector = string_map(workload.at(&["spec", "selector", "matchLabels"]));
    assert!(
        !selector.is_empty(),
        "{workload}: spec.selector.matchLabels is empty"
    );
    let labels = workload.pod_labels();
    for (key, value) in &selector {
        assert_eq!(
            labels.get(key),
            Some(value),
            "{workload}: spec.selector.matchLabels.{key} does not match the pod template's label"
        );
    }
    let containers = workload.containers();
    assert!(!containers.is_empty(), "{workload}: has no containers");
    for container in &containers {
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            if let Some(port) = at(container.value, &[probe, "httpGet", "port"]) {
                assert!(
                    container.resolve_port(port).is_some(),
                    "{container}: {probe}.httpGet.port {} is not a declared port",
                    text(port).unwrap_or_default()
                );
            }
        }
        for variable in items(container.value.get("env")) {
            if let Some(reference) = at(variable, &["valueFrom", "secretKeyRef", "name"]) {
                let name = text(reference).unwrap_or_default();
                assert!(
                    render.find("Secret", &name).is_some(),
                    "{container}: env refers to Secret {name}, which is not rendered"
                );
            }
        }
    }
    for volume in workload.volumes() {
        if let Some(name) = at(volume, &["configMap", "name"]).and_then(text) {
            assert!(
                render.find("ConfigMap", &name).is_some(),
                "{workload}: volume refers to ConfigMap {name}, which is not rendered"
            );
        }
        if let Some(name) = at(volume, &["persistentVolumeClaim", "claimName"]).and_then(text) {
            assert!(
                render.find("PersistentVolumeClaim", &name).is_some(),
                "{workload}: volume refers to PersistentVolumeClaim {name}, which is not rendered"
            );
        }
    }
    if let Some(account) = workload
        .at(&["spec", "template", "spec", "serviceAccountName"])
        .and_then(text)
    {
        assert!(
            render.find("ServiceAccount", &account).is_some(),
            "{workload}: runs as ServiceAccount {account}, which is not rendered"
        );
    }
}

/// A Service selects some workload's pods, and each of its ports reaches a port they declare.
fn check_service(render: &Render, service: &Doc) {
    let selector = string_map(service.at(&["spec", "selector"]));
    assert!(!selector.is_empty(), "{service}: spec.selector is empty");
    let selected = render.selected(service.namespace(), &selector);
    assert!(
        !selected.is_empty(),
        "{service}: spec.selector {selector:?} matches no workload's pod labels"
    );
    let ports = items(service.at(&["spec", "ports"]));
    assert!(!ports.is_empty(), "{service}: has no ports");
    for port in ports {
        render.service_targets(service, port);
    }
}

#[test]
fn the_agent_listens_where_senders_and_probes_look_and_knows_its_node() {
    for render in renders() {
        let agent = render.agent();
        let container = agent.container("agent");
        assert_eq!(container.args(), ["agent"], "{container}: args");
        let declared: BTreeSet<i64> = container.ports().iter().map(|(_, port)| *port).collect();
        for port in AGENT_PORTS {
            assert!(
                declared.contains(port),
                "{container}: does not declare port {port}"
            );
        }
        check_health_probes(&container, 38086);

        let node_name = container
            .env("SPANFLOW_NODE_NAME")
            .unwrap_or_else(|| panic!("{container}: has no SPANFLOW_NODE_NAME"));
        assert_eq!(
            at(node_name, &["valueFrom", "fieldRef", "fieldPath"]).and_then(Value::as_str),
            Some("spec.nodeName"),
            "{container}: SPANFLOW_NODE_NAME must come from the downward API's spec.nodeName"
        );

        // The spool is on a volume (the root file system is read-only), one that outlives the
        // pod.
        let spool_dir = container.env_value("SPANFLOW_SPOOL_DIR");
        let volume = container.volume_holding(&spool_dir).unwrap_or_else(|| {
            panic!("{container}: SPANFLOW_SPOOL_DIR {spool_dir} is on no volume")
        });
        let volume = agent
            .volumes()
            .iter()
            .find(|entry| entry.get("name").and_then(text).as_deref() == Some(volume.as_str()))
            .unwrap_or_else(|| panic!("{agent}: mounts volume {volume}, which it does not define"));
        assert!(
            volume.get("hostPath").is_some(),
            "{agent}: the spool's volume is not a hostPath, so it goes with the pod"
        );

        for url in container.env_value("SPANFLOW_SERVER_URL").split(',') {
            let namespace = agent.namespace().unwrap_or("default");
            render.follow_url(url.trim(), namespace).assert_reaches(
                url,
                "spanflow-server",
                "server",
                30033,
            );
        }
    }
}

/// The container has liveness and readiness probes, and every probe it has asks for
/// `/healthz` on `port`.
fn check_health_probes(container: &Container, port: i64) {
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(
            container.value.get(probe).is_some(),
            "{container}: has no {probe}"
        );
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let Some(http) = at(container.value, &[probe, "httpGet"]) else {
            assert!(
                container.value.get(probe).is_none(),
                "{container}: {probe} is not an httpGet probe"
            );
            continue;
        };
        assert_eq!(
            http.get("path").and_then(Value::as_str),
            Some("/healthz"),
            "{container}: {probe}.httpGet.path"
        );
        let probed = http
            .get("port")
            .and_then(|port| container.resolve_port(port));
        assert_eq!(probed, Some(port), "{container}: {probe}.httpGet.port");
    }
}

#[test]
fn the_agent_may_read_what_it_watches_and_nothing_else() {
    for render in renders() {
        let agent = render.agent();
        let account = agent.str_field(&["spec", "template", "spec", "serviceAccountName"]);
        let namespace = agent.namespace().unwrap_or("default");
        let bindings: Vec<&Doc> = render
            .of_kind("ClusterRoleBinding")
            .filter(|binding| {
                items(binding.at(&["subjects"])).iter().any(|subject| {
                    subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                        && subject.get("name").and_then(Value::as_str) == Some(account.as_str())
                        && subject.get("namespace").and_then(Value::as_str) == Some(namespace)
                })
            })
            .collect();
        assert_eq!(
            bindings.len(),
            1,
            "{}: expected one ClusterRoleBinding for ServiceAccount {namespace}/{account}",
            render.overlay
        );
        let binding = bindings[0];
        assert_eq!(
            binding.str_field(&["roleRef", "kind"]),
            "ClusterRole",
            "{binding}: roleRef.kind"
        );
        let role = render.get("ClusterRole", &binding.str_field(&["roleRef", "name"]));

        let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for rule in items(role.at(&["rules"])) {
            for field in ["resourceNames", "nonResourceURLs"] {
                assert!(rule.get(field).is_none(), "{role}: a rule has {field}");
            }
            let texts = |field: &str| -> Vec<String> {
                items(rule.get(field)).iter().filter_map(text).collect()
            };
            for group in texts("apiGroups") {
                for resource in texts("resources") {
                    granted
                        .entry((group.clone(), resource))
                        .or_default()
                        .extend(texts("verbs"));
                }
            }
        }
        let expected: BTreeSet<(String, String)> = AGENT_WATCHES
            .iter()
            .map(|(group, resource)| (group.to_string(), resource.to_string()))
            .collect();
        let resources: BTreeSet<(String, String)> = granted.keys().cloned().collect();
        assert_eq!(
            resources, expected,
            "{role}: must grant exactly the (apiGroup, resource) pairs the agent watches"
        );
        let read_only: BTreeSet<String> = ["get", "list", "watch"].map(String::from).into();
        for ((group, resource), verbs) in &granted {
            assert_eq!(
                verbs, &read_only,
                "{role}: verbs on {resource} (apiGroup {group:?}) must be get, list and watch"
            );
        }
    }
}

#[test]
fn agent_services_keep_spans_on_the_senders_node() {
    for render in renders() {
        let agent = render.agent();
        let agent_labels = agent.pod_labels();
        let services: Vec<&Doc> = render
            .of_kind("Service")
            .filter(|service| {
                let selector = string_map(service.at(&["spec", "selector"]));
                selector
                    .iter()
                    .all(|(key, value)| agent_labels.get(key) == Some(value))
            })
            .collect();
        assert!(
            services
                .iter()
                .any(|service| service.name() == "spanflow-agent"),
            "{}: no Service spanflow-agent selects the agent's pods",
            render.overlay
        );
        for service in services {
            assert_eq!(
                service
                    .at(&["spec", "internalTrafficPolicy"])
                    .and_then(Value::as_str),
                Some("Local"),
                "{service}: spec.internalTrafficPolicy must be Local, or spans land on another \
                 node's agent with the wrong sender IP"
            );
            let targets: BTreeSet<i64> = items(service.at(&["spec", "ports"]))
                .iter()
                .flat_map(|port| render.service_targets(service, port))
                .map(|target| target.port)
                .collect();
            for port in AGENT_PORTS {
                assert!(
                    targets.contains(port),
                    "{service}: no port reaches the agent's {port}"
                );
            }
        }
        let namespace = agent.namespace().unwrap_or("default");
        let url = format!("http://spanflow-agent.{namespace}/api/v1/otel/trace");
        render
            .follow_url(&url, namespace)
            .assert_reaches(&url, "spanflow-agent", "agent", 38086);
    }
}

#[test]
fn the_server_fits_its_store() {
    for render in renders() {
        let server = render.server();
        let container = server.container("server");
        assert_eq!(container.args(), ["server"], "{container}: args");
        let declared: BTreeSet<i64> = container.ports().iter().map(|(_, port)| *port).collect();
        for port in SERVER_PORTS {
            assert!(
                declared.contains(port),
                "{container}: does not declare port {port}"
            );
        }
        check_health_probes(&container, 20416);
        let service = render.get("Service", "spanflow-server");
        let reached: BTreeSet<i64> = items(service.at(&["spec", "ports"]))
            .iter()
            .flat_map(|port| render.service_targets(service, port))
            .map(|target| target.port)
            .collect();
        let expected: BTreeSet<i64> = SERVER_PORTS.iter().copied().collect();
        assert_eq!(
            reached, expected,
            "{service}: the server's ports it reaches"
        );

        let inventory = container.env_value("SPANFLOW_HOST_INVENTORY_FILE");
        let volume = container.volume_holding(&inventory).unwrap_or_else(|| {
            panic!("{container}: SPANFLOW_HOST_INVENTORY_FILE {inventory} is on no volume")
        });
        let config_map = server
            .volumes()
            .iter()
            .find(|entry| entry.get("name").and_then(text).as_deref() == Some(volume.as_str()))
            .and_then(|entry| at(entry, &["configMap", "name"]))
            .and_then(text)
            .unwrap_or_else(|| panic!("{server}: volume {volume} is not a ConfigMap"));
        let config_map = render.get("ConfigMap", &config_map);
        let file_name = inventory.rsplit('/').next().unwrap_or_default();
        let hosts = config_map.str_field(&["data", file_name]);
        let hosts: Value = serde_yaml::from_str(&hosts)
            .unwrap_or_else(|error| panic!("{config_map}: data.{file_name}: {error}"));
        assert!(
            hosts.get("hosts").is_some_and(Value::is_sequence),
            "{config_map}: data.{file_name} has no list `hosts`"
        );

        let store = container
            .env("SPANFLOW_STORE")
            .and_then(|variable| variable.get("value"))
            .and_then(text)
            .unwrap_or_else(|| "embedded".to_string());
        let replicas = server.at(&["spec", "replicas"]).and_then(Value::as_i64);
        let strategy = server
            .at(&["spec", "strategy", "type"])
            .and_then(Value::as_str);
        let data_dir = container.env_value("SPANFLOW_DATA_DIR");
        let data_volume = container
            .volume_holding(&data_dir)
            .unwrap_or_else(|| panic!("{container}: SPANFLOW_DATA_DIR {data_dir} is on no volume"));
        let data_volume = server
            .volumes()
            .iter()
            .find(|entry| entry.get("name").and_then(text).as_deref() == Some(data_volume.as_str()))
            .unwrap_or_else(|| panic!("{server}: has no volume {data_volume}"));
        match store.as_str() {
            "embedded" => {
                assert_eq!(
                    replicas,
                    Some(1),
                    "{server}: spec.replicas (embedded store)"
                );
                assert_eq!(
                    strategy,
                    Some("Recreate"),
                    "{server}: spec.strategy.type (the embedded store has one writer)"
                );
                assert!(
                    data_volume.get("persistentVolumeClaim").is_some(),
                    "{server}: SPANFLOW_DATA_DIR is not on a PersistentVolumeClaim"
                );
            }
            "clickhouse" => {
                assert_eq!(
                    replicas,
                    Some(2),
                    "{server}: spec.replicas (ClickHouse store)"
                );
                assert!(
                    server
                        .volumes()
                        .iter()
                        .all(|volume| volume.get("persistentVolumeClaim").is_none()),
                    "{server}: mounts a PersistentVolumeClaim with the ClickHouse store"
                );
                assert!(
                    render
                        .find("PersistentVolumeClaim", "spanflow-server-data")
                        .is_none(),
                    "{}: still renders the embedded store's PersistentVolumeClaim",
                    render.overlay
                );
                let namespace = server.namespace().unwrap_or("default");
                for url in container.env_value("SPANFLOW_CLICKHOUSE_URL").split(',') {
                    render.follow_url(url.trim(), namespace).assert_reaches(
                        url,
                        "clickhouse",
                        "clickhouse",
                        8123,
                    );
                }
            }
            other => panic!("{container}: SPANFLOW_STORE {other:?}"),
        }
    }
    let clickhouse = rendered("clickhouse").server().container("server");
    assert_eq!(
        clickhouse.env_value("SPANFLOW_STORE"),
        "clickhouse",
        "{clickhouse}"
    );
}

#[test]
fn deepflow_names_serve_the_guides_endpoint() {
    let render = rendered("deepflow-names");
    let service = render.get("Service", "deepflow-agent");
    assert_eq!(
        service.namespace(),
        Some("deepflow"),
        "{service}: namespace"
    );
    let url = "http://deepflow-agent.deepflow/api/v1/otel/trace";
    render
        .follow_url(url, "open-telemetry")
        .assert_reaches(url, "spanflow-agent", "agent", 38086);
}

/// Every `SPANFLOW_<KEY>` the deployment names, in its files and in the rendered objects, is a
/// setting of crates/cli/src/settings.rs.
#[test]
fn every_spanflow_variable_is_a_setting() {
    let settings_path = repo_root().join("crates/cli/src/settings.rs");
    let settings = std::fs::read_to_string(&settings_path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", settings_path.display()));
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for path in files_under(&repo_root().join("deploy")) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for name in spanflow_variables(&text) {
            named.entry(name).or_insert_with(|| relative(&path));
        }
    }
    for render in renders() {
        for workload in render.workloads() {
            for container in workload.containers() {
                for variable in items(container.value.get("env")) {
                    let name = variable.get("name").and_then(text).unwrap_or_default();
                    if name.starts_with("SPANFLOW_") {
                        named.entry(name).or_insert_with(|| container.to_string());
                    }
                }
            }
        }
    }
    assert!(named.contains_key("SPANFLOW_SERVER_URL"), "found {named:?}");
    let unknown: Vec<String> = named
        .iter()
        .filter(|(name, _)| !settings.contains(&format!("\"{name}\"")))
        .map(|(name, place)| format!("{name} (in {place})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "not settings in crates/cli/src/settings.rs: {}",
        unknown.join(", ")
    );
}

fn spanflow_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("SPANFLOW_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        if name.len() > "SPANFLOW_".len() {
            names.push(name.to_string());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

// ---------------------------------------------------------------------------------------------
// The example collector configuration against DeepFlow's guide

/// The otel-agent configuration of DeepFlow's guide: its YAML blocks are fragments of one
/// collector configuration (the `otlphttp` exporter, the processors, the pipeline), merged
/// here into one.
fn seed_collector_config() -> Value {
    let seed = repo_root().join("../shared/seed/importing-opentelemetry-data.md");
    let markdown = std::fs::read_to_string(&seed).unwrap_or_else(|error| {
        panic!(
            "reading {}: {error}; the seed documents are in shared/, beside the repository",
            seed.display()
        )
    });
    let mut config = serde_yaml::Mapping::new();
    for (index, block) in markdown.split("```yaml").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap_or_default();
        let fragment: Value = serde_yaml::from_str(yaml).unwrap_or_else(|error| {
            panic!(
                "{}: YAML block {} does not parse: {error}",
                seed.display(),
                index + 1
            )
        });
        let Value::Mapping(fragment) = fragment else {
            panic!(
                "{}: YAML block {} is not a mapping",
                seed.display(),
                index + 1
            );
        };
        for (key, value) in fragment {
            // The exporter is given on its own, without the `exporters:` around it.
            let (key, value) = if key.as_str() == Some("otlphttp") {
                let mut exporters = serde_yaml::Mapping::new();
                exporters.insert(key, value);
                (Value::from("exporters"), Value::Mapping(exporters))
            } else {
                (key, value)
            };
            assert!(
                !config.contains_key(&key),
                "{}: two YAML blocks give {}",
                seed.display(),
                text(&key).unwrap_or_default()
            );
            config.insert(key, value);
        }
    }
    let config = Value::Mapping(config);
    for section in ["exporters", "processors", "service"] {
        assert!(
            config.get(section).is_some(),
            "{}: found no `{section}` in its YAML blocks",
            seed.display()
        );
    }
    config
}

fn without(value: &Value, key: &str) -> Value {
    let mut value = value.clone();
    if let Value::Mapping(mapping) = &mut value {
        mapping.remove(key);
    }
    value
}

fn keys(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_mapping)
        .map(|mapping| mapping.keys().filter_map(text).collect())
        .unwrap_or_default()
}

#[test]
fn the_example_collector_config_is_the_guides_but_for_the_endpoint() {
    let seed = seed_collector_config();
    let path = repo_root().join("deploy/otel-agent-config.yaml");
    let ours: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display())),
    )
    .unwrap_or_else(|error| panic!("{}: {error}", relative(&path)));
    let ours = Doc {
        source: relative(&path),
        value: ours,
    };
    let seed = Doc {
        source: "the guide's otel-agent configuration".to_string(),
        value: seed,
    };

    // The guide leaves out the receivers, which any collector has; the example takes OTLP
    // over gRPC and HTTP, as the guide's otel-agent does.
    let expected_keys: BTreeSet<String> = keys(Some(&seed.value))
        .into_iter()
        .chain(["receivers".to_string()])
        .collect();
    assert_eq!(
        keys(Some(&ours.value)),
        expected_keys,
        "{ours}: top-level keys"
    );
    assert_eq!(
        keys(ours.at(&["receivers"])),
        BTreeSet::from(["otlp".to_string()]),
        "{ours}: receivers"
    );
    assert_eq!(
        keys(ours.at(&["receivers", "otlp", "protocols"])),
        BTreeSet::from(["grpc".to_string(), "http".to_string()]),
        "{ours}: receivers.otlp.protocols"
    );

    assert_eq!(
        ours.field(&["processors"]),
        seed.field(&["processors"]),
        "{ours}: processors differ from the guide's"
    );
    let insert = items(ours.at(&["processors", "resource", "attributes"]));
    assert!(
        ours.at(&["processors"]).is_some_and(|processors| processors
            .as_mapping()
            .is_some_and(|mapping| mapping.contains_key("k8sattributes")))
            && insert.iter().any(|attribute| {
                attribute.get("key").and_then(Value::as_str) == Some("app.host.ip")
                    && attribute.get("from_attribute").and_then(Value::as_str) == Some("k8s.pod.ip")
                    && attribute.get("action").and_then(Value::as_str) == Some("insert")
            }),
        "{ours}: processors must have k8sattributes, and resource inserting app.host.ip from \
         k8s.pod.ip"
    );

    assert_eq!(
        keys(ours.at(&["service"])),
        keys(seed.at(&["service"])),
        "{ours}: service"
    );
    let pipelines = keys(seed.at(&["service", "pipelines"]));
    assert_eq!(
        keys(ours.at(&["service", "pipelines"])),
        pipelines,
        "{ours}: service.pipelines"
    );
    let receivers = keys(ours.at(&["receivers"]));
    for pipeline in &pipelines {
        let path = ["service", "pipelines", pipeline.as_str()];
        assert_eq!(
            without(ours.field(&path), "receivers"),
            without(seed.field(&path), "receivers"),
            "{ours}: service.pipelines.{pipeline} differs from the guide's"
        );
        let named = items(ours.at(&["service", "pipelines", pipeline, "receivers"]));
        assert!(
            !named.is_empty(),
            "{ours}: service.pipelines.{pipeline} has no receivers"
        );
        for receiver in named {
            let receiver = text(receiver).unwrap_or_default();
            assert!(
                receivers.contains(&receiver),
                "{ours}: service.pipelines.{pipeline} names receiver {receiver}, which is not \
                 configured"
            );
        }
    }

    assert_eq!(
        keys(ours.at(&["exporters"])),
        keys(seed.at(&["exporters"])),
        "{ours}: exporters"
    );
    assert_eq!(
        without(ours.field(&["exporters", "otlphttp"]), "traces_endpoint"),
        without(seed.field(&["exporters", "otlphttp"]), "traces_endpoint"),
        "{ours}: exporters.otlphttp differs from the guide's in more than traces_endpoint"
    );

    // The example's endpoint reaches the agent's DeepFlow port in the default overlay, and the
    // guide's own endpoint does with DeepFlow's names.
    let endpoint = ours.str_field(&["exporters", "otlphttp", "traces_endpoint"]);
    let landing = rendered("embedded").follow_url(&endpoint, "open-telemetry");
    landing.assert_reaches(&endpoint, "spanflow-agent", "agent", 38086);
    let seed_endpoint = seed.str_field(&["exporters", "otlphttp", "traces_endpoint"]);
    let seed_landing = rendered("deepflow-names").follow_url(&seed_endpoint, "open-telemetry");
    seed_landing.assert_reaches(&seed_endpoint, "spanflow-agent", "agent", 38086);
    assert_eq!(
        landing.path, "/api/v1/otel/trace",
        "{ours}: traces_endpoint path"
    );
    assert_eq!(
        landing.path, seed_landing.path,
        "{ours}: traces_endpoint path differs from the guide's"
    );
}
