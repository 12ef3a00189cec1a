//! The master key: the root of every derived key (subject pseudonyms, the key that
//! wraps per-subject data keys). It comes from configuration (env or a key file);
//! the embedded default generates one on first run, written with owner-only
//! permissions (SPEC section 6).
//!
//! The database stores a *check value* (an HMAC of a fixed label under the key), so
//! a service started with another key refuses to run instead of silently failing
//! every lookup and writing data nobody can read later.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 secret bytes, wiped from memory on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; 32],
}

/// Why a master key could not be loaded or created. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("is not base64 of exactly 32 bytes")]
    Malformed,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { path: String, mode: u32 },
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey { bytes }
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(super::random_bytes())
    }

    /// Parses the base64 text form (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, MasterKeyError> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| MasterKeyError::Malformed)?;
        let result = <[u8; 32]>::try_from(decoded.as_slice())
            .map(MasterKey::from_bytes)
            .map_err(|_| MasterKeyError::Malformed);
        decoded.zeroize();
        result
    }

    /// The base64 text form, as written to a key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// Reads a key file, refusing one that others may read.
    pub fn read_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
        check_owner_only(path)?;
        let mut text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let key = MasterKey::from_base64(&text);
        text.zeroize();
        key
    }

    /// Reads the key file, or creates it with a new random key (mode 0600) when it
    /// does not exist yet. Creation uses `create_new`, so two processes starting at
    /// once cannot both write a key: the loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, MasterKeyError> {
        match write_new_secret_file(path, || MasterKey::generate().to_base64()) {
            Ok(()) | Err(NewFileError::Exists) => MasterKey::read_file(path),
            Err(NewFileError::Io(source)) => Err(MasterKeyError::Create {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The raw bytes, for key derivation inside the crate only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A value that identifies the key without revealing it: HMAC-SHA256 of a fixed
    /// label. Stored in the database to detect a start with the wrong key.
    pub fn check_value(&self) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.bytes).expect("any key length");
        mac.update(b"consentgate/v1/master-key-check");
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

pub(crate) enum NewFileError {
    Exists,
    Io(std::io::Error),
}

/// Creates `path` with owner-only permissions and writes `content()` into it;
/// `Exists` when the file is already there (nothing is overwritten).
pub(crate) fn write_new_secret_file(
    path: &Path,
    content: impl FnOnce() -> String,
) -> Result<(), NewFileError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(NewFileError::Io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NewFileError::Exists);
        }
        Err(e) => return Err(NewFileError::Io(e)),
    };
    let mut text = content();
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    text.zeroize();
    written.map_err(NewFileError::Io)
}

/// Refuses a secret file that the group or others can read.
pub(crate) fn check_owner_only(path: &Path) -> Result<(), MasterKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| MasterKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects_wrong_lengths() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.expose(), again.expose());
        assert!(
            MasterKey::from_base64("AAAA").is_err(),
            "3 bytes is too short"
        );
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = MasterKey::from_bytes([7u8; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.to_base64()));
        assert!(!shown.contains('7'));
    }

    #[test]
    fn load_or_create_writes_an_owner_only_file_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            first.expose(),
            second.expose(),
            "second start reuses the key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn read_file_refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, MasterKey::generate().to_base64()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::read_file(&path),
            Err(MasterKeyError::Permissions { .. })
        ));
    }

    #[test]
    fn check_value_identifies_the_key_without_revealing_it() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.check_value(), a.check_value());
        assert_ne!(a.check_value(), b.check_value());
        assert!(!a.check_value().contains(&hex::encode(a.expose())));
    }
}
