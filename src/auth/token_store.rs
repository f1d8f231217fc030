//! The token store: a JSON file of every user's latest tokens, written atomically (temp file
//! in the same folder, fsync, rename, fsync of the folder; mode 0600) so that a rotated refresh
//! token is on disk before its access token is used. The client secret is never written.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One user's tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredUser {
    pub userid: i64,
    pub access_token: String,
    pub refresh_token: String,
    /// Epoch seconds when the access token expires.
    pub expires_at: i64,
    #[serde(default)]
    pub scope: String,
    /// Epoch seconds of the token reply.
    pub updated_at: i64,
    /// Fingerprint of the configured refresh token this chain of rotations started from, so a
    /// newer token in the config (after a new consent) is recognised.
    #[serde(default)]
    pub seeded_from: String,
}

/// The whole store file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenFile {
    pub version: u32,
    pub users: BTreeMap<String, StoredUser>,
}

/// A short, non-reversible fingerprint of a token (safe to store and log).
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Reads the store; a missing file is an empty store.
pub fn load(path: &Path) -> Result<TokenFile> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile {
                version: 1,
                ..Default::default()
            })
        }
        Err(e) => {
            return Err(Error::input(format!(
                "cannot read token store {}: {e}",
                path.display()
            )))
        }
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "cannot parse token store {}: {e} (move it away and run `tap-withings auth` again)",
            path.display()
        ))
    })
}

/// Writes the store atomically with mode 0600.
pub fn save(path: &Path, file: &TokenFile) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| {
        Error::io(
            format!("cannot create token store folder {}", dir.display()),
            e,
        )
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens.json".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let text =
        serde_json::to_vec_pretty(file).map_err(|e| Error::io("cannot encode token store", e))?;
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(&dir) {
            // Persist the rename itself; some filesystems refuse fsync on folders.
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("cannot write token store {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: i64) -> StoredUser {
        StoredUser {
            userid: n,
            access_token: format!("a{n}"),
            refresh_token: format!("r{n}"),
            expires_at: 10,
            scope: "user.metrics".into(),
            updated_at: 1,
            seeded_from: fingerprint("seed"),
        }
    }

    #[test]
    fn store_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens.json");
        assert_eq!(load(&path).unwrap().users.len(), 0);
        let mut file = TokenFile {
            version: 1,
            ..Default::default()
        };
        file.users.insert("1".into(), user(1));
        save(&path, &file).unwrap();
        assert_eq!(load(&path).unwrap(), file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn a_corrupt_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        fs::write(&path, "{half").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("cannot parse token store") && err.contains("tap-withings auth"),
            "{err}"
        );
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
        assert_ne!(fingerprint("abc"), fingerprint("abd"));
    }
}
