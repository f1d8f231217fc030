//! Request parameters (query string and form body) and their validation.

use crate::clock;
use crate::data::render::Sel;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// An envelope error: `{"status": status, "body": {}, "error": error}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: i64,
    pub error: String,
}

impl ApiError {
    pub fn new(status: i64, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
        }
    }

    /// 503 for a missing parameter.
    pub fn missing(name: &str) -> Self {
        ApiError::new(503, format!("Invalid Params: missing {name}"))
    }

    /// 503 for a malformed parameter.
    pub fn invalid(name: &str) -> Self {
        ApiError::new(503, format!("Invalid Params: invalid {name}"))
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds the pairs of an urlencoded string to `out` (later pairs win).
pub fn parse_urlencoded(s: &str, out: &mut BTreeMap<String, String>) {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parsed request parameters.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// A non-empty parameter value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An integer parameter (503 when malformed).
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::invalid(name)))
            .transpose()
    }

    /// A required integer parameter.
    pub fn required_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// A `YYYY-MM-DD` parameter (503 when malformed).
    pub fn ymd(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(name)
            .map(|v| clock::parse_ymd(v.trim()).ok_or_else(|| ApiError::invalid(name)))
            .transpose()
    }

    /// `offset` (row index, default 0).
    pub fn offset(&self) -> Result<usize, ApiError> {
        match self.int("offset")? {
            None => Ok(0),
            Some(v) if v >= 0 => Ok(v as usize),
            Some(_) => Err(ApiError::invalid("offset")),
        }
    }

    /// A comma-separated list of integers.
    pub fn int_list(&self, name: &str) -> Result<Option<Vec<i64>>, ApiError> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<i64>().map_err(|_| ApiError::invalid(name)))
                    .collect()
            })
            .transpose()
    }

    /// `data_fields` as a selection; `default` when absent.
    pub fn data_fields(&self, default: &[&str]) -> Sel {
        match self.get("data_fields") {
            Some(v) => Sel::only(v.split(',').map(str::trim).filter(|s| !s.is_empty())),
            None => Sel::only(default.iter().copied()),
        }
    }
}

/// The date filter of modules taking a YMD pair or `lastupdate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DateFilter {
    Ymd(NaiveDate, NaiveDate),
    LastUpdate(i64),
    /// Both kinds were sent: the API answers zero rows.
    Nothing,
}

/// `startdateymd`+`enddateymd` or `lastupdate` (both: zero rows; neither: 503).
pub fn ymd_or_lastupdate(p: &Params) -> Result<DateFilter, ApiError> {
    let has_ymd = p.has("startdateymd") || p.has("enddateymd");
    let lastupdate = p.int("lastupdate")?;
    match (has_ymd, lastupdate) {
        (true, Some(_)) => Ok(DateFilter::Nothing),
        (false, Some(t)) => Ok(DateFilter::LastUpdate(t)),
        (false, None) => Err(ApiError::new(
            503,
            "Invalid Params: missing startdateymd/enddateymd or lastupdate",
        )),
        (true, None) => {
            let start = p
                .ymd("startdateymd")?
                .ok_or_else(|| ApiError::missing("startdateymd"))?;
            let end = p
                .ymd("enddateymd")?
                .ok_or_else(|| ApiError::missing("enddateymd"))?;
            Ok(DateFilter::Ymd(start, end))
        }
    }
}

/// One page of an ordered result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub start: usize,
    pub end: usize,
    /// Rows remain after this page.
    pub more: bool,
    /// `more` and `offset` as the reply states them (lying_more: a full page says no more, 0).
    pub said_more: bool,
    pub said_offset: usize,
}

/// Pages `total` rows from `offset`.
pub fn page(total: usize, offset: usize, size: usize, lying_more: bool) -> Page {
    let start = offset.min(total);
    let end = start.saturating_add(size.max(1)).min(total);
    let more = end < total;
    let honest = more && !lying_more;
    Page {
        start,
        end,
        more,
        said_more: honest,
        said_offset: if honest { end } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        let mut m = BTreeMap::new();
        parse_urlencoded(s, &mut m);
        Params(m)
    }

    #[test]
    fn urlencoded_decoding() {
        let p = params("a=1&b=x%2Cy+z&c=&d=%zz&e=%41");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x,y z"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("d"), Some("%zz"));
        assert_eq!(p.get("e"), Some("A"));
        assert_eq!(decode("%4"), "%4");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn ymd_or_lastupdate_rules() {
        assert_eq!(
            ymd_or_lastupdate(&params("lastupdate=5")),
            Ok(DateFilter::LastUpdate(5))
        );
        assert_eq!(
            ymd_or_lastupdate(&params(
                "lastupdate=5&startdateymd=2024-01-01&enddateymd=2024-01-02"
            )),
            Ok(DateFilter::Nothing)
        );
        assert_eq!(ymd_or_lastupdate(&params("")).unwrap_err().status, 503);
        assert_eq!(
            ymd_or_lastupdate(&params("startdateymd=2024-01-01"))
                .unwrap_err()
                .status,
            503
        );
        assert_eq!(
            ymd_or_lastupdate(&params("startdateymd=2024-1-1&enddateymd=2024-01-02")).unwrap_err(),
            ApiError::invalid("startdateymd")
        );
        assert_eq!(
            params("lastupdate=x").int("lastupdate").unwrap_err().status,
            503
        );
    }

    #[test]
    fn paging_shapes() {
        assert_eq!(
            page(450, 0, 200, false),
            Page {
                start: 0,
                end: 200,
                more: true,
                said_more: true,
                said_offset: 200
            }
        );
        assert_eq!(
            page(450, 400, 200, false),
            Page {
                start: 400,
                end: 450,
                more: false,
                said_more: false,
                said_offset: 0
            }
        );
        assert_eq!(
            page(450, 200, 200, true),
            Page {
                start: 200,
                end: 400,
                more: true,
                said_more: false,
                said_offset: 0
            }
        );
        assert_eq!(page(10, 50, 200, false).start, 10);
    }
}
