//! The one gate for text a server wrote (an envelope's `error`, a token endpoint's refusal, a
//! redirect's `error`, a transport error, a redirect's host) on its way to a log line or an
//! error message: every secret value the process knows is replaced by `[redacted]`, control
//! and line-breaking characters are escaped (`\n`, `\u{1b}`), so a reply cannot forge a log
//! line or drive the terminal, and the text is cut to [`MAX_SERVER_TEXT`] characters.
//!
//! The secrets are a process-wide registry: every [`super::Secret`] registers its
//! value when created, and so does every token read from a token store or a token reply.

use std::sync::RwLock;

/// The longest server text kept (in characters, after escaping); longer ones end in `…`.
pub const MAX_SERVER_TEXT: usize = 200;

/// Values shorter than this are not redacted from server text: no real credential is this
/// short (Withings' secrets and tokens are 40-64 characters), and replacing a short word
/// everywhere would garble the messages.
pub const MIN_SECRET_LEN: usize = 8;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Every secret value of the process, longest first (a secret inside another is replaced as
/// part of the longer one).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a secret value to the registry (values shorter than [`MIN_SECRET_LEN`] excepted).
pub fn register(value: &str) {
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    // A panic while holding this lock cannot leave the list inconsistent: keep using it.
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if secrets.iter().any(|s| s == value) {
        return;
    }
    secrets.push(value.to_string());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Server text made safe for a log line or an error message: the known secrets redacted,
/// control characters escaped, the length bounded.
pub fn server_text(text: &str) -> String {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sanitize(text, &secrets)
}

/// `text` with every secret value the process knows replaced by [`REDACTED`] (borrowed
/// when it holds none): the last gate of every log line and error message on stderr, behind
/// [`server_text`] at the places server text comes in.
pub fn known_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if secrets
        .iter()
        .any(|s| !s.is_empty() && text.contains(s.as_str()))
    {
        std::borrow::Cow::Owned(redact(text, &secrets))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Standard error through [`known_secrets`]: the log subscriber writes each event with one
/// `write_all`, so a secret is never split between two writes of one line.
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = known_secrets(&text);
        std::io::stderr().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// [`server_text`] with the secrets given (pure).
pub fn sanitize(text: &str, secrets: &[String]) -> String {
    truncate(&escape(&redact(text, secrets)), MAX_SERVER_TEXT)
}

/// `text` with every occurrence of each secret (longest first) replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Characters that end a line, drive a terminal or reorder text, escaped; the rest as is.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
/// bidirectional formatting characters (which can make a line read as another).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// At most `max` characters: a longer text is cut to `max` and ends in `…`.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_line_on_stderr_loses_the_registered_secrets() {
        register("a-registered-secret-for-the-stderr-gate");
        assert_eq!(
            known_secrets("value a-registered-secret-for-the-stderr-gate in a sync error"),
            "value [redacted] in a sync error"
        );
        assert!(matches!(
            known_secrets("nothing secret here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn secrets(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn control_characters_are_escaped_so_no_line_can_be_forged() {
        let cases = [
            ("plain text", "plain text"),
            ("a\nERROR forged", "a\\nERROR forged"),
            ("cr\r\nlf", "cr\\r\\nlf"),
            ("\u{1b}[2Kcleared", "\\u{1b}[2Kcleared"),
            (
                "nul\0bell\u{7}del\u{7f}c1\u{85}",
                "nul\\u{0}bell\\u{7}del\\u{7f}c1\\u{85}",
            ),
            ("tab\there", "tab\\there"),
            (
                "sep\u{2028}bidi\u{202e}x\u{2066}",
                "sep\\u{2028}bidi\\u{202e}x\\u{2066}",
            ),
            ("ünïcödé ✓", "ünïcödé ✓"),
        ];
        for (raw, expected) in cases {
            assert_eq!(escape(raw), expected, "{raw:?}");
            assert!(!sanitize(raw, &[]).contains(['\n', '\r', '\u{1b}']));
        }
    }

    #[test]
    fn long_texts_are_cut_with_an_ellipsis_on_a_character_boundary() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
        let long = "x".repeat(5_000);
        let out = sanitize(&long, &[]);
        assert_eq!(out.chars().count(), MAX_SERVER_TEXT + 1);
        assert!(out.ends_with('…'));
        // Escapes count: a reply of newlines stays bounded.
        assert_eq!(
            sanitize(&"\n".repeat(1_000), &[]).chars().count(),
            MAX_SERVER_TEXT + 1
        );
    }

    #[test]
    fn every_known_secret_is_redacted_longest_first_before_cutting() {
        let known = secrets(&["refresh-token-1234", "token-1234"]);
        assert_eq!(
            redact("a refresh-token-1234 b token-1234 c", &known),
            "a [redacted] b [redacted] c"
        );
        // A secret the cut would split is redacted first, so no prefix of it survives.
        let secret = "s".repeat(40);
        let text = format!("{}{secret}", "x".repeat(190));
        let out = sanitize(&text, std::slice::from_ref(&secret));
        assert!(out.ends_with("[redacted]"), "{out}");
        assert!(!out.contains("ssssss"));
        // Redacted before escaping: a secret next to a newline goes too.
        assert_eq!(
            sanitize(&format!("x\n{secret}\n"), &[secret]),
            "x\\n[redacted]\\n"
        );
    }

    #[test]
    fn registered_secrets_are_redacted_from_server_text_and_short_values_are_not_secrets() {
        register("registered-secret-value-1");
        register("short");
        register("registered-secret-value-1");
        assert_eq!(
            server_text("error: registered-secret-value-1\nshort"),
            "error: [redacted]\\nshort"
        );
        let _made = crate::secret::Secret::new("a-secret-made-elsewhere");
        assert_eq!(
            server_text("echo a-secret-made-elsewhere"),
            "echo [redacted]"
        );
    }
}
