//! Files only this user may read: the data directory and everything quintet
//! keeps in it (stores, journals, keys, the TLS key) are created owner-only
//! (directories 0700, files 0600), and, as ssh does with its keys, a data
//! directory or key file that group or others can reach is refused with the
//! `chmod` that fixes it — quintet never loosens or silently repairs a mode
//! an operator set.

use std::fs;
use std::path::{Path, PathBuf};

/// A path whose permissions let group or others in, or that cannot be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    /// The path exists and group or others have some access to it.
    #[error(
        "{} is reachable by group or others (mode {mode:04o}); it holds secrets, so run \
         `chmod {fix} {}` (or choose another {what})",
        path.display(),
        path.display()
    )]
    Open {
        /// The directory or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to `chmod` it to (`700`, `600`).
        fix: &'static str,
        /// The option that named it (`--data-dir`), for choosing another.
        what: &'static str,
    },
    /// The directory or file could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// What was being created.
        path: PathBuf,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
    /// The permissions of an existing path could not be read.
    #[error("cannot read the permissions of {}: {source}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
}

/// Creates `dir` (and missing parents) owner-only, or, if it exists, checks
/// that group and others have no access to it. `what` names the option that
/// set it, for the message.
pub fn dir(dir: &Path, what: &'static str) -> Result<(), PrivateError> {
    match fs::metadata(dir) {
        Ok(_) => check(dir, "700", what),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir(dir),
        Err(source) => Err(PrivateError::Inspect {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Checks that a secret file (a key) is not reachable by group or others.
pub fn file(path: &Path, what: &'static str) -> Result<(), PrivateError> {
    check(path, "600", what)
}

/// Creates `dir` and any missing parent owner-only (0700); an existing
/// directory is left as it is.
pub fn create_dir(dir: &Path) -> Result<(), PrivateError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| PrivateError::Create {
        path: dir.to_path_buf(),
        source,
    })
}

/// Makes a file quintet just created owner-only (0600).
pub fn restrict_file(path: &Path) -> Result<(), PrivateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
            PrivateError::Create {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn check(path: &Path, fix: &'static str, what: &'static str) -> Result<(), PrivateError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| PrivateError::Inspect {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateError::Open {
            path: path.to_path_buf(),
            mode,
            fix,
            what,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check(_: &Path, _: &'static str, _: &'static str) -> Result<(), PrivateError> {
    Ok(())
}

// Two attributes, not `all(test, unix)`: clippy knows a test module by `cfg(test)`.
#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_are_owner_only_and_open_ones_are_refused_with_the_fix() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("a/data");
        dir(&data, "--data-dir").expect("created");
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        dir(&data, "--data-dir").expect("an owner-only directory is accepted");

        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = dir(&data, "--data-dir")
            .expect_err("0755 refused")
            .to_string();
        assert!(err.contains("mode 0755"), "{err}");
        assert!(
            err.contains(&format!("chmod 700 {}", data.display())),
            "{err}"
        );
        assert!(err.contains("--data-dir"), "{err}");

        let key = root.path().join("k.key");
        fs::write(&key, b"x").expect("write");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = file(&key, "key file")
            .expect_err("0640 refused")
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        restrict_file(&key).expect("restrict");
        assert_eq!(mode(&key), 0o600);
        file(&key, "key file").expect("0600 accepted");
    }
}
