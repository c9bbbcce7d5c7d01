//! Confines a `bash` tool command with Landlock: it may write only beneath the paths it is
//! given (the workspace, `tools.allowed_paths`, its private temp dir), reads what the user
//! can, and with `tools.bash_network = false` may neither bind nor connect TCP sockets.
//!
//! Landlock restricts the *calling thread* and everything it spawns afterwards. So the
//! command is spawned from a short-lived thread that restricts itself first: the child
//! inherits the restriction, the daemon's other threads keep theirs, and no code runs
//! between `fork` and `exec` (no `pre_exec`, no `unsafe`).
//!
//! Where the kernel lacks Landlock the command runs as before, and the log says so once.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Once, OnceLock};
use std::thread;

use landlock::{
    ABI, AccessFs, AccessNet, BitFlags, LandlockStatus, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, path_beneath_rules,
};

/// Device files any shell command expects to write (`2>/dev/null` and the like). They
/// hold no data, so allowing them lets nothing escape.
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// The write rights that are confined: those of Landlock ABI 4 (files, directories, links,
/// renames across directories, truncation). Later ABIs add `IoctlDev` (ioctl on device
/// files) and `ResolveUnix` (connecting Unix sockets), which are not writes to the user's
/// files; handling them would break ordinary commands for no gain in what this promises.
fn write_access() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI::V4)
}

/// TCP bind and connect: the network rights Landlock has had since ABI 4.
fn tcp_access() -> BitFlags<AccessNet> {
    AccessNet::BindTcp | AccessNet::ConnectTcp
}

/// What a confined command may do.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Directories (or files) beneath which the command may write.
    pub writable: Vec<PathBuf>,
    /// Whether the command may bind and connect TCP sockets.
    pub network: bool,
}

/// How much of a [`Policy`] the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enforced {
    /// Every rule is in force.
    Fully,
    /// Writes are confined, but not everything asked (e.g. no network rules before ABI 4).
    Partly,
    /// The kernel has no Landlock: the command runs unconfined.
    Not,
}

/// Spawns `cmd` confined to `policy`. Fails when Landlock exists but the rules cannot be
/// built (then nothing runs); runs unconfined, logging it once, when Landlock is missing.
pub fn spawn(mut cmd: Command, policy: &Policy) -> io::Result<Child> {
    let policy = policy.clone();
    let spawner = thread::Builder::new().name("bash-sandbox".into()).spawn(
        move || -> io::Result<Child> {
            let status = restrict_this_thread(&policy).map_err(|e| {
                io::Error::other(format!("cannot set up the Landlock sandbox: {e}"))
            })?;
            warn_once(enforced(&status, &policy), &status, &policy);
            cmd.spawn()
        },
    )?;
    // The thread exits right after the spawn, taking its restriction with it.
    spawner
        .join()
        .map_err(|_| io::Error::other("the sandbox thread panicked"))?
}

/// Restricts the calling thread (and what it spawns later) to `policy`.
fn restrict_this_thread(policy: &Policy) -> Result<RestrictionStatus, RulesetError> {
    let mut ruleset = Ruleset::default().handle_access(write_access())?;
    if !policy.network {
        ruleset = ruleset.handle_access(tcp_access())?;
    }
    let writable = policy
        .writable
        .iter()
        .map(PathBuf::as_path)
        .chain(WRITABLE_DEVICES.iter().map(Path::new));
    ruleset
        .create()?
        .add_rules(path_beneath_rules(writable, write_access()))?
        .restrict_self()
}

fn enforced(status: &RestrictionStatus, policy: &Policy) -> Enforced {
    match status.ruleset {
        RulesetStatus::NotEnforced => Enforced::Not,
        RulesetStatus::PartiallyEnforced => Enforced::Partly,
        RulesetStatus::FullyEnforced if !policy.network && abi(status) < ABI::V4 => {
            Enforced::Partly
        }
        RulesetStatus::FullyEnforced => Enforced::Fully,
    }
}

fn abi(status: &RestrictionStatus) -> ABI {
    ABI::from(status.landlock)
}

fn warn_once(enforced: Enforced, status: &RestrictionStatus, policy: &Policy) {
    static UNCONFINED: Once = Once::new();
    static NO_NET_RULES: Once = Once::new();
    match enforced {
        Enforced::Fully => {}
        Enforced::Not => UNCONFINED.call_once(|| {
            log::warn!(
                "bash runs unconfined: {} (the sandbox needs Linux 5.13+ with Landlock enabled)",
                describe_landlock(status.landlock)
            );
        }),
        Enforced::Partly if !policy.network && abi(status) < ABI::V4 => {
            NO_NET_RULES.call_once(|| {
                log::warn!(
                    "tools.bash_network = false is not enforced: Landlock ABI {} has no network rules (ABI 4, Linux 6.7, adds them); writes are still confined",
                    abi(status) as i32
                );
            });
        }
        Enforced::Partly => UNCONFINED.call_once(|| {
            log::warn!(
                "bash is only partly confined: Landlock ABI {} lacks some write rights (truncation needs ABI 3, cross-directory renames ABI 2)",
                abi(status) as i32
            );
        }),
    }
}

fn describe_landlock(status: LandlockStatus) -> String {
    match status {
        LandlockStatus::NotEnabled => "Landlock is built into the kernel but not enabled".into(),
        LandlockStatus::NotImplemented => "this kernel has no Landlock".into(),
        LandlockStatus::Available { effective_abi, .. } => {
            format!("Landlock ABI {}", effective_abi as i32)
        }
    }
}

/// What the kernel offers the `bash` sandbox (for `doctor` and the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Commands write only beneath the workspace, `tools.allowed_paths` and their temp dir.
    pub confined: bool,
    /// `tools.bash_network = false` can be enforced (Landlock ABI 4+).
    pub network_rules: bool,
    /// One sentence for a person.
    pub detail: String,
}

/// Whether `bash` tool commands are confined on this machine. Probed once, by restricting
/// a throwaway thread the way a command's spawner is restricted.
pub fn bash_sandbox_status() -> SandboxStatus {
    static STATUS: OnceLock<SandboxStatus> = OnceLock::new();
    STATUS.get_or_init(probe).clone()
}

fn probe() -> SandboxStatus {
    let policy = Policy {
        writable: Vec::new(),
        network: false,
    };
    let status = thread::Builder::new()
        .name("landlock-probe".into())
        .spawn(move || restrict_this_thread(&policy).map_err(|e| e.to_string()))
        .map_err(|e| e.to_string())
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err("the probe thread panicked".into()))
        });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return SandboxStatus {
                confined: false,
                network_rules: false,
                detail: format!("the Landlock probe failed: {e}"),
            };
        }
    };
    if status.ruleset == RulesetStatus::NotEnforced {
        return SandboxStatus {
            confined: false,
            network_rules: false,
            detail: format!(
                "{}: bash commands run unconfined",
                describe_landlock(status.landlock)
            ),
        };
    }
    let abi = abi(&status);
    let network_rules = abi >= ABI::V4;
    SandboxStatus {
        confined: true,
        network_rules,
        detail: format!(
            "Landlock ABI {}: bash writes only in the workspace, tools.allowed_paths and a private temp dir; {}",
            abi as i32,
            if network_rules {
                "tools.bash_network = false can deny TCP"
            } else {
                "no network rules before ABI 4 (Linux 6.7)"
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::net::TcpListener;
    use std::process::Stdio;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "localgpt-sandbox-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sh(script: &str, policy: &Policy) -> (bool, String) {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = spawn(cmd, policy).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn writes_stay_beneath_the_writable_paths() {
        let status = bash_sandbox_status();
        if !status.confined {
            eprintln!("skipped: {}", status.detail);
            return;
        }
        let inside = scratch("in");
        let outside = scratch("out");
        let policy = Policy {
            writable: vec![inside.clone()],
            network: true,
        };
        let (ok, err) = sh(
            &format!(
                "echo hi > {0}/a && mkdir {0}/d && mv {0}/a {0}/d/b",
                inside.display()
            ),
            &policy,
        );
        assert!(ok, "{err}");
        assert!(inside.join("d/b").exists());
        let (ok, _) = sh(&format!("echo hi > {}/x", outside.display()), &policy);
        assert!(!ok);
        assert!(!outside.join("x").exists());
        // Moving a file out of the writable tree is a write outside too.
        let (ok, _) = sh(
            &format!("mv {}/d/b {}/b", inside.display(), outside.display()),
            &policy,
        );
        assert!(!ok);
        assert!(!outside.join("b").exists());
        // Reading outside, and the usual device files, still work.
        fs::write(outside.join("r"), "readable").unwrap();
        let (ok, err) = sh(
            &format!("cat {}/r > /dev/null 2>/dev/null", outside.display()),
            &policy,
        );
        assert!(ok, "{err}");
        // The daemon's own thread is not restricted by the command's sandbox.
        fs::write(outside.join("daemon"), "x").unwrap();
        fs::remove_dir_all(&inside).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn no_network_means_no_tcp_connect() {
        let status = bash_sandbox_status();
        if !status.network_rules {
            eprintln!("skipped: {}", status.detail);
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        let allowed = Policy {
            writable: Vec::new(),
            network: true,
        };
        let (ok, err) = sh(&connect, &allowed);
        assert!(ok, "{err}");
        let denied = Policy {
            network: false,
            ..allowed
        };
        let (ok, err) = sh(&connect, &denied);
        assert!(!ok);
        assert!(err.contains("ermission denied"), "{err}");
    }
}
