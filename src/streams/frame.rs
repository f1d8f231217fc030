//! Finds the elements of one list of a JSON reply as its chunks arrive, so that a page can be
//! read element by element without holding the whole reply: the list at `body.<key>` of a
//! `{"status":..,"body":{..}}` envelope. Everything around the list (the envelope, the other
//! body fields) is kept, with the list left empty, as the *skeleton*, to be read whole once
//! the reply is complete. Pure: no I/O, no parsing of values (the caller parses each element
//! and the skeleton with serde, which validates them).
//!
//! Until the list is found every byte is kept, so a caller that does not want to read this
//! reply element by element (another shape, a failure status) can still take it whole
//! ([`ListFramer::into_bytes`]).

use std::ops::Range;

/// Why a reply cannot be framed: it is not JSON of the expected nesting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// What a [`ListFramer::push`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More bytes are needed (the list has not started, or elements are incomplete).
    More,
    /// The list has just started: [`ListFramer::head`] is the reply before it, closed.
    /// Returned once; push again (an empty chunk will do) to go on.
    ListStarts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the list: every byte is kept.
    Head,
    /// Inside the list.
    List,
    /// After the list: the rest goes to the skeleton.
    Tail,
}

/// Where the list's element scan stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Between {
    /// Just after `[`: an element or `]`.
    Open,
    /// After an element: `,` or `]`.
    AfterElement,
    /// After `,`: an element.
    AfterComma,
}

/// An open container of the head, with the key being read or last read (kept for the top
/// two levels only: that is all the path needs).
#[derive(Debug, Clone)]
struct Frame {
    object: bool,
    /// In an object: the next string is a key.
    expect_key: bool,
    key: Vec<u8>,
}

/// The scanner of one reply (see the module).
#[derive(Debug)]
pub struct ListFramer {
    key: &'static [u8],
    phase: Phase,
    /// Unconsumed bytes: in the head, all of them; in the list, from the first byte of the
    /// element being read (or the scan point); in the tail, none (they go to `skeleton`).
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    pos: usize,
    // String state of the scan.
    in_string: bool,
    escaped: bool,
    // The head's containers.
    stack: Vec<Frame>,
    /// In the head: whether the string being read is a key of a frame of the top two levels.
    reading_key: bool,
    /// The head once the list started (through its `[`).
    head_len: usize,
    // The list's scan.
    between: Between,
    /// The element being read: where it starts in `buf`, its nesting depth so far.
    element: Option<(usize, usize)>,
    /// A scalar element (number, literal) is being read: it ends before `,`, `]` or blank.
    scalar: bool,
    /// Elements complete in `buf`, not yet taken.
    done: Vec<Range<usize>>,
    /// The head, once moved out of `buf` (when the first element is taken).
    skeleton: Vec<u8>,
    /// The list's `]` and what follows it.
    tail: Vec<u8>,
}

/// The bytes that open or close a container or a string.
static STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 5 {
        table[b"\"{}[]"[i] as usize] = true;
        i += 1;
    }
    table
};

fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ListFramer {
    /// A framer for the list at `body.<key>`.
    pub fn new(key: &'static str) -> Self {
        ListFramer {
            key: key.as_bytes(),
            phase: Phase::Head,
            buf: Vec::new(),
            pos: 0,
            in_string: false,
            escaped: false,
            stack: Vec::new(),
            reading_key: false,
            head_len: 0,
            between: Between::Open,
            element: None,
            scalar: false,
            done: Vec::new(),
            skeleton: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Whether the list has started (from then on, bytes are no longer all kept).
    pub fn in_list(&self) -> bool {
        self.phase != Phase::Head
    }

    /// Whether the list has ended (every element of it has been found).
    pub fn list_closed(&self) -> bool {
        self.phase == Phase::Tail
    }

    /// How many complete elements wait to be taken.
    pub fn pending(&self) -> usize {
        self.done.len()
    }

    /// Scans `chunk` (appended to what came before). Stops early, once, when the list starts.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Step, Malformed> {
        match self.phase {
            Phase::Tail => {
                self.tail.extend_from_slice(chunk);
                return Ok(Step::More);
            }
            _ => self.buf.extend_from_slice(chunk),
        }
        if self.phase == Phase::Head {
            if self.scan_head()? {
                return Ok(Step::ListStarts);
            }
            if self.phase == Phase::Head {
                return Ok(Step::More);
            }
        }
        if self.phase == Phase::List {
            self.scan_list()?;
        }
        Ok(Step::More)
    }

    /// The reply up to the list's `[`, with `]` and what closes its open containers added:
    /// a complete JSON text with the list empty (only after [`Step::ListStarts`]).
    pub fn head(&self) -> Vec<u8> {
        let mut head = self.buf[..self.head_len.min(self.buf.len())].to_vec();
        if self.phase == Phase::List && self.head_len > 0 {
            head.push(b']');
            for frame in self.stack.iter().rev() {
                head.push(if frame.object { b'}' } else { b']' });
            }
        }
        head
    }

    /// Every byte pushed so far, when none has been given away yet (the list has not
    /// started, or has just started); None once elements were taken.
    pub fn into_bytes(mut self) -> Option<Vec<u8>> {
        // The head is at the start of `buf` until the first element is taken.
        let whole = self.phase == Phase::Head || self.head_len > 0;
        whole.then(|| {
            self.buf.append(&mut self.tail);
            self.buf
        })
    }

    /// The complete elements found since the last [`ListFramer::consume`], in order.
    pub fn elements(&self) -> impl Iterator<Item = &[u8]> {
        self.done.iter().map(|range| &self.buf[range.clone()])
    }

    /// Forgets the elements given by [`ListFramer::elements`] (their bytes are dropped).
    pub fn consume(&mut self) {
        if !self.done.is_empty() {
            self.done.clear();
            self.compact();
        }
    }

    /// Drops the bytes before the element being read (or the scan point).
    fn compact(&mut self) {
        if self.skeleton.is_empty() && self.head_len > 0 {
            // The head moves to the skeleton the first time bytes are dropped.
            self.skeleton.extend_from_slice(&self.buf[..self.head_len]);
        }
        let keep_from = self.element.map_or(self.pos, |(start, _)| start);
        self.buf.drain(..keep_from);
        self.pos -= keep_from;
        if let Some((start, _)) = &mut self.element {
            *start -= keep_from;
        }
        self.head_len = 0;
    }

    /// The reply with the list emptied (elements not taken are dropped), once the reply is
    /// complete: to be read as JSON, which checks the envelope is whole. An error when the
    /// reply ends inside the list (cut off) or had none.
    pub fn finish(mut self) -> Result<Vec<u8>, Malformed> {
        match self.phase {
            Phase::Tail => {
                self.done.clear();
                self.compact();
                self.skeleton.append(&mut self.tail);
                Ok(self.skeleton)
            }
            Phase::List => Err(Malformed("the reply ends inside its list")),
            Phase::Head => Err(Malformed("the reply has no list")),
        }
    }

    /// A byte inside a string: true when it is the closing quote.
    fn string_byte(&mut self, b: u8) -> bool {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            return true;
        }
        false
    }

    /// Scans the head; true when the list starts (at `pos`, just after its `[`).
    fn scan_head(&mut self) -> Result<bool, Malformed> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if self.in_string {
                if self.string_byte(b) {
                    self.reading_key = false;
                    continue;
                }
                if self.reading_key {
                    if let Some(top) = self.stack.last_mut() {
                        top.key.push(b);
                    }
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    let depth = self.stack.len();
                    if let Some(top) = self.stack.last_mut() {
                        if top.object && top.expect_key {
                            top.expect_key = false;
                            top.key.clear();
                            self.reading_key = depth <= 2;
                        }
                    }
                }
                b'{' | b'[' => {
                    if b == b'[' && self.at_list() {
                        self.phase = Phase::List;
                        self.head_len = self.pos;
                        self.between = Between::Open;
                        return Ok(true);
                    }
                    if self.stack.is_empty() && b == b'[' {
                        return Err(Malformed("the reply is not an object"));
                    }
                    self.stack.push(Frame {
                        object: b == b'{',
                        expect_key: b == b'{',
                        key: Vec::new(),
                    });
                }
                b'}' | b']' => {
                    let Some(top) = self.stack.pop() else {
                        return Err(Malformed("a container closes that was not open"));
                    };
                    if top.object != (b == b'}') {
                        return Err(Malformed("a container closes with the wrong bracket"));
                    }
                }
                b',' => {
                    if let Some(top) = self.stack.last_mut() {
                        top.expect_key = top.object;
                    }
                }
                _ if self.stack.is_empty() && !blank(b) => {
                    return Err(Malformed("the reply is not an object"));
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// Whether a `[` read now opens the list: the value of `body.<key>` of the root object.
    fn at_list(&self) -> bool {
        matches!(self.stack.as_slice(), [root, body]
            if root.object && root.key == b"body" && body.object && !body.expect_key
                && body.key == self.key)
    }

    /// Scans the list's elements; at its `]` the rest becomes the tail.
    fn scan_list(&mut self) -> Result<(), Malformed> {
        while self.pos < self.buf.len() {
            if let Some((start, depth)) = self.element {
                // Straight to the next byte that matters: in a string, its end or an escape;
                // in a container, a quote or a bracket.
                let rest = &self.buf[self.pos..];
                let next = if self.in_string && !self.escaped {
                    memchr::memchr2(b'"', b'\\', rest)
                } else if !self.in_string && !self.scalar {
                    rest.iter().position(|b| STRUCTURAL[usize::from(*b)])
                } else {
                    Some(0)
                };
                let Some(skip) = next else {
                    self.pos = self.buf.len();
                    break;
                };
                self.pos += skip;
                let b = self.buf[self.pos];
                self.pos += 1;
                if self.in_string {
                    if self.string_byte(b) && depth == 0 {
                        self.end_element(start, self.pos);
                    }
                    continue;
                }
                if self.scalar {
                    if b == b',' || b == b']' || blank(b) {
                        self.pos -= 1;
                        self.end_element(start, self.pos);
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.element = Some((start, depth + 1)),
                    b'}' | b']' => {
                        if depth == 1 {
                            self.end_element(start, self.pos);
                        } else {
                            self.element = Some((start, depth - 1));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            match (b, self.between) {
                _ if blank(b) => {}
                (b']', Between::Open | Between::AfterElement) => {
                    // The elements not yet taken stay where they are, before the `]`.
                    self.phase = Phase::Tail;
                    self.pos -= 1;
                    self.tail = self.buf.split_off(self.pos);
                    return Ok(());
                }
                (b',', Between::AfterElement) => self.between = Between::AfterComma,
                (b',' | b']', _) => return Err(Malformed("the list has a misplaced `,` or `]`")),
                (_, Between::AfterElement) => {
                    return Err(Malformed("the list's elements are not separated by `,`"))
                }
                _ => {
                    let start = self.pos - 1;
                    match b {
                        b'{' | b'[' => self.element = Some((start, 1)),
                        b'"' => {
                            self.in_string = true;
                            self.element = Some((start, 0));
                        }
                        b'}' => return Err(Malformed("the list has a misplaced `}`")),
                        _ => {
                            self.scalar = true;
                            self.element = Some((start, 0));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn end_element(&mut self, start: usize, end: usize) {
        self.done.push(start..end);
        self.element = None;
        self.scalar = false;
        self.between = Between::AfterElement;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Frames `text` pushed in chunks of `size` bytes: the elements, and the skeleton (or
    /// the error, or "head" when the list never started or "whole" when bytes were kept).
    fn frame(text: &str, size: usize) -> (Vec<String>, Result<String, Malformed>) {
        let mut f = ListFramer::new("measuregrps");
        let mut elements = Vec::new();
        let mut starts = 0;
        for chunk in text.as_bytes().chunks(size.max(1)) {
            let mut step = f.push(chunk);
            while step == Ok(Step::ListStarts) {
                starts += 1;
                let head: Value = serde_json::from_slice(&f.head()).expect("the head is JSON");
                assert!(head["body"]["measuregrps"]
                    .as_array()
                    .is_some_and(Vec::is_empty));
                step = f.push(&[]);
            }
            if let Err(e) = step {
                return (elements, Err(e));
            }
            elements.extend(f.elements().map(|e| String::from_utf8(e.to_vec()).unwrap()));
            f.consume();
        }
        assert!(starts <= 1);
        let result = f.finish().map(|s| String::from_utf8(s).unwrap());
        (elements, result)
    }

    /// Every split of `text` gives the same elements and skeleton as the whole text does.
    fn every_split(text: &str) -> (Vec<String>, Result<String, Malformed>) {
        let whole = frame(text, text.len());
        for size in 1..text.len() {
            assert_eq!(frame(text, size), whole, "chunks of {size} bytes");
        }
        whole
    }

    #[test]
    fn elements_and_skeleton_whatever_the_chunks() {
        let text = r#" {"status":0,"body":{"updatetime":1,"timezone":"Europe/Paris","measuregrps":[
            {"grpid":1,"measures":[{"type":1,"value":2}],"comment":"a ] } [ \" {"},
            {"grpid":2,"measures":[]} ,"text",12,null,[1,[2]]
        ],"more":1,"offset":2}} "#;
        let (elements, skeleton) = every_split(text);
        assert_eq!(
            elements,
            [
                r#"{"grpid":1,"measures":[{"type":1,"value":2}],"comment":"a ] } [ \" {"}"#,
                r#"{"grpid":2,"measures":[]}"#,
                r#""text""#,
                "12",
                "null",
                "[1,[2]]",
            ]
        );
        let skeleton: Value = serde_json::from_str(&skeleton.unwrap()).unwrap();
        assert_eq!(
            skeleton,
            serde_json::json!({"status":0,"body":{"updatetime":1,"timezone":"Europe/Paris",
                "measuregrps":[],"more":1,"offset":2}})
        );
    }

    #[test]
    fn only_the_list_at_body_key_is_framed() {
        // A `measuregrps` elsewhere (nested deeper, or in a string, or a key named in a
        // value) is part of the head.
        let text = r#"{"x":{"body":{"measuregrps":[1]}},"note":"\"measuregrps\":[","body":{"a":[{"measuregrps":[2]}],"k":"measuregrps","measuregrps":[3,4]}}"#;
        let (elements, skeleton) = every_split(text);
        assert_eq!(elements, ["3", "4"]);
        let skeleton: Value = serde_json::from_str(&skeleton.unwrap()).unwrap();
        assert_eq!(skeleton["body"]["a"][0]["measuregrps"][0], 2);
        assert_eq!(skeleton["x"]["body"]["measuregrps"][0], 1);
    }

    #[test]
    fn an_empty_list_and_a_reply_without_one() {
        let (elements, skeleton) = every_split(r#"{"status":0,"body":{"measuregrps":[ ]}}"#);
        assert!(elements.is_empty());
        assert_eq!(
            skeleton.unwrap(),
            r#"{"status":0,"body":{"measuregrps":[]}}"#
        );
        // No list: the bytes are kept whole.
        for text in [
            r#"{"status":601,"body":{"wait_seconds":5}}"#,
            r#"{"status":0,"body":{"measuregrps":{}}}"#,
        ] {
            let mut f = ListFramer::new("measuregrps");
            assert_eq!(f.push(text.as_bytes()), Ok(Step::More));
            assert!(!f.in_list());
            assert_eq!(f.into_bytes().unwrap(), text.as_bytes());
            assert_eq!(frame(text, 3).1, Err(Malformed("the reply has no list")));
        }
    }

    #[test]
    fn the_bytes_are_kept_whole_until_an_element_is_taken() {
        let text = br#"{"status":0,"body":{"measuregrps":[{"grpid":1}],"more":0}}"#;
        let mut f = ListFramer::new("measuregrps");
        assert_eq!(f.push(text), Ok(Step::ListStarts));
        assert_eq!(f.head(), br#"{"status":0,"body":{"measuregrps":[]}}"#);
        assert_eq!(f.into_bytes().unwrap(), text);
        let mut f = ListFramer::new("measuregrps");
        assert_eq!(f.push(text), Ok(Step::ListStarts));
        assert_eq!(f.push(&[]), Ok(Step::More));
        assert_eq!(f.elements().count(), 1);
        f.consume();
        assert!(f.into_bytes().is_none(), "an element was given away");
    }

    #[test]
    fn html_a_cut_reply_and_bad_separators_are_malformed_or_not_framed() {
        let mut f = ListFramer::new("measuregrps");
        assert_eq!(
            f.push(b"<html>"),
            Err(Malformed("the reply is not an object"))
        );
        let (elements, end) =
            every_split(r#"{"status":0,"body":{"measuregrps":[{"grpid":1},{"grpid":"#);
        assert_eq!(elements, [r#"{"grpid":1}"#]);
        assert_eq!(end, Err(Malformed("the reply ends inside its list")));
        // Cut after the list: the skeleton is not JSON (its reader refuses it).
        let (_, end) = frame(r#"{"status":0,"body":{"measuregrps":[1]"#, 4);
        assert!(serde_json::from_str::<Value>(&end.unwrap()).is_err());
        for bad in [r#"[1 2]"#, r#"[1,,2]"#, r#"[,1]"#, r#"[1,]"#, r#"[}]"#] {
            let text = format!(r#"{{"status":0,"body":{{"measuregrps":{bad}}}}}"#);
            assert!(frame(&text, 1).1.is_err(), "{bad}");
        }
    }
}
