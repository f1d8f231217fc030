//! Singer messages and [`MessageWriter`], the only writer to stdout: SCHEMA, RECORD and STATE
//! lines, buffered, flushed after each STATE and at the end (never per record).

use std::io::{self, BufWriter, Write};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The output buffer: SCHEMA, STATE and small batches of records gather in it; larger
/// batches bypass it (see [`MessageWriter::lines`]).
const BUFFER: usize = 32 * 1024;

/// Writes Singer messages as JSON lines.
pub struct MessageWriter<W: Write> {
    out: BufWriter<W>,
    line: Vec<u8>,
}

fn write_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Error::Io("stdout was closed by the target (broken pipe); stopping".into())
    } else {
        Error::io("cannot write to stdout", err)
    }
}

impl<W: Write> MessageWriter<W> {
    /// Wraps an output (stdout in the binary, a `Vec<u8>` in tests).
    pub fn new(out: W) -> Self {
        MessageWriter {
            out: BufWriter::with_capacity(BUFFER, out),
            line: Vec::with_capacity(4096),
        }
    }

    /// A SCHEMA message (before the stream's first RECORD).
    pub fn schema(
        &mut self,
        stream: &str,
        schema: &Value,
        keys: &[&str],
        bookmark_properties: &[&str],
    ) -> Result<()> {
        let mut msg = json!({
            "type": "SCHEMA",
            "stream": stream,
            "schema": schema,
            "key_properties": keys,
        });
        if !bookmark_properties.is_empty() {
            msg["bookmark_properties"] = json!(bookmark_properties);
        }
        self.value_line(&msg)
    }

    /// RECORD lines rendered by [`push_record`] (any number of whole lines). A batch larger
    /// than the buffer goes to stdout as it is, after what the buffer holds, not copied
    /// through it.
    pub fn lines(&mut self, lines: &[u8]) -> Result<()> {
        if lines.len() < BUFFER {
            return self.out.write_all(lines).map_err(write_error);
        }
        self.out.flush().map_err(write_error)?;
        self.out.get_mut().write_all(lines).map_err(write_error)
    }

    /// An ACTIVATE_VERSION message: rows of the stream from older versions are gone.
    pub fn activate_version(&mut self, stream: &str, version: i64) -> Result<()> {
        self.value_line(&json!({"type": "ACTIVATE_VERSION", "stream": stream, "version": version}))
    }

    /// A BATCH message naming finished batch files of a stream.
    pub fn batch(
        &mut self,
        stream: &str,
        compression: crate::singer::batch::Compression,
        manifest: &[String],
    ) -> Result<()> {
        self.value_line(&crate::singer::batch::batch_message(
            stream,
            compression,
            manifest,
        ))
    }

    /// A STATE message, flushed at once so a killed run leaves it behind.
    pub fn state(&mut self, value: &Value) -> Result<()> {
        self.value_line(&json!({"type": "STATE", "value": value}))?;
        self.flush()
    }

    /// Flushes buffered lines.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(write_error)
    }

    fn value_line(&mut self, msg: &Value) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, msg)
            .map_err(|e| Error::io("cannot encode message", e))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line).map_err(write_error)
    }

    /// Gives back the inner writer (tests).
    pub fn into_inner(self) -> Result<W> {
        self.out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))
    }
}

/// The start of a stream's RECORD lines, up to the record (encoded once per batch).
pub fn record_prefix(stream: &str) -> Vec<u8> {
    let mut prefix = b"{\"type\":\"RECORD\",\"stream\":".to_vec();
    // Writing a string into a Vec<u8> cannot fail.
    let _ = serde_json::to_writer(&mut prefix, stream);
    prefix.extend_from_slice(b",\"record\":");
    prefix
}

/// Appends one RECORD line to `line` (`prefix` from [`record_prefix`]), its `record` written
/// by `write_record`; when that fails, nothing is appended.
pub fn push_record<E>(
    line: &mut Vec<u8>,
    prefix: &[u8],
    time_extracted: &str,
    version: Option<i64>,
    write_record: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let start = line.len();
    line.extend_from_slice(prefix);
    if let Err(e) = write_record(line) {
        line.truncate(start);
        return Err(e);
    }
    if let Some(v) = version {
        line.extend_from_slice(b",\"version\":");
        line.extend_from_slice(v.to_string().as_bytes());
    }
    line.extend_from_slice(b",\"time_extracted\":\"");
    line.extend_from_slice(time_extracted.as_bytes());
    line.extend_from_slice(b"\"}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn messages_are_one_json_object_per_line() {
        let mut w = MessageWriter::new(Vec::new());
        w.schema("s", &json!({"type": "object"}), &["id"], &["modified"])
            .unwrap();
        let mut line = Vec::new();
        push_record(
            &mut line,
            &record_prefix("s"),
            "2024-01-01T00:00:00Z",
            None,
            |l| {
                l.extend_from_slice(br#"{"id":1}"#);
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert!(
            push_record(&mut line, &record_prefix("s"), "x", Some(1), |l| {
                l.extend_from_slice(b"{half");
                Err(())
            })
            .is_err()
        );
        w.lines(&line).unwrap();
        w.state(&json!({"bookmarks": {}})).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({"type": "SCHEMA", "stream": "s", "schema": {"type": "object"}, "key_properties": ["id"], "bookmark_properties": ["modified"]}),
                json!({"type": "RECORD", "stream": "s", "record": {"id": 1}, "time_extracted": "2024-01-01T00:00:00Z"}),
                json!({"type": "STATE", "value": {"bookmarks": {}}}),
            ]
        );
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_stdout_is_a_clean_error() {
        let mut w = MessageWriter::new(Closed);
        let err = w.state(&json!({})).unwrap_err();
        assert!(err.to_string().contains("broken pipe"), "{err}");
    }
}
