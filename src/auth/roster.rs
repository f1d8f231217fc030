//! Who a run authenticates, decided before any token is refreshed: the configured refresh
//! token, each `users` entry (a refresh token, or every user of a token store) and every user
//! of the main token store, resolved against the stores, with one chain per user.
//!
//! A configured token that no stored chain grew from (nor replaced) is newer than the stores
//! (a consent made elsewhere): it comes first, so that it claims its user before a stored
//! chain of the same user could be refreshed. Of several stored chains of one user (in
//! different stores) the most recently updated one is kept. Pure: the stores are given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::token_store::{fingerprint, StoredUser, TokenFile};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Where a user's session starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A stored chain (the user is known).
    Stored(StoredUser),
    /// A configured refresh token no stored chain knows: its user is known from its reply.
    Seed {
        refresh: Secret,
        fingerprint: String,
    },
}

/// One user of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Where the user comes from, for messages before its userid is known.
    pub label: String,
    /// The token store its replies are written to.
    pub store: PathBuf,
    pub start: Start,
}

impl Planned {
    pub fn userid(&self) -> Option<i64> {
        match &self.start {
            Start::Stored(u) => Some(u.userid),
            Start::Seed { .. } => None,
        }
    }
}

/// The users of a run, seeds first, and the entries that cannot be used.
#[derive(Debug, Default)]
pub struct Plan {
    pub users: Vec<Planned>,
    /// (who, why) for each entry that names no usable user.
    pub failures: Vec<(String, Error)>,
}

/// The stored chain that grew from `refresh_token` (or replaced one that did).
pub fn chain_for<'a>(file: &'a TokenFile, refresh_token: &str) -> Option<&'a StoredUser> {
    file.users.values().find(|u| u.grew_from(refresh_token))
}

/// Plans the run's users from `cfg`; `load` reads a token store.
pub fn plan(cfg: &Config, load: impl Fn(&Path) -> Result<TokenFile>) -> Plan {
    let mut p = Planner {
        load,
        files: BTreeMap::new(),
        failed_stores: Vec::new(),
        seeds: Vec::new(),
        stored: Vec::new(),
        failures: Vec::new(),
    };
    if let Some(rt) = &cfg.refresh_token {
        p.configured("the configured refresh_token".into(), rt, &cfg.token_store);
    }
    for (i, entry) in cfg.users.iter().enumerate() {
        let label = format!("users[{i}]");
        let store = entry.token_store.as_deref().unwrap_or(&cfg.token_store);
        match &entry.refresh_token {
            Some(rt) => p.configured(label, rt, store),
            None => p.whole_store(label, store, true),
        }
    }
    p.whole_store(
        format!("token store {}", cfg.token_store.display()),
        &cfg.token_store,
        false,
    );
    let mut users = p.seeds;
    users.extend(newest_per_user(p.stored));
    Plan {
        users,
        failures: p.failures,
    }
}

struct Planner<L> {
    load: L,
    files: BTreeMap<PathBuf, Result<TokenFile>>,
    failed_stores: Vec<PathBuf>,
    seeds: Vec<Planned>,
    stored: Vec<Planned>,
    failures: Vec<(String, Error)>,
}

impl<L: Fn(&Path) -> Result<TokenFile>> Planner<L> {
    fn file(&mut self, store: &Path) -> Result<TokenFile> {
        let load = &self.load;
        self.files
            .entry(store.to_path_buf())
            .or_insert_with(|| load(store))
            .clone()
    }

    fn fail(&mut self, who: String, store: &Path, e: Error) {
        self.failed_stores.push(store.to_path_buf());
        self.failures.push((who, e));
    }

    /// A configured refresh token: its stored chain, else a seed.
    fn configured(&mut self, label: String, rt: &Secret, store: &Path) {
        let file = match self.file(store) {
            Ok(f) => f,
            Err(e) => return self.fail(label, store, e),
        };
        let start = match chain_for(&file, rt.expose()) {
            Some(u) => Start::Stored(u.clone()),
            None => Start::Seed {
                refresh: rt.clone(),
                fingerprint: fingerprint(rt.expose()),
            },
        };
        let planned = Planned {
            label,
            store: store.to_path_buf(),
            start,
        };
        match planned.start {
            Start::Stored(_) => self.stored.push(planned),
            Start::Seed { .. } => self.seeds.push(planned),
        }
    }

    /// Every user of a token store; `required`: an empty store is a failure of the entry.
    fn whole_store(&mut self, label: String, store: &Path, required: bool) {
        match self.file(store) {
            // The main store's failure is named once, by the first entry that needed it.
            Err(_) if !required && self.failed_stores.iter().any(|s| s == store) => {}
            Err(e) => self.fail(label, store, e),
            Ok(f) if f.users.is_empty() && required => self.fail(
                label,
                store,
                Error::Auth(format!(
                    "token store {} holds no user: run `tap-withings auth` with that token_store to link one",
                    store.display()
                )),
            ),
            Ok(f) => self.stored.extend(f.users.into_values().map(|u| Planned {
                label: label.clone(),
                store: store.to_path_buf(),
                start: Start::Stored(u),
            })),
        }
    }
}

/// One stored chain per user: the most recently updated (the first of equals), in the order
/// the users first appear.
fn newest_per_user(stored: Vec<Planned>) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for p in stored {
        let Start::Stored(new) = &p.start else {
            continue;
        };
        match out.iter_mut().find(|o| o.userid() == Some(new.userid)) {
            Some(o) => {
                if let Start::Stored(old) = &o.start {
                    if new.updated_at > old.updated_at {
                        *o = p;
                    }
                }
            }
            None => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn stored(userid: i64, rt: &str, seed: &str, updated_at: i64) -> StoredUser {
        StoredUser {
            userid,
            access_token: format!("a{userid}"),
            refresh_token: rt.into(),
            expires_at: 0,
            scope: String::new(),
            updated_at,
            seeded_from: fingerprint(seed),
            previous_seeds: Vec::new(),
        }
    }

    fn store(users: &[StoredUser]) -> TokenFile {
        let mut f = TokenFile::default();
        for u in users {
            f.put(u.clone());
        }
        f
    }

    fn config(settings: &str) -> Config {
        let mut raw = crate::config::RawConfig::default();
        raw.add_file("c.json", settings).unwrap();
        raw.validate(&BTreeMap::new(), chrono::Utc::now()).unwrap()
    }

    /// (label, store, userid or the seed's token) of each planned user, and the failures.
    fn summary(
        cfg: &Config,
        stores: &[(&str, Result<TokenFile>)],
    ) -> (Vec<(String, String, String)>, Vec<String>) {
        let stores: BTreeMap<PathBuf, Result<TokenFile>> = stores
            .iter()
            .map(|(p, f)| (PathBuf::from(p), f.clone()))
            .collect();
        let plan = plan(cfg, |p| {
            stores.get(p).cloned().unwrap_or(Ok(TokenFile::default()))
        });
        let users = plan
            .users
            .iter()
            .map(|p| {
                let who = match &p.start {
                    Start::Stored(u) => format!("{} {}", u.userid, u.refresh_token),
                    Start::Seed { refresh, .. } => format!("seed {}", refresh.expose()),
                };
                (p.label.clone(), p.store.display().to_string(), who)
            })
            .collect();
        let failures = plan
            .failures
            .iter()
            .map(|(who, e)| format!("{who}: {e}"))
            .collect();
        (users, failures)
    }

    fn row(label: &str, store: &str, who: &str) -> (String, String, String) {
        (label.into(), store.into(), who.into())
    }

    #[test]
    fn a_configured_token_unknown_to_the_store_comes_first_and_the_stored_users_once_each() {
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "refresh_token": "new-consent", "token_store": "/m.json", "users": [{"refresh_token": "seed-2"}]}"#,
        );
        let main = store(&[stored(1, "r1", "sim-1", 5), stored(2, "r2", "seed-2", 5)]);
        let (users, failures) = summary(&cfg, &[("/m.json", Ok(main))]);
        assert_eq!(
            users,
            [
                row(
                    "the configured refresh_token",
                    "/m.json",
                    "seed new-consent"
                ),
                row("users[0]", "/m.json", "2 r2"),
                row("token store /m.json", "/m.json", "1 r1"),
            ]
        );
        assert!(failures.is_empty());
    }

    #[test]
    fn a_configured_token_older_than_a_later_consent_gives_way_to_the_stored_chain() {
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "refresh_token": "before-consent", "token_store": "/m.json"}"#,
        );
        let mut main = store(&[stored(1, "r1", "before-consent", 5)]);
        main.put(stored(1, "r1-consent", "consent", 6));
        let (users, _) = summary(&cfg, &[("/m.json", Ok(main.clone()))]);
        assert_eq!(
            users,
            [row(
                "the configured refresh_token",
                "/m.json",
                "1 r1-consent"
            )]
        );
        // The stored chain's own current token is recognised too.
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "refresh_token": "r1-consent", "token_store": "/m.json"}"#,
        );
        assert_eq!(summary(&cfg, &[("/m.json", Ok(main))]).0.len(), 1);
    }

    #[test]
    fn a_store_entry_opens_every_user_it_holds_and_the_newest_chain_of_a_user_wins() {
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "token_store": "/m.json", "users": [{"token_store": "/x.json"}]}"#,
        );
        let x = store(&[stored(1, "x1", "a", 9), stored(3, "x3", "b", 1)]);
        let main = store(&[stored(1, "m1", "a", 5), stored(3, "m3", "b", 2)]);
        let (users, failures) = summary(&cfg, &[("/m.json", Ok(main)), ("/x.json", Ok(x))]);
        assert_eq!(
            users,
            [
                row("users[0]", "/x.json", "1 x1"),
                row("token store /m.json", "/m.json", "3 m3"),
            ]
        );
        assert!(failures.is_empty());
    }

    #[test]
    fn an_empty_or_unreadable_store_fails_its_entry_only() {
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "token_store": "/m.json", "users": [{"token_store": "/missing.json"}, {"token_store": "/bad.json"}, {"refresh_token": "t", "token_store": "/bad.json"}]}"#,
        );
        let main = store(&[stored(1, "m1", "a", 5)]);
        let (users, failures) = summary(
            &cfg,
            &[
                ("/m.json", Ok(main)),
                (
                    "/bad.json",
                    Err(Error::input("cannot parse token store /bad.json")),
                ),
            ],
        );
        assert_eq!(users, [row("token store /m.json", "/m.json", "1 m1")]);
        assert_eq!(
            failures,
            [
                "users[0]: token store /missing.json holds no user: run `tap-withings auth` with that token_store to link one",
                "users[1]: cannot parse token store /bad.json",
                "users[2]: cannot parse token store /bad.json",
            ]
        );
    }

    #[test]
    fn an_unreadable_main_store_is_named_once() {
        let bad = || Err(Error::input("cannot parse token store /m.json"));
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "refresh_token": "t", "token_store": "/m.json"}"#,
        );
        let (users, failures) = summary(&cfg, &[("/m.json", bad())]);
        assert!(users.is_empty());
        assert_eq!(
            failures,
            ["the configured refresh_token: cannot parse token store /m.json"]
        );
        let cfg = config(r#"{"client_id": "i", "client_secret": "s", "token_store": "/m.json"}"#);
        assert_eq!(
            summary(&cfg, &[("/m.json", bad())]).1,
            ["token store /m.json: cannot parse token store /m.json"]
        );
    }
}
