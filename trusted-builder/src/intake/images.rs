//! The record's job images against the pipeline file at its commit, in the builder's own mirror.
//!
//! The record lists the image each job of the rebuild ran in on CI (the job and its `needs`
//! closure, host-mode jobs absent). The builder plans the same rebuild from its own checkout and
//! requires the very same list: a job pinned to another digest, or an image on one side only,
//! refuses the record before anything runs. This is not left to the intake policy: a record
//! that contradicts the source is refused whatever a custom policy says.

use std::collections::{BTreeMap, BTreeSet};

use airlock_pipeline::dag::{Plan, Selection};
use airlock_pipeline::image::ImageRef;
use airlock_pipeline::record::PassRecord;
use airlock_pipeline::spec::Pipeline;

/// How a record's images contradict the pipeline file at its commit. Names the job and both
/// references (the record's values passed [`PassRecord::validate`], so they are plain
/// `REPOSITORY@sha256:<hex>` text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageMismatch {
    /// The job is pinned to another image than the one the record says it ran in.
    #[error(
        "job '{job}' ran in {recorded} according to the pass record, but the pipeline file at this commit pins {pinned}"
    )]
    Differs {
        /// The job.
        job: String,
        /// The record's reference.
        recorded: String,
        /// The reference in the pipeline file at the commit.
        pinned: String,
    },
    /// The record names an image for a job that runs in host mode at this commit.
    #[error(
        "job '{job}' ran in {recorded} according to the pass record, but the pipeline file at this commit names no image for it (host mode)"
    )]
    OnlyInRecord {
        /// The job.
        job: String,
        /// The record's reference.
        recorded: String,
    },
    /// The record lists no image for a job that the pipeline file pins to one.
    #[error(
        "job '{job}' ran in host mode according to the pass record (no image listed), but the pipeline file at this commit pins {pinned}"
    )]
    OnlyInSource {
        /// The job.
        job: String,
        /// The reference in the pipeline file at the commit.
        pinned: String,
    },
    /// The record names an image for a job that is not part of the rebuild.
    #[error(
        "the pass record lists image {recorded} for job '{job}', which is neither the recorded job nor one it needs at this commit"
    )]
    NotRebuilt {
        /// The job.
        job: String,
        /// The record's reference.
        recorded: String,
    },
    /// The recorded job cannot be planned from the pipeline file at the commit.
    #[error("cannot plan job '{job}' from the pipeline file at this commit: {reason}")]
    Unplanned {
        /// The job.
        job: String,
        /// Why.
        reason: String,
    },
}

/// Plans the rebuild of the record's job from `pipeline` (as [`crate::rebuild::Rebuilder`] does)
/// and compares every planned job's image with the record's `images`. Returns the images, by
/// job name, when they agree; otherwise the first difference in job-name order.
pub fn check_images(
    record: &PassRecord,
    pipeline: &Pipeline,
) -> Result<BTreeMap<String, ImageRef>, ImageMismatch> {
    let plan = Plan::new(pipeline, &Selection::Named(vec![record.job.clone()])).map_err(|e| {
        ImageMismatch::Unplanned {
            job: record.job.clone(),
            reason: e.to_string(),
        }
    })?;
    let planned: BTreeSet<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    let pinned = plan.images();
    let jobs: BTreeSet<&str> = pinned
        .keys()
        .chain(record.images.keys())
        .map(String::as_str)
        .collect();
    for job in jobs {
        let recorded = record.images.get(job);
        let ours = pinned.get(job).map(ImageRef::to_string);
        let mismatch = match (recorded, ours) {
            (Some(recorded), Some(ours)) if *recorded == ours => continue,
            (Some(recorded), Some(ours)) => ImageMismatch::Differs {
                job: job.to_string(),
                recorded: recorded.clone(),
                pinned: ours,
            },
            (Some(recorded), None) if !planned.contains(job) => ImageMismatch::NotRebuilt {
                job: job.to_string(),
                recorded: recorded.clone(),
            },
            (Some(recorded), None) => ImageMismatch::OnlyInRecord {
                job: job.to_string(),
                recorded: recorded.clone(),
            },
            (None, Some(ours)) => ImageMismatch::OnlyInSource {
                job: job.to_string(),
                pinned: ours,
            },
            (None, None) => continue,
        };
        return Err(mismatch);
    }
    Ok(pinned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use airlock_pipeline::record::PASS_RECORD_VERSION;
    use airlock_pipeline::spec::EventKind;

    use super::*;

    fn image(name: &str, c: char) -> String {
        format!("127.0.0.1:5000/{name}@sha256:{}", c.to_string().repeat(64))
    }

    fn pipeline() -> Pipeline {
        // `publish` needs `build` (own image) and `lint` (host mode); `docs` is not needed.
        let text = format!(
            "version: 1\n\
             jobs:\n\
             \x20 build: {{run: 'true', image: '{}'}}\n\
             \x20 lint: {{run: 'true'}}\n\
             \x20 docs: {{run: 'true', image: '{}'}}\n\
             \x20 publish: {{run: 'true', needs: [build, lint], image: '{}'}}\n",
            image("cc", 'a'),
            image("docs", 'd'),
            image("cc", 'b'),
        );
        airlock_pipeline::spec::parse("config.yaml", text.as_bytes()).unwrap()
    }

    fn record(images: &[(&str, String)]) -> PassRecord {
        PassRecord {
            version: PASS_RECORD_VERSION,
            project: "svc".into(),
            git_url: "git://127.0.0.1/svc".into(),
            git_ref: "refs/heads/main".into(),
            event: EventKind::Push,
            commit: "0".repeat(40),
            job: "publish".into(),
            pipeline_sha256: "a".repeat(64),
            images: images
                .iter()
                .map(|(job, image)| (job.to_string(), image.clone()))
                .collect(),
            outputs: Vec::new(),
            log_sha256: "b".repeat(64),
            ci_run_id: "1".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn agreeing_images_are_returned_and_every_kind_of_difference_is_named() {
        let agreeing = [("build", image("cc", 'a')), ("publish", image("cc", 'b'))];
        // Control: the record CI writes for this pipeline.
        let ok = check_images(&record(&agreeing), &pipeline()).unwrap();
        assert_eq!(
            ok.iter()
                .map(|(j, i)| (j.as_str(), i.to_string()))
                .collect::<Vec<_>>(),
            agreeing
                .iter()
                .map(|(j, i)| (*j, i.clone()))
                .collect::<Vec<_>>()
        );

        let other = image("cc", 'c');
        let cases: Vec<(Vec<(&str, String)>, ImageMismatch)> = vec![
            (
                vec![("build", other.clone()), agreeing[1].clone()],
                ImageMismatch::Differs {
                    job: "build".into(),
                    recorded: other.clone(),
                    pinned: image("cc", 'a'),
                },
            ),
            (
                vec![agreeing[1].clone()],
                ImageMismatch::OnlyInSource {
                    job: "build".into(),
                    pinned: image("cc", 'a'),
                },
            ),
            (
                vec![
                    agreeing[0].clone(),
                    agreeing[1].clone(),
                    ("lint", other.clone()),
                ],
                ImageMismatch::OnlyInRecord {
                    job: "lint".into(),
                    recorded: other.clone(),
                },
            ),
            (
                vec![
                    agreeing[0].clone(),
                    agreeing[1].clone(),
                    ("docs", image("docs", 'd')),
                ],
                ImageMismatch::NotRebuilt {
                    job: "docs".into(),
                    recorded: image("docs", 'd'),
                },
            ),
            (
                vec![],
                ImageMismatch::OnlyInSource {
                    job: "build".into(),
                    pinned: image("cc", 'a'),
                },
            ),
        ];
        for (images, expected) in cases {
            let err = check_images(&record(&images), &pipeline()).unwrap_err();
            assert_eq!(err, expected);
        }
        let message = ImageMismatch::Differs {
            job: "build".into(),
            recorded: other.clone(),
            pinned: image("cc", 'a'),
        }
        .to_string();
        assert!(
            message.contains("'build'")
                && message.contains(&other)
                && message.contains(&image("cc", 'a')),
            "{message}"
        );

        let mut unknown = record(&agreeing);
        unknown.job = "gone".into();
        assert!(matches!(
            check_images(&unknown, &pipeline()),
            Err(ImageMismatch::Unplanned { .. })
        ));
    }
}
