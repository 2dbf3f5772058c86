//! URL paths: the paths of the objects the reconciler uses, and what a path names.

/// `/apis/apps/v1/namespaces/<ns>/deployments/<name>`.
pub fn deployment_path(namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
}

/// `/api/v1/namespaces/<ns>/configmaps/<name>`.
pub fn configmap_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/{name}")
}

/// The inventory ConfigMap of a namespace.
pub fn inventory_path(namespace: &str) -> String {
    configmap_path(namespace, "airlock-inventory")
}

/// What a URL path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathParts {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) namespace: Option<String>,
    pub(super) plural: String,
    pub(super) name: Option<String>,
}

pub(super) fn parse_path(path: &str) -> Option<PathParts> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => ((*plural).to_owned(), None),
        [plural, name] => ((*plural).to_owned(), Some((*name).to_owned())),
        _ => return None,
    };
    Some(PathParts {
        group,
        version,
        namespace,
        plural,
        name,
    })
}
