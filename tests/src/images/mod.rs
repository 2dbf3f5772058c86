//! Real OCI images for tests and the demo, made only from what is installed
//! on this host (no downloads): a busybox root filesystem, or one assembled
//! from installed Debian packages. Either is packed into one deterministic
//! layer and pushed to a registry (the local `docker-registry`), so a job can
//! be pinned to it by digest.
//!
//! - [`rootfs`]: the root filesystems (busybox, or a Debian package closure).
//! - [`push`]: one deterministic layer, config and manifest, pushed and checked.

mod push;
mod rootfs;

pub use push::{PushedImage, push_rootfs};
pub use rootfs::{DebianRootfs, busybox_rootfs, debian_rootfs};

/// The host's statically linked busybox (Debian package `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Debian packages whose closure builds and tests the demo's sample service
/// (`cc`, static linking, `strip`, `sh`, `tar --sort=name`, `gzip`,
/// `sha256sum`, `mkdir`).
pub const TOOLCHAIN_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "binutils",
    "dash",
    "coreutils",
    "tar",
    "gzip",
];

/// What [`debian_rootfs`] writes to `etc/airlock-image`.
pub const DEBIAN_MARKER: &str = "debian-toolchain";

/// The image config's `PATH`.
pub const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// gzip level of the layer: fixed, so the digest never depends on a default.
/// Measured on the 208 MiB toolchain tar (debug build, deflate at opt-level 3):
/// level 1 takes 2.4 s for 89.8 MiB, level 6 14 s for 75.0 MiB, level 9 27 s.
/// The registry is local, so the fast level wins.
pub(crate) const GZIP_LEVEL: u32 = 1;

/// gzip header OS byte 255 ("unknown"): the host must not change the digest.
pub(crate) const GZIP_OS_UNKNOWN: u8 = 255;
