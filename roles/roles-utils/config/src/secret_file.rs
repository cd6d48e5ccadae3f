//! Secrets a role creates on its first run (a mint's seed, a wallet's mnemonic): written once
//! with owner-only permissions, never overwritten, refused if others can read them.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: empty secret file; delete it to create a new one")]
    Empty { path: PathBuf },
}

/// Reads the secret in `path`; if the file does not exist, stores `generate()` there first
/// (mode 0600, parent directories created). Surrounding whitespace is trimmed.
pub fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<String, SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            check_mode(path)?;
            let secret = text.trim().to_string();
            if secret.is_empty() {
                return Err(SecretFileError::Empty {
                    path: path.to_path_buf(),
                });
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
            let secret = generate();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io_err)?;
            file.write_all(format!("{secret}\n").as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(io_err)?;
            Ok(secret)
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| SecretFileError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> Result<(), SecretFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/seed");
        let first = load_or_create(&path, || "s3cret".into()).unwrap();
        assert_eq!(first, "s3cret");
        let again = load_or_create(&path, || "other".into()).unwrap();
        assert_eq!(again, "s3cret", "an existing secret is never replaced");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path, || "y".into()).unwrap_err();
        assert!(matches!(err, SecretFileError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        load_or_create(&path, || "\n".into()).unwrap();
        let err = load_or_create(&path, || "y".into()).unwrap_err();
        assert!(matches!(err, SecretFileError::Empty { .. }), "{err}");
    }
}
