# Admission policy of the reconciler (trusted-builder/src/reconcile/admission.rs).
#
# Evaluated for every object read from environments/<env>/<namespace>/*.yaml before anything is
# applied. Rust gathers the facts (pinning, signature by a trusted key, provenance, folder); this
# policy alone decides. `deny` is the set of reasons; `allow` holds only when there is none. The
# input is `AdmissionInput` version 1.
package airlock.admission

import rego.v1

default allow := false

allow if count(deny) == 0

deny contains "admission input version is not 1" if input.version != 1

deny contains sprintf("namespace folder '%s' is not configured for environment '%s'", [input.folder_namespace, input.environment]) if {
	input.version == 1
	not input.namespace.configured
}

# The folder is the namespace: an object cannot escape into another team's namespace by
# writing metadata.namespace.
deny contains sprintf("metadata.namespace '%s' differs from its folder '%s'", [input.object.namespace, input.folder_namespace]) if {
	input.object.namespace != null
	input.object.namespace != input.folder_namespace
}

deny contains sprintf("cluster-scoped kind %s is not allowed in namespace '%s'", [input.object.kind, input.folder_namespace]) if {
	input.object.cluster_scoped
	not input.namespace.allow_cluster_scoped
}

deny contains input.object.unsupported_by_target if input.object.unsupported_by_target != null

# Images are only checked where Airlock knows to look; an unknown kind (a custom resource that
# may start pods of its own) is refused unless the namespace lists it.
deny contains sprintf("kind %s (%s) is not known to Airlock, so its images cannot be checked; list it in allowed_kinds of namespace '%s' only if it holds none", [input.object.kind, input.object.api_version, input.folder_namespace]) if {
	input.version == 1
	not input.object.kind_known
	not input.object.kind in input.namespace.allowed_kinds
}

deny contains sprintf("%s/%s is reserved for the reconciler's inventory", [input.object.kind, input.object.name]) if {
	input.object.reserved
}

# A signed image is not enough: a pod spec can still reach into the host.
deny contains sprintf("pod spec reaches into the host (%s); namespace '%s' does not allow_host_access", [what, input.folder_namespace]) if {
	some what in input.host_access
	not input.namespace.allow_host_access
}

deny contains sprintf("podman network '%s' is not in podman_networks of namespace '%s'", [input.podman_network, input.folder_namespace]) if {
	input.podman_network != null
	not input.podman_network in input.namespace.podman_networks
}

deny contains sprintf("container '%s' names no image", [image.container]) if {
	some image in input.images
	image.reference == ""
}

deny contains sprintf("image %s is not pinned by digest (use REPOSITORY@sha256:...)", [image.reference]) if {
	some image in input.images
	image.reference != ""
	not image.pinned
}

deny contains sprintf("image %s has no valid signature by a trusted key: %s", [image.reference, image.signature.error]) if {
	some image in input.images
	image.pinned
	not image.signature.ok
}

deny contains sprintf("image %s has no valid provenance by a trusted key: %s", [image.reference, image.provenance_error]) if {
	some image in input.images
	image.pinned
	image.signature.ok
	image.provenance == null
}

# Signed is not enough: the image must come from a source this namespace runs.
deny contains sprintf("image %s was built from %s, which namespace '%s' does not allow", [image.reference, image.provenance.source_repository, input.folder_namespace]) if {
	input.namespace.configured
	some image in input.images
	image.provenance != null
	not image.provenance.source_repository in input.namespace.allowed_sources
}

# Promotion order enforced where it cannot be skipped: an image enters an environment with
# requires_healthy_in only after it ran healthily (settled) there, or if it already runs here.
deny contains sprintf("image %s has not run healthily in '%s', which '%s' requires first", [image.reference, image.requires_healthy_in, input.environment]) if {
	some image in input.images
	image.requires_healthy_in != null
	image.signature.ok
	not image.healthy_there
	not image.already_running
}
