//! Which jobs run, and in what order they may start.

use std::collections::{BTreeMap, HashMap};

use crate::image::ImageRef;
use crate::spec::{EventKind, JobSpec, Pipeline};

/// Which jobs a run selects. Every selection pulls in the jobs its members
/// `need`, whatever their own `when` says: a job cannot run without them.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every job.
    All,
    /// Jobs whose `when` matches this event.
    Event {
        /// Kind of event.
        kind: EventKind,
        /// Full ref name, e.g. `refs/heads/main`.
        git_ref: String,
    },
    /// These jobs by name (`ci-cluster run --job`).
    Named(Vec<String>),
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--job` named a job that does not exist.
    #[error("no job named '{name}' (jobs: {known})")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The jobs that exist.
        known: String,
    },
    /// Nothing matched.
    #[error("no job is selected for this event")]
    Empty,
}

/// Jobs in a start order with their dependency edges (by index).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Selected jobs, each after everything it needs.
    pub jobs: Vec<JobSpec>,
    /// `needs[i]`: indices job `i` waits for.
    pub needs: Vec<Vec<usize>>,
    /// `dependents[i]`: indices waiting for job `i`.
    pub dependents: Vec<Vec<usize>>,
}

impl Plan {
    /// Plans a validated pipeline (which has no cycles and no unknown needs).
    pub fn new(pipeline: &Pipeline, selection: &Selection) -> Result<Plan, PlanError> {
        let by_name: HashMap<&str, usize> = pipeline
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.name.as_str(), i))
            .collect();
        let mut wanted = vec![false; pipeline.jobs.len()];
        let mut stack: Vec<usize> = match selection {
            Selection::All => (0..pipeline.jobs.len()).collect(),
            Selection::Event { kind, git_ref } => pipeline
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| j.when.selects(*kind, git_ref))
                .map(|(i, _)| i)
                .collect(),
            Selection::Named(names) => names
                .iter()
                .map(|n| {
                    by_name
                        .get(n.as_str())
                        .copied()
                        .ok_or_else(|| PlanError::UnknownJob {
                            name: n.clone(),
                            known: pipeline
                                .jobs
                                .iter()
                                .map(|j| j.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut wanted[i], true) {
                continue;
            }
            stack.extend(
                pipeline.jobs[i]
                    .needs
                    .iter()
                    .filter_map(|n| by_name.get(n.as_str()).copied()),
            );
        }

        // Topological order (Kahn), stable in file order among ready jobs.
        let selected: Vec<usize> = (0..pipeline.jobs.len()).filter(|&i| wanted[i]).collect();
        if selected.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut remaining: HashMap<usize, usize> = selected
            .iter()
            .map(|&i| (i, pipeline.jobs[i].needs.len()))
            .collect();
        let mut users: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &selected {
            for n in &pipeline.jobs[i].needs {
                if let Some(&d) = by_name.get(n.as_str()) {
                    users.entry(d).or_default().push(i);
                }
            }
        }
        let mut ready: std::collections::VecDeque<usize> = selected
            .iter()
            .copied()
            .filter(|i| remaining[i] == 0)
            .collect();
        let mut order = Vec::with_capacity(selected.len());
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for &u in users.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(r) = remaining.get_mut(&u) {
                    *r -= 1;
                    if *r == 0 {
                        ready.push_back(u);
                    }
                }
            }
        }
        let position: HashMap<usize, usize> =
            order.iter().enumerate().map(|(pos, &i)| (i, pos)).collect();
        let jobs: Vec<JobSpec> = order.iter().map(|&i| pipeline.jobs[i].clone()).collect();
        let needs: Vec<Vec<usize>> = jobs
            .iter()
            .map(|j| {
                j.needs
                    .iter()
                    .filter_map(|n| {
                        by_name
                            .get(n.as_str())
                            .and_then(|i| position.get(i))
                            .copied()
                    })
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); jobs.len()];
        for (i, ns) in needs.iter().enumerate() {
            for &n in ns {
                dependents[n].push(i);
            }
        }
        Ok(Plan {
            jobs,
            needs,
            dependents,
        })
    }

    /// The image each planned job runs in, by job name; jobs in host mode are absent.
    pub fn images(&self) -> BTreeMap<String, ImageRef> {
        self.jobs
            .iter()
            .filter_map(|j| j.image.clone().map(|image| (j.name.clone(), image)))
            .collect()
    }

    /// Indices of every job `i` needs, directly or not.
    pub fn needs_closure(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.jobs.len()];
        let mut stack = self.needs[i].clone();
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut seen[n], true) {
                out.push(n);
                stack.extend(&self.needs[n]);
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        crate::spec::parse("t.yaml", text.as_bytes()).expect("valid")
    }

    const DIAMOND: &str = "version: 1\njobs:\n  d: {run: x, needs: [b, c]}\n  b: {run: x, needs: [a]}\n  c: {run: x, needs: [a]}\n  a: {run: x}\n  lint: {run: x, when: {events: [change]}}\n  release: {run: x, needs: [d], when: {refs: ['refs/tags/*']}}\n";

    #[test]
    fn order_respects_needs() {
        let plan = Plan::new(&pipeline(DIAMOND), &Selection::All).expect("plan");
        let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).expect("present");
        assert!(
            pos("a") < pos("b")
                && pos("a") < pos("c")
                && pos("b") < pos("d")
                && pos("c") < pos("d")
        );
        assert!(pos("d") < pos("release"));
        let d = pos("d");
        let closure: Vec<&str> = plan.needs_closure(d).iter().map(|&i| names[i]).collect();
        assert_eq!(closure.len(), 3);
    }

    #[test]
    fn selection_by_event_pulls_in_needs() {
        let p = pipeline(DIAMOND);
        let plan = Plan::new(
            &p,
            &Selection::Event {
                kind: EventKind::Push,
                git_ref: "refs/tags/v1".into(),
            },
        )
        .expect("plan");
        let mut names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b", "c", "d", "release"]);
        let plan = Plan::new(&p, &Selection::Named(vec!["b".into()])).expect("plan");
        assert_eq!(
            plan.jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(matches!(
            Plan::new(&p, &Selection::Named(vec!["zzz".into()])),
            Err(PlanError::UnknownJob { .. })
        ));
    }
}
