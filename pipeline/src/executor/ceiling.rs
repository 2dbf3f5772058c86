//! The most a job may ask for. A pipeline file is written by whoever opens a change, and its
//! `timeout` and `resources` replace the runner's defaults: without a ceiling a job could ask
//! for a terabyte of memory (no cgroup limit at all, in effect), millions of processes, a
//! workspace larger than the disk or a week of a runner slot.

use std::time::Duration;

use crate::outputs::human_size;
use crate::spec::ResourceLimits;

/// Ceilings on what one job may request; a job over one is refused before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCeilings {
    /// Longest `timeout`.
    pub max_timeout: Duration,
    /// Largest `resources.memory`.
    pub max_memory_bytes: u64,
    /// Most `resources.pids`.
    pub max_pids: u32,
    /// Largest `resources.disk`.
    pub max_disk_bytes: u64,
}

/// Longest job timeout by default: 6 hours.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Largest memory request by default: 16 GiB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 16 << 30;
/// Most processes by default.
pub const DEFAULT_MAX_PIDS: u32 = 32_768;
/// Largest workspace by default: 100 GiB.
pub const DEFAULT_MAX_DISK_BYTES: u64 = 100 << 30;

impl Default for JobCeilings {
    fn default() -> Self {
        JobCeilings {
            max_timeout: DEFAULT_MAX_TIMEOUT,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_pids: DEFAULT_MAX_PIDS,
            max_disk_bytes: DEFAULT_MAX_DISK_BYTES,
        }
    }
}

impl JobCeilings {
    /// Why `resources` asks for more than this runner allows, if it does.
    pub fn check_resources(&self, resources: &ResourceLimits) -> Result<(), String> {
        let over = |what: &str, asked: String, most: String, setting: &str| {
            Err(format!(
                "the job asks for {asked} of {what}; this runner allows at most {most} ({setting})"
            ))
        };
        if let Some(memory) = resources.memory_bytes
            && memory > self.max_memory_bytes
        {
            return over(
                "memory",
                human_size(memory),
                human_size(self.max_memory_bytes),
                "limits.max_memory",
            );
        }
        if let Some(pids) = resources.pids
            && pids > self.max_pids
        {
            return over(
                "processes",
                pids.to_string(),
                self.max_pids.to_string(),
                "limits.max_pids",
            );
        }
        if let Some(disk) = resources.disk_bytes
            && disk > self.max_disk_bytes
        {
            return over(
                "disk",
                human_size(disk),
                human_size(self.max_disk_bytes),
                "limits.max_disk",
            );
        }
        Ok(())
    }

    /// Why `timeout` is longer than this runner allows, if it is.
    pub fn check_timeout(&self, timeout: Duration) -> Result<(), String> {
        if timeout > self.max_timeout {
            return Err(format!(
                "the job asks for a timeout of {}; this runner allows at most {} (limits.max_timeout)",
                humantime::format_duration(timeout),
                humantime::format_duration(self.max_timeout)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_over_a_ceiling_are_named_and_those_at_it_pass() {
        let ceilings = JobCeilings::default();
        let at = ResourceLimits {
            cpu_millis: Some(1_000_000),
            memory_bytes: Some(DEFAULT_MAX_MEMORY_BYTES),
            pids: Some(DEFAULT_MAX_PIDS),
            disk_bytes: Some(DEFAULT_MAX_DISK_BYTES),
        };
        assert_eq!(ceilings.check_resources(&at), Ok(()));
        assert_eq!(ceilings.check_timeout(DEFAULT_MAX_TIMEOUT), Ok(()));
        let memory = ResourceLimits {
            memory_bytes: Some(1 << 40),
            ..at
        };
        assert_eq!(
            ceilings.check_resources(&memory),
            Err("the job asks for 1 TiB of memory; this runner allows at most 16 GiB (limits.max_memory)".into())
        );
        let pids = ResourceLimits {
            pids: Some(u32::MAX),
            ..at
        };
        assert!(
            ceilings
                .check_resources(&pids)
                .is_err_and(|e| e.contains("limits.max_pids"))
        );
        let disk = ResourceLimits {
            disk_bytes: Some(DEFAULT_MAX_DISK_BYTES + 1),
            ..at
        };
        assert!(
            ceilings
                .check_resources(&disk)
                .is_err_and(|e| e.contains("limits.max_disk"))
        );
        assert_eq!(
            ceilings.check_timeout(Duration::from_secs(7 * 86_400)),
            Err("the job asks for a timeout of 7days; this runner allows at most 6h (limits.max_timeout)".into())
        );
    }
}
