//! BATCH messages, the Meltano SDK's extension: records of a stream go to JSON-lines files
//! (gzip'd by default) under a `file://` root, and a BATCH message names each finished file.
//! The pure parts (reading `batch_config`, file names and URLs, the message) are above
//! [`Batcher`], which owns the files; stdout stays with `MessageWriter`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Records per file when `batch_size` is not set (the SDK's `DEFAULT_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: u64 = 10_000;

/// How batch files are compressed (`encoding.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

impl Compression {
    /// The name in `batch_config` and in the BATCH message.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    /// The file name extension (the SDK's `.json.gz` for gzip'd JSON lines).
    fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "json.gz",
            Compression::None => "json",
        }
    }
}

/// A validated `batch_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    pub compression: Compression,
    /// The root directory, from `storage.root` (`file://` stripped, %XX decoded); relative
    /// roots are resolved against the working directory when the [`Batcher`] opens it.
    pub root: PathBuf,
    /// `storage.prefix`: put before every file name (may name subdirectories of the root).
    pub prefix: String,
    /// Records per file at most (`batch_size`).
    pub batch_size: u64,
}

fn object<'a>(value: &'a Value, path: &str) -> std::result::Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("`{path}` must be an object"))
}

fn only_keys(
    map: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> std::result::Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "`{path}` has unknown field `{k}` (expected {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn text<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> std::result::Result<Option<&'a str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{path}.{key}` must be a string")),
    }
}

/// Reads `batch_config` (a JSON object, or its JSON text from the environment). The error
/// says which field is wrong; the caller puts the setting's origin before it.
pub fn parse_batch_config(value: &Value) -> std::result::Result<BatchConfig, String> {
    let parsed;
    let value = match value {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("must be a JSON object: {e}"))?;
            &parsed
        }
        v => v,
    };
    let top = object(value, "batch_config")?;
    only_keys(top, "batch_config", &["encoding", "storage", "batch_size"])?;
    let encoding = object(
        top.get("encoding")
            .ok_or("needs `encoding` (`{\"format\": \"jsonl\", \"compression\": \"gzip\"}`)")?,
        "encoding",
    )?;
    only_keys(encoding, "encoding", &["format", "compression"])?;
    match text(encoding, "encoding", "format")? {
        Some("jsonl") => {}
        Some(other) => {
            return Err(format!(
            "`encoding.format` must be \"jsonl\" (the only format this tap writes), got {other:?}"
        ))
        }
        None => return Err("needs `encoding.format` (\"jsonl\")".into()),
    }
    let compression = match text(encoding, "encoding", "compression")? {
        None | Some("gzip") => Compression::Gzip,
        Some("none") => Compression::None,
        Some(other) => {
            return Err(format!(
                "`encoding.compression` must be \"gzip\" or \"none\", got {other:?}"
            ))
        }
    };
    let storage = object(
        top.get("storage")
            .ok_or("needs `storage` (`{\"root\": \"file:///path/to/dir\"}`)")?,
        "storage",
    )?;
    only_keys(storage, "storage", &["root", "prefix", "params"])?;
    if let Some(params) = storage.get("params") {
        if !object(params, "storage.params")?.is_empty() {
            return Err("`storage.params` must be empty for a file:// root".into());
        }
    }
    let root = text(storage, "storage", "root")?.ok_or("needs `storage.root` (a file:// URL)")?;
    let root = root_path(root)?;
    let prefix = text(storage, "storage", "prefix")?.unwrap_or_default();
    check_prefix(prefix)?;
    let batch_size = match top.get("batch_size") {
        None | Some(Value::Null) => DEFAULT_BATCH_SIZE,
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or("`batch_size` must be a positive integer")?,
    };
    Ok(BatchConfig {
        compression,
        root,
        prefix: prefix.to_string(),
        batch_size,
    })
}

/// The directory of a `file://` root (`file:///abs` or, as the SDK's examples, `file://rel`).
fn root_path(url: &str) -> std::result::Result<PathBuf, String> {
    let Some(rest) = url.strip_prefix("file://") else {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        return Err(if scheme.is_empty() {
            format!("`storage.root` must be a file:// URL, got {url:?}")
        } else {
            format!("`storage.root` must be a file:// URL ({scheme}:// storage is not supported), got {url:?}")
        });
    };
    let rest = rest
        .strip_prefix("localhost")
        .filter(|r| r.starts_with('/'))
        .unwrap_or(rest);
    if rest.is_empty() {
        return Err(format!("`storage.root` names no directory: {url:?}"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`storage.root` must be a plain file:// path (no query or fragment), got {url:?}"
        ));
    }
    let decoded = percent_decode(rest)
        .ok_or_else(|| format!("`storage.root` has a bad %-escape: {url:?}"))?;
    if decoded.contains('\0') {
        return Err(format!("`storage.root` holds a NUL character: {url:?}"));
    }
    Ok(PathBuf::from(decoded))
}

fn check_prefix(prefix: &str) -> std::result::Result<(), String> {
    let bad = prefix.starts_with('/')
        || prefix.contains('\0')
        || Path::new(prefix)
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir));
    if bad {
        return Err(format!(
            "`storage.prefix` must stay inside the root (no leading /, no ..), got {prefix:?}"
        ));
    }
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `file://` URL of an absolute path, %-encoded as Python's `Path.as_uri` does (what
/// SDK targets read back).
pub fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The name of a stream's `part`-th file (from 1) in a run, after the SDK's
/// `{prefix}{tap}--{stream}-{sync id}-{part}.json.gz`.
pub fn file_name(cfg: &BatchConfig, run_id: &str, stream: &str, part: u64) -> String {
    format!(
        "{}tap-withings--{stream}-{run_id}-{part}.{}",
        cfg.prefix,
        cfg.compression.extension()
    )
}

/// A random id of the run (UUID v4 form), so that files of two runs never collide.
pub fn run_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| Error::io("cannot draw a batch run id", e))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The BATCH message of a stream's finished files (the SDK's `SDKBatchMessage` without its
/// unset `version`).
pub fn batch_message(stream: &str, compression: Compression, manifest: &[String]) -> Value {
    json!({
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": "jsonl", "compression": compression.name()},
        "manifest": manifest,
    })
}

/// The length of the first `n` lines of `lines` (all of it when it has fewer).
fn line_end(lines: &[u8], n: u64) -> usize {
    let mut seen = 0;
    for (i, b) in lines.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    lines.len()
}

/// Appends one raw record line (what a batch file holds: the record only, no Singer
/// envelope) to `line`, written by `write_record`; when that fails, nothing is appended.
pub fn push_raw<E>(
    line: &mut Vec<u8>,
    write_record: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let start = line.len();
    if let Err(e) = write_record(line) {
        line.truncate(start);
        return Err(e);
    }
    line.push(b'\n');
    Ok(())
}

/// A file's writer. No extra buffer: the gzip encoder writes its output in 32 KiB chunks,
/// and plain writes are whole batches of lines (an open file costs the encoder's state only,
/// for each stream at once).
enum Sink {
    Gzip(GzEncoder<File>),
    Plain(File),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Gzip(w) => w.write_all(bytes),
            Sink::Plain(w) => w.write_all(bytes),
        }
    }

    /// Ends the gzip stream, flushes and fsyncs the file.
    fn finish(self) -> io::Result<()> {
        let file = match self {
            Sink::Gzip(w) => w.finish()?,
            Sink::Plain(w) => w,
        };
        file.sync_all()
    }
}

/// A file being written: under a temporary name until it is complete.
struct Part {
    sink: Sink,
    partial: PathBuf,
    path: PathBuf,
    records: u64,
}

/// Writes each stream's records into numbered files and tells which files are complete.
/// A file is written under `<name>.partial` and renamed when finished (gzip ended, fsync'd),
/// so a killed run leaves no file under a name a BATCH message could have named.
pub struct Batcher {
    cfg: BatchConfig,
    root: PathBuf,
    run_id: String,
    open: BTreeMap<&'static str, Part>,
    /// Finished files not yet handed over, per stream.
    done: BTreeMap<&'static str, Vec<String>>,
    parts: BTreeMap<&'static str, u64>,
}

impl Batcher {
    /// Creates the root directory (a failure names the setting) and a run id.
    pub fn new(cfg: BatchConfig) -> Result<Self> {
        let root = std::path::absolute(&cfg.root).map_err(|e| {
            Error::input(format!(
                "setting `batch_config`: storage.root {}: {e}",
                cfg.root.display()
            ))
        })?;
        fs::create_dir_all(&root).map_err(|e| {
            Error::input(format!(
                "setting `batch_config`: cannot create storage.root {}: {e}",
                root.display()
            ))
        })?;
        Ok(Batcher {
            cfg,
            root,
            run_id: run_id()?,
            open: BTreeMap::new(),
            done: BTreeMap::new(),
            parts: BTreeMap::new(),
        })
    }

    /// The encoding of every file.
    pub fn compression(&self) -> Compression {
        self.cfg.compression
    }

    /// Appends whole JSON lines (`records` of them, one record each) of a stream to its
    /// open file, opening one if needed; a file is finished when it holds `batch_size`
    /// records, and the lines past that go to the next one.
    pub fn write(&mut self, stream: &'static str, lines: &[u8], records: u64) -> Result<()> {
        let (mut lines, mut records) = (lines, records);
        while records > 0 {
            if !self.open.contains_key(stream) {
                let part = self.open_part(stream)?;
                self.open.insert(stream, part);
            }
            let Some(part) = self.open.get_mut(stream) else {
                return Ok(());
            };
            let room = self.cfg.batch_size.saturating_sub(part.records).max(1);
            let (head, n) = if records <= room {
                (lines, records)
            } else {
                (&lines[..line_end(lines, room)], room)
            };
            part.sink.write_all(head).map_err(|e| {
                Error::io(
                    format!("cannot write batch file {}", part.partial.display()),
                    e,
                )
            })?;
            part.records += n;
            if part.records >= self.cfg.batch_size {
                self.close(stream)?;
            }
            lines = &lines[head.len()..];
            records -= n;
        }
        Ok(())
    }

    fn open_part(&mut self, stream: &'static str) -> Result<Part> {
        let n = self.parts.entry(stream).or_insert(0);
        *n += 1;
        let path = self
            .root
            .join(file_name(&self.cfg, &self.run_id, stream, *n));
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if let Some(dir) = partial.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        let file = File::create(&partial)
            .map_err(|e| Error::io(format!("cannot create batch file {}", partial.display()), e))?;
        let sink = match self.cfg.compression {
            // The fast level: a backfill is bound by the tap's CPU on small machines, and the
            // files are read once.
            Compression::Gzip => Sink::Gzip(GzEncoder::new(file, flate2::Compression::fast())),
            Compression::None => Sink::Plain(file),
        };
        Ok(Part {
            sink,
            partial,
            path,
            records: 0,
        })
    }

    /// Finishes a stream's open file (if any): complete on disk under its final name.
    fn close(&mut self, stream: &'static str) -> Result<()> {
        let Some(part) = self.open.remove(stream) else {
            return Ok(());
        };
        let fail = |e: io::Error| {
            Error::io(
                format!("cannot finish batch file {}", part.path.display()),
                e,
            )
        };
        part.sink.finish().map_err(fail)?;
        fs::rename(&part.partial, &part.path).map_err(fail)?;
        self.done
            .entry(stream)
            .or_default()
            .push(file_url(&part.path));
        Ok(())
    }

    /// Finishes a stream's open file and gives the URLs of all its finished files not yet
    /// handed over (empty when there are none).
    pub fn take(&mut self, stream: &'static str) -> Result<Vec<String>> {
        self.close(stream)?;
        Ok(self.done.remove(stream).unwrap_or_default())
    }

    /// Streams with an open or finished file not yet handed over.
    pub fn pending(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> =
            self.open.keys().chain(self.done.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Finished files of a stream not yet handed over (without closing the open one).
    pub fn take_done(&mut self, stream: &'static str) -> Vec<String> {
        self.done.remove(stream).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::io::Read;

    fn cfg(v: Value) -> std::result::Result<BatchConfig, String> {
        parse_batch_config(&v)
    }

    #[test]
    fn the_sdk_example_config_is_read() {
        let c = cfg(json!({
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": "file://tests/core/resources", "prefix": "test-batch-"}
        }))
        .unwrap();
        assert_eq!(
            c,
            BatchConfig {
                compression: Compression::Gzip,
                root: PathBuf::from("tests/core/resources"),
                prefix: "test-batch-".into(),
                batch_size: DEFAULT_BATCH_SIZE,
            }
        );
    }

    #[test]
    fn absolute_roots_none_compression_batch_size_and_json_text_are_read() {
        let c = cfg(json!(
            r#"{"encoding": {"format": "jsonl", "compression": "none"},
            "storage": {"root": "file:///var/tmp/my%20batches"}, "batch_size": 5}"#
        ))
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/var/tmp/my batches"));
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.batch_size, 5);
        assert_eq!(c.prefix, "");
        let c = cfg(json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file://localhost/srv/b", "params": {}}})).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/b"));
        assert_eq!(c.compression, Compression::Gzip);
    }

    #[test]
    fn bad_configs_say_which_field_is_wrong() {
        let ok_storage = json!({"root": "file:///tmp/b"});
        let cases = [
            (json!([]), "`batch_config` must be an object"),
            (json!("{nope"), "must be a JSON object"),
            (json!({"storage": ok_storage}), "needs `encoding`"),
            (
                json!({"encoding": {"format": "parquet"}, "storage": ok_storage}),
                "`encoding.format` must be \"jsonl\"",
            ),
            (
                json!({"encoding": {}, "storage": ok_storage}),
                "needs `encoding.format`",
            ),
            (
                json!({"encoding": {"format": "jsonl", "compression": "zstd"}, "storage": ok_storage}),
                "`encoding.compression` must be \"gzip\" or \"none\", got \"zstd\"",
            ),
            (
                json!({"encoding": {"format": "jsonl", "compresion": "gzip"}, "storage": ok_storage}),
                "`encoding` has unknown field `compresion`",
            ),
            (json!({"encoding": {"format": "jsonl"}}), "needs `storage`"),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {}}),
                "needs `storage.root`",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "s3://bucket/x"}}),
                "s3:// storage is not supported",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "/tmp/plain"}}),
                "must be a file:// URL",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file://"}}),
                "names no directory",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp/%zz"}}),
                "bad %-escape",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp/b", "prefix": "../up-"}}),
                "must stay inside the root",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp/b", "params": {"key": 1}}}),
                "`storage.params` must be empty",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": ok_storage, "batch_size": 0}),
                "`batch_size` must be a positive integer",
            ),
            (
                json!({"encoding": {"format": "jsonl"}, "storage": ok_storage, "batchsize": 10}),
                "`batch_config` has unknown field `batchsize`",
            ),
        ];
        for (value, want) in cases {
            let err = cfg(value.clone()).unwrap_err();
            assert!(err.contains(want), "{value}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn file_names_and_urls_follow_the_sdk() {
        let c = cfg(json!({"encoding": {"format": "jsonl"}, "storage": {"root": "file:///b", "prefix": "run-"}})).unwrap();
        assert_eq!(
            file_name(&c, "0f0e", "measures", 3),
            "run-tap-withings--measures-0f0e-3.json.gz"
        );
        assert_eq!(
            file_url(Path::new("/tmp/a b/ü#1.json.gz")),
            "file:///tmp/a%20b/%C3%BC%231.json.gz"
        );
        let id = run_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, run_id().unwrap());
    }

    #[test]
    fn raw_lines_hold_the_record_only_and_nothing_of_a_failed_one() {
        let mut line = Vec::new();
        push_raw(&mut line, |l| {
            l.extend_from_slice(br#"{"id":1}"#);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(push_raw(&mut line, |l| {
            l.extend_from_slice(b"{half");
            Err(())
        })
        .is_err());
        assert_eq!(line, b"{\"id\":1}\n");
    }

    #[test]
    fn the_message_has_the_sdk_shape() {
        assert_eq!(
            batch_message("goals", Compression::Gzip, &["file:///b/x.json.gz".into()]),
            json!({"type": "BATCH", "stream": "goals",
                   "encoding": {"format": "jsonl", "compression": "gzip"},
                   "manifest": ["file:///b/x.json.gz"]})
        );
    }

    fn gunzip(path: &str) -> String {
        let path = path.strip_prefix("file://").unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn files_split_at_batch_size_and_are_complete_when_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = format!("file://{}", dir.path().display());
        let c = cfg(json!({"encoding": {"format": "jsonl"}, "storage": {"root": root, "prefix": "sub/p-"}, "batch_size": 2})).unwrap();
        let mut b = Batcher::new(c).unwrap();
        b.write("s", b"{\"id\":1}\n", 1).unwrap();
        assert!(b.take_done("s").is_empty());
        assert_eq!(b.pending(), vec!["s"]);
        b.write("s", b"{\"id\":2}\n{\"id\":3}\n", 2).unwrap();
        // The first file filled up at 2 records (the write split across files); the second
        // is open under its temporary name.
        let done = b.take_done("s");
        assert_eq!(done.len(), 1);
        assert!(done[0].contains("/sub/p-tap-withings--s-"), "{}", done[0]);
        assert_eq!(gunzip(&done[0]), "{\"id\":1}\n{\"id\":2}\n");
        let partial = |dir: &Path| -> usize {
            fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".partial")
                })
                .count()
        };
        assert_eq!(partial(&dir.path().join("sub")), 1);
        b.write("s", b"{\"id\":4}\n{\"id\":5}\n", 2).unwrap();
        let rest = b.take("s").unwrap();
        assert_eq!(rest.len(), 2);
        assert!(rest[0].ends_with("-2.json.gz"), "{}", rest[0]);
        assert_eq!(gunzip(&rest[0]), "{\"id\":3}\n{\"id\":4}\n");
        assert!(rest[1].ends_with("-3.json.gz"), "{}", rest[1]);
        assert_eq!(gunzip(&rest[1]), "{\"id\":5}\n");
        assert_eq!(partial(&dir.path().join("sub")), 0);
        assert!(b.take("s").unwrap().is_empty());
        assert!(b.pending().is_empty());
    }

    #[test]
    fn an_unusable_root_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, "x").unwrap();
        let c = cfg(json!({"encoding": {"format": "jsonl"}, "storage": {"root": format!("file://{}/sub", file.display())}})).unwrap();
        let err = Batcher::new(c).err().unwrap().to_string();
        assert!(
            err.contains("setting `batch_config`: cannot create storage.root"),
            "{err}"
        );
    }
}
