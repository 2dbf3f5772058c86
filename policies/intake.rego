# Intake policy of the trusted builder (trusted-builder/src/intake).
#
# Rust gathers facts from the builder's own mirror of the canonical Git and its own state; this
# policy alone decides. `deny` is the set of reasons to refuse a pass record; `allow` holds only
# when there is none. The input is `IntakeInput` version 1 (trusted-builder/src/intake/policy.rs).
package airlock.intake

import rego.v1

default allow := false

allow if count(deny) == 0

# A newer input shape must not be read with the rules of this one.
deny contains "intake input version is not 1" if input.version != 1

deny contains sprintf("project '%s' is not configured on this builder", [input.record.project]) if {
	not input.facts.project_allowed
}

# The builder fetches only from its configured URL; a record naming another URL is refused so
# that nobody mistakes what was built for a build of that other repository.
deny contains "git_url differs from the project's canonical Git URL" if {
	input.facts.project_allowed
	input.record.git_url != input.facts.canonical_git_url
}

deny contains sprintf("ref '%s' is not a protected ref of the project", [input.record.ref]) if {
	input.facts.project_allowed
	input.facts.protected_ref_matched == null
}

deny contains "commit is not reachable from a protected ref in the builder's own mirror" if {
	input.facts.protected_ref_matched != null
	not input.facts.commit_reachable_from_protected
}

deny contains sprintf("job '%s' does not declare publish in the pipeline file at this commit", [input.record.job]) if {
	input.facts.commit_reachable_from_protected
	not input.facts.job_declares_publish
}

# A replay is a no-op: every (project, commit, job) is built at most once.
deny contains "already built: replayed record" if input.facts.already_built
