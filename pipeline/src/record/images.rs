//! The images a record lists: one rule for the CI that writes them and the builder that checks
//! them against its own checkout.

use std::collections::BTreeMap;

use crate::dag::{Plan, PlanError, Selection};
use crate::image::ImageRef;
use crate::spec::Pipeline;

/// The image each job of `job`'s rebuild runs in, by job name: `job` itself and every job in its
/// `needs` closure (the plan of `Selection::Named([job])`, which is what the trusted builder
/// rebuilds). Jobs in host mode (no image of their own and no file default) are absent.
///
/// The CI writes this into [`PassRecord::images`](super::PassRecord::images) (each reference as
/// [`ImageRef`]'s `Display` writes it); the builder computes it again from the pipeline file at
/// the commit in its own mirror and refuses a record that disagrees.
pub fn job_images(pipeline: &Pipeline, job: &str) -> Result<BTreeMap<String, ImageRef>, PlanError> {
    Ok(Plan::new(pipeline, &Selection::Named(vec![job.to_string()]))?.images())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str =
        "127.0.0.1:5000/cc@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str =
        "127.0.0.1:5000/go@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pipeline(text: &str) -> Pipeline {
        crate::spec::parse("config.yaml", text.as_bytes()).unwrap()
    }

    #[test]
    fn job_images_cover_the_needs_closure_and_leave_out_host_mode_and_other_jobs() {
        let p = pipeline(&format!(
            "version: 1\n\
             image: {A}\n\
             jobs:\n\
             \x20 deps: {{run: 'true'}}\n\
             \x20 gen: {{run: 'true', image: '{B}', needs: [deps]}}\n\
             \x20 unrelated: {{run: 'true'}}\n\
             \x20 publish: {{run: 'true', needs: [gen]}}\n"
        ));
        let images = job_images(&p, "publish").unwrap();
        let shown: Vec<(&str, String)> = images
            .iter()
            .map(|(job, image)| (job.as_str(), image.to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                ("deps", A.to_string()),
                ("gen", B.to_string()),
                ("publish", A.to_string())
            ]
        );

        // Host mode (no image anywhere): nothing listed. Unknown job: the plan's error.
        let host =
            pipeline("version: 1\njobs:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n");
        assert!(job_images(&host, "b").unwrap().is_empty());
        assert!(matches!(
            job_images(&host, "nope"),
            Err(PlanError::UnknownJob { .. })
        ));
    }
}
