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
    /// Fingerprints of configured refresh tokens whose chains this one replaced (a later
    /// consent, or a newer configured token): such a token in the config is older than the
    /// stored chain, which wins over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_seeds: Vec<String>,
}

impl StoredUser {
    /// Whether this chain started from the configured token of fingerprint `fp`, replaced a
    /// chain that did, or holds that very token now.
    pub fn grew_from(&self, refresh_token: &str) -> bool {
        self.grew_from_seed(&fingerprint(refresh_token)) || self.refresh_token == refresh_token
    }

    /// Whether the configured token of fingerprint `fp` started this chain or one it replaced.
    pub fn grew_from_seed(&self, fp: &str) -> bool {
        self.seeded_from == fp || self.previous_seeds.iter().any(|s| s == fp)
    }
}

/// At most this many earlier seeds are remembered per user.
pub const MAX_PREVIOUS_SEEDS: usize = 16;

/// The whole store file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenFile {
    pub version: u32,
    pub users: BTreeMap<String, StoredUser>,
}

impl TokenFile {
    /// Stores `user`'s tokens (replacing the user's entry); when its chain is another than
    /// the stored one, the stored chain's seed is remembered as superseded.
    pub fn put(&mut self, mut user: StoredUser) -> StoredUser {
        let key = user.userid.to_string();
        let mut seeds = self
            .users
            .get(&key)
            .map(|old| {
                let mut s = old.previous_seeds.clone();
                s.push(old.seeded_from.clone());
                s
            })
            .unwrap_or_default();
        seeds.append(&mut user.previous_seeds);
        user.previous_seeds = recent_seeds(seeds, &user.seeded_from);
        self.version = 1;
        self.users.insert(key, user.clone());
        user
    }

    /// Remembers that the configured token of fingerprint `fp` is older than `userid`'s
    /// stored chain; false when the user is not stored or already knows it.
    pub fn supersede(&mut self, userid: i64, fp: &str) -> bool {
        match self.users.get_mut(&userid.to_string()) {
            Some(u) if !u.grew_from_seed(fp) => {
                let mut seeds = std::mem::take(&mut u.previous_seeds);
                seeds.push(fp.to_string());
                u.previous_seeds = recent_seeds(seeds, &u.seeded_from);
                true
            }
            _ => false,
        }
    }
}

/// The newest distinct non-empty seeds, oldest first, without `current`, at most
/// [`MAX_PREVIOUS_SEEDS`].
fn recent_seeds(seeds: Vec<String>, current: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in seeds.into_iter().rev() {
        if !s.is_empty() && s != current && !out.contains(&s) {
            out.push(s);
        }
    }
    out.truncate(MAX_PREVIOUS_SEEDS);
    out.reverse();
    out
}

/// A short, non-reversible fingerprint of a token (safe to store and log).
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Reads the store; a missing file is an empty store. A store that others than its owner may
/// read is warned about and made private (mode 0600), as ssh does with its keys.
pub fn load(path: &Path) -> Result<TokenFile> {
    make_private(path);
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
    let file: TokenFile = serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "cannot parse token store {}: {e} (move it away and run `tap-withings auth` again)",
            path.display()
        ))
    })?;
    // Stored tokens are secrets of this process: a server echoing one back is redacted.
    for user in file.users.values() {
        crate::secret::redact::register(&user.access_token);
        crate::secret::redact::register(&user.refresh_token);
    }
    Ok(file)
}

/// How long a process waits for another one's hold on a token store (a token refresh with
/// its retries) before it gives up with a clear error.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// An exclusive advisory lock (`flock`) on a token store, held by one process, and one task of
/// a process, at a time: the lock file `.<store name>.lock` beside the store. Every path that
/// rotates or writes tokens (a sync's refresh, `auth`, `auth --refresh`) takes it from
/// re-reading the store, across the token call, through the rename of the new store, so two
/// processes on one store are serialised instead of losing a rotation. Released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs::File,
}

/// The lock file of a store.
pub fn lock_path(store: &Path) -> PathBuf {
    let name = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens.json".into());
    store.with_file_name(format!(".{name}.lock"))
}

/// Takes the store's lock, waiting (asynchronously) while another process or task holds it,
/// at most [`LOCK_WAIT`].
pub async fn lock(store: &Path) -> Result<StoreLock> {
    // Beside the file the store's bytes are in, whichever path (a symlink) names it.
    let path = lock_path(&resolved(store));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("cannot create token store folder {}", dir.display()),
                e,
            )
        })?;
    }
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(|e| {
        Error::io(
            format!("cannot open token store lock {}", path.display()),
            e,
        )
    })?;
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        match try_lock(&file) {
            Ok(true) => return Ok(StoreLock { _file: file }),
            Ok(false) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot lock token store {}", store.display()),
                    e,
                ))
            }
        }
        let waited = started.elapsed();
        if waited >= LOCK_WAIT {
            return Err(Error::Io(format!(
                "token store {} stayed locked by another process for {} s (a token refresh of another tap-withings run); try again when it has ended",
                store.display(),
                waited.as_secs()
            )));
        }
        if !told && waited >= std::time::Duration::from_secs(2) {
            told = true;
            tracing::info!(
                store = %store.display(),
                "Waiting for another process's token refresh on this token store."
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn try_lock(file: &fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; no memory is shared with the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

/// Elsewhere (no `flock` binding here) the store is written atomically but not locked
/// across processes.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn try_lock(_file: &fs::File) -> std::io::Result<bool> {
    Ok(true)
}

/// The stored chain another process rotated under us: the entry grown from `seed` (the
/// user's, when known) whose refresh token is no longer `refresh`.
pub fn rotated_elsewhere(
    file: &TokenFile,
    userid: Option<i64>,
    seed: &str,
    refresh: &str,
) -> Option<StoredUser> {
    file.users
        .values()
        .find(|u| {
            userid.is_none_or(|id| id == u.userid)
                && !seed.is_empty()
                && u.seeded_from == seed
                && u.refresh_token != refresh
        })
        .cloned()
}

#[cfg(unix)]
fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let fixed = fs::set_permissions(path, fs::Permissions::from_mode(0o600)).is_ok();
        tracing::warn!(
            store = %path.display(),
            "The token store was readable by others (mode {mode:03o}); {}",
            if fixed { "made it private (0600)" } else { "could not change it: fix its mode" }
        );
    }
}

#[cfg(not(unix))]
fn make_private(_path: &Path) {}

/// Where the store's bytes live: a symlink at `token_store` is written through to its target
/// (replacing the link by a file would leave the target with a dead token).
fn resolved(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::read_link(path) {
            Ok(target) if target.is_absolute() => resolved(&target),
            Ok(target) => resolved(&path.parent().unwrap_or(Path::new(".")).join(target)),
            Err(_) => path.to_path_buf(),
        },
        _ => path.to_path_buf(),
    }
}

/// Writes the store atomically with mode 0600: a temp file of a random name beside it, created
/// new (never an existing file or a symlink planted there) and private from the start,
/// fsynced, renamed over the store.
pub fn save(path: &Path, file: &TokenFile) -> Result<()> {
    let path = &resolved(path);
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
    let mut nonce = [0u8; 8];
    let _ = getrandom::getrandom(&mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp-{}-{nonce}", std::process::id()));
    let text =
        serde_json::to_vec_pretty(file).map_err(|e| Error::io("cannot encode token store", e))?;
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
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
    use pretty_assertions::assert_eq;

    fn user(n: i64) -> StoredUser {
        StoredUser {
            userid: n,
            access_token: format!("a{n}"),
            refresh_token: format!("r{n}"),
            expires_at: 10,
            scope: "user.metrics".into(),
            updated_at: 1,
            seeded_from: fingerprint("seed"),
            previous_seeds: Vec::new(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_holder_of_a_store_lock_at_a_time_across_descriptions() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens.json");
        let held = lock(&store).await.unwrap();
        assert!(lock_path(&store).exists());
        // A second holder (another open description, as another process has) waits.
        let second = tokio::time::timeout(std::time::Duration::from_millis(200), lock(&store));
        assert!(second.await.is_err(), "the store is locked while held");
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), lock(&store));
        assert!(again.await.is_ok(), "free once released");
    }

    #[test]
    fn a_chain_rotated_elsewhere_is_found_by_its_seed() {
        let mut file = TokenFile::default();
        let mut u = user(1);
        u.refresh_token = "newer".into();
        file.users.insert("1".into(), u);
        let seed = fingerprint("seed");
        assert!(rotated_elsewhere(&file, Some(1), &seed, "older").is_some());
        assert!(rotated_elsewhere(&file, None, &seed, "older").is_some());
        assert!(rotated_elsewhere(&file, Some(1), &seed, "newer").is_none());
        assert!(rotated_elsewhere(&file, Some(2), &seed, "older").is_none());
        // Another chain of the user (a newer consent in the config) is not adopted.
        assert!(rotated_elsewhere(&file, Some(1), &fingerprint("other"), "older").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_store_is_written_through_and_a_readable_one_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real/tokens.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        let link = dir.path().join("tokens.json");
        std::os::unix::fs::symlink("real/tokens.json", &link).unwrap();
        let mut file = TokenFile::default();
        file.users.insert("1".into(), user(1));
        save(&link, &file).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(load(&real).unwrap(), file, "written through to the target");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&link).unwrap(), file);
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
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
    fn a_replaced_chain_leaves_its_seed_behind_as_superseded() {
        let mut file = TokenFile::default();
        let first = file.put(user(1));
        assert!(first.previous_seeds.is_empty());
        // A rotation of the same chain remembers nothing new.
        let rotated = file.put(StoredUser {
            refresh_token: "r1b".into(),
            ..user(1)
        });
        assert!(rotated.previous_seeds.is_empty());
        // A new consent replaces the chain: its seed (and the older ones) are kept.
        let consent = file.put(StoredUser {
            seeded_from: fingerprint("consent"),
            ..user(1)
        });
        assert_eq!(consent.previous_seeds, vec![fingerprint("seed")]);
        assert!(consent.grew_from("seed") && consent.grew_from("consent"));
        assert!(consent.grew_from("r1") && !consent.grew_from("other"));
        // Going back to the first chain swaps the roles.
        let back = file.put(user(1));
        assert_eq!(back.previous_seeds, vec![fingerprint("consent")]);
        assert!(file.supersede(1, &fingerprint("other")));
        assert!(!file.supersede(1, &fingerprint("other")), "known already");
        assert!(!file.supersede(1, &fingerprint("seed")), "the current seed");
        assert!(!file.supersede(2, &fingerprint("other")), "no such user");
        assert_eq!(
            file.users["1"].previous_seeds,
            vec![fingerprint("consent"), fingerprint("other")]
        );
    }

    #[test]
    fn previous_seeds_are_bounded_and_keep_the_newest() {
        let seeds: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let kept = recent_seeds(seeds, "s39");
        assert_eq!(kept.len(), MAX_PREVIOUS_SEEDS);
        assert_eq!(kept.first().map(String::as_str), Some("s23"));
        assert_eq!(kept.last().map(String::as_str), Some("s38"));
        assert_eq!(
            recent_seeds(vec!["a".into(), "".into(), "b".into(), "a".into()], "b"),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn stores_without_previous_seeds_still_load() {
        let text = r#"{"version": 1, "users": {"1": {"userid": 1, "access_token": "a", "refresh_token": "r", "expires_at": 1, "updated_at": 1}}}"#;
        let file: TokenFile = serde_json::from_str(text).unwrap();
        assert!(file.users["1"].previous_seeds.is_empty());
        assert!(!serde_json::to_string(&file)
            .unwrap()
            .contains("previous_seeds"));
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
        assert_ne!(fingerprint("abc"), fingerprint("abd"));
    }
}
