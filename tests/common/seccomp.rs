//! A seccomp filter that blocks io_uring the way container runtimes' default profiles
//! do (`io_uring_setup` fails with EPERM), installed in a child between fork and exec.

use std::process::Command;

/// `AUDIT_ARCH_*` of this target from linux/audit.h (the ELF machine | 64-bit |
/// little-endian); libc does not export them.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// `io_uring_setup`'s number: the same on x86_64 and aarch64 (system calls added
/// since 5.1 share one numbering).
const IO_URING_SETUP: u32 = 425;

/// Installs a seccomp filter in the calling process that makes `io_uring_setup` fail
/// with `errno` and allows everything else. Meant for `Command::pre_exec`: it only
/// makes async-signal-safe system calls and does not allocate.
fn deny_io_uring_setup(errno: i32) -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    const ARCH_AT: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_AT: u32 = 0; // offsetof(struct seccomp_data, nr)
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let mut program = [
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_AT),
        jeq(AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), // another ABI: leave it alone
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_AT),
        jeq(IO_URING_SETUP, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | errno as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with valid arguments; `prog` and `program` outlive the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes `cmd`'s process start with io_uring blocked by seccomp as Docker's default
/// profile blocks it (EPERM).
pub fn block_io_uring(cmd: &mut Command) {
    block_io_uring_with(cmd, libc::EPERM);
}

/// Makes `cmd`'s process start with io_uring blocked by seccomp answering `errno`
/// (Podman's default profile answers ENOSYS).
pub fn block_io_uring_with(cmd: &mut Command, errno: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl (async-signal-safe) and allocates nothing.
    unsafe { cmd.pre_exec(move || deny_io_uring_setup(errno)) };
}
