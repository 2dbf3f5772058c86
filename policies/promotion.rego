# Promotion policy (trusted-builder/src/promote).
#
# `trusted-builder promote IMAGE@sha256:... --to ENV [--from ENV]` gathers facts (signature and
# provenance by a trusted key, the workloads of ENV using the image's repository, the last sync
# of the source environment) and this policy decides. `deny` is the set of reasons; `allow` holds
# only when there is none. The input is `PromotionInput` version 1 (trusted-builder/src/promote).
package airlock.promotion

import rego.v1

default allow := false

allow if count(deny) == 0

deny contains "promotion input version is not 1" if input.version != 1

deny contains sprintf("image has no valid signature by a trusted key: %s", [input.verification.signature_error]) if {
	input.version == 1
	not input.verification.signature_ok
}

deny contains sprintf("image has no valid SLSA provenance by a trusted key: %s", [input.verification.provenance_error]) if {
	input.verification.signature_ok
	input.verification.provenance == null
}

deny contains sprintf("environment '%s' is not configured on the reconciler", [input.to.name]) if {
	input.version == 1
	not input.to.configured
}

deny contains sprintf("no workload in environment '%s' uses %s; add it by hand first", [input.to.name, input.image.repository]) if {
	input.to.configured
	count(input.to.uses) == 0
}

deny contains sprintf("every workload of '%s' already runs %s", [input.to.name, input.image.digest]) if {
	count(input.to.uses) > 0
	input.to.already_current
}

deny contains sprintf("provenance source %s is not allowed in namespace '%s' of '%s'", [input.verification.provenance.source_repository, ns, input.to.name]) if {
	input.verification.provenance != null
	some ns in input.to.namespaces_refusing_source
}

# Production takes only what staging already runs healthily.
deny contains "production takes only a digest promoted from staging (add --from staging)" if {
	input.to.name == "production"
	object.get(input, ["from", "name"], "") != "staging"
}

deny contains sprintf("environment '%s' is not configured on the reconciler", [input.from.name]) if {
	input.from != null
	not input.from.configured
}

deny contains sprintf("%s does not run healthily in '%s' at its last sync (%s)", [input.image.digest, input.from.name, input.from.last_sync]) if {
	input.from != null
	input.from.configured
	not input.from.runs_healthy
}
