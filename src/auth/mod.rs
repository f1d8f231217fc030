//! OAuth: the on-disk token store, the per-user session that refreshes and rotates tokens, and
//! the `tap-withings auth` command.

pub mod consent;
pub mod refresh;
pub mod roster;
pub mod session;
pub mod token_store;

/// What to do when Withings refuses a stored or configured refresh token: advice that works
/// where it fires. Against withings-sim (a loopback `api_url`) the store holds tokens of an
/// earlier simulator, which issues its tokens anew on every start; against Withings the
/// account must be linked again with `tap-withings auth` (which needs `redirect_uri`).
pub fn refused_refresh_advice(store: &std::path::Path, api_url: &str) -> String {
    if crate::config::api_url_is_loopback(api_url) {
        format!(
            "the token store {} holds tokens this server does not know (withings-sim issues new ones on every start): delete it and run again (against Withings: link the account again with `tap-withings auth`)",
            store.display()
        )
    } else {
        format!(
            "the token store {} holds no token Withings still accepts (lost, replaced by an old copy, or rotated by a run that kept another store): link the account again with `tap-withings auth --config ...` (with `redirect_uri` set, see the README)",
            store.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_for_a_refused_refresh_token_works_where_it_fires() {
        let store = std::path::Path::new("/var/lib/t/tokens.json");
        let sim = refused_refresh_advice(store, "http://127.0.0.1:8787");
        assert!(
            sim.contains("/var/lib/t/tokens.json") && sim.contains("delete it"),
            "{sim}"
        );
        let real = refused_refresh_advice(store, "https://wbsapi.withings.net");
        assert!(
            real.contains("tap-withings auth") && real.contains("redirect_uri"),
            "{real}"
        );
        assert!(!real.contains("delete it"));
    }
}
