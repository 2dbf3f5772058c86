//! The system calls a job may not make, as seccomp BPF programs handed to bubblewrap.
//!
//! Namespaces already keep a job from the network, the host's processes and its files; what
//! remains is the kernel's own attack surface. The denylist follows the usual container
//! profiles (Docker's default, Flatpak's): nested user and other namespaces (the door to most
//! unprivileged kernel exploits), the kernel keyring, eBPF, `ptrace` and cross-process memory
//! access, `perf_event_open`, `userfaultfd`, io_uring, module and kexec loading, mounting,
//! clock and swap changes, handle-based opens, and terminal injection (`TIOCSTI`). Denied calls
//! fail with `EPERM`; `clone3` fails with `ENOSYS` so the C library falls back to `clone`,
//! whose namespace flags are checked (BPF cannot look inside `clone3`'s argument struct).
//!
//! Programs are compiled once per executor with `seccompiler` and written to files that the
//! launcher opens as descriptors 3 and 4 for `bwrap --add-seccomp-fd`; bubblewrap installs them
//! just before it executes the job, after its own setup.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The x32 ABI numbers its calls with this bit set; a filter keyed on the x86-64 numbers alone
/// would let an x32 call through.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// System calls denied outright.
fn denied() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_init_module,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pivot_root,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_ptrace,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        libc::SYS_ioperm,
        libc::SYS_iopl,
        libc::SYS_nfsservctl,
        libc::SYS_sysfs,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS__sysctl,
    ]);
    calls
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

/// Personalities a job may set (as Docker's default profile allows): Linux, 32-bit Linux, each
/// with `UNAME26`, and the query `0xffffffff`. Everything else is denied: `ADDR_NO_RANDOMIZE`
/// turns off address-space randomisation, `READ_IMPLIES_EXEC` makes every readable mapping
/// executable, both for whatever the job executes next.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Matches `personality(p)` for every `p` not in [`ALLOWED_PERSONALITIES`] (the kernel reads the
/// argument as 32 bits).
fn personality_rule() -> Result<SeccompRule, String> {
    let conditions = ALLOWED_PERSONALITIES
        .iter()
        .map(|&p| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// The `EPERM` program: the denylist, `clone` with any namespace flag, `ioctl(TIOCSTI)`,
/// `personality` other than the ordinary ones.
fn deny_program(arch: TargetArch) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in denied() {
        rules.insert(call, Vec::new());
        #[cfg(target_arch = "x86_64")]
        rules.insert(call | X32_SYSCALL_BIT, Vec::new());
    }
    let namespace_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in namespace_flags {
        let flag = u64::from(flag.unsigned_abs());
        clone_rules.push(
            SeccompRule::new(vec![condition(0, SeccompCmpOp::MaskedEq(flag), flag)?])
                .map_err(|e| e.to_string())?,
        );
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
        .into_iter()
        .map(|request| {
            SeccompRule::new(vec![condition(
                1,
                SeccompCmpOp::MaskedEq(0xffff_ffff),
                u64::from(request as u32),
            )?])
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    rules.insert(libc::SYS_personality, vec![personality_rule()?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// The `ENOSYS` program: `clone3`, so callers fall back to the checked `clone`.
fn nosys_program(arch: TargetArch) -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// A program in the kernel's `struct sock_filter` layout, as bubblewrap reads it.
fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for ins in program {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// The compiled programs, in files only this process's user can read, removed on drop.
#[derive(Debug)]
pub(super) struct SeccompPrograms {
    _dir: tempfile::TempDir,
    /// The `EPERM` program (descriptor 3 in the launcher).
    pub(super) deny: PathBuf,
    /// The `ENOSYS` program (descriptor 4 in the launcher).
    pub(super) nosys: PathBuf,
}

impl SeccompPrograms {
    /// Compiles the programs for this machine's architecture.
    pub(super) fn compile() -> Result<SeccompPrograms, String> {
        let arch = TargetArch::try_from(std::env::consts::ARCH)
            .map_err(|e| format!("no seccomp filter for {}: {e}", std::env::consts::ARCH))?;
        let dir = tempfile::Builder::new()
            .prefix("airlock-seccomp-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let write = |name: &str, program: &BpfProgram| -> Result<PathBuf, String> {
            let path = dir.path().join(name);
            let mut file = std::fs::File::create_new(&path).map_err(|e| e.to_string())?;
            file.write_all(&to_bytes(program))
                .map_err(|e| e.to_string())?;
            Ok(path)
        };
        let deny = write("deny.bpf", &deny_program(arch)?)?;
        let nosys = write("nosys.bpf", &nosys_program(arch)?)?;
        Ok(SeccompPrograms {
            _dir: dir,
            deny,
            nosys,
        })
    }

    /// Both program files, in descriptor order.
    pub(super) fn files(&self) -> [&Path; 2] {
        [&self.deny, &self.nosys]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile_and_fit_the_kernel_limit() {
        let programs = SeccompPrograms::compile().expect("compile");
        for file in programs.files() {
            let len = std::fs::metadata(file).expect("program file").len();
            assert!(len > 0 && len % 8 == 0, "{}: {len} bytes", file.display());
            // BPF_MAXINSNS is 4096 instructions.
            assert!(len / 8 < 4096, "{len}");
        }
    }
}
