//! CSV answers. A metric endpoint answers `text/csv` when the request's
//! `Accept` header prefers it to JSON; errors stay JSON. An endpoint
//! describes its answer as a [`Table`] (header and rows of [`Cell`]s) and
//! returns [`Answer::negotiate`]; quoting is the `csv` crate's (a field is
//! quoted when it holds a comma, a quote or a line break).
//!
//! Numbers are written so that a reader gets back the exact `f64` (the
//! shortest text that round-trips), with whole numbers and no exponent:
//! `3`, `0.25`, `33.33`. The dashboard writes the numbers it draws the same
//! way, so its CSV downloads are byte-equal to these answers.

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// One value of a CSV row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Number(f64),
    Int(i64),
    /// A missing value: an empty field.
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Self::Empty)
    }
}

/// A number as CSV text: whole numbers without a fraction, others as the
/// shortest round-tripping decimal; NaN and infinities as an empty field.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        String::new()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or
/// a tab or carriage return first) gets a leading `'`, as OWASP advises for
/// CSV injection: labels, intents and categories come from users' data.
/// Numbers are written as numbers and never touched.
pub fn neutralise(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Self::Text(s) => neutralise(s),
            Self::Number(v) => number(*v),
            Self::Int(v) => v.to_string(),
            Self::Empty => String::new(),
        }
    }
}

/// A CSV table: a header line, then one line per row, `\n`-terminated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Extra response headers (e.g. the JSON answer's `nextToken`).
    pub headers: Vec<(HeaderName, String)>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds a row; it must have one cell per header column.
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.header.len(), "row width");
        self.rows.push(row);
    }

    /// The CSV text.
    pub fn render(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        // Writing to memory cannot fail; the fields are valid UTF-8.
        w.write_record(&self.header).expect("write to memory");
        for row in &self.rows {
            w.write_record(row.iter().map(Cell::text))
                .expect("write to memory");
        }
        String::from_utf8(w.into_inner().expect("flush to memory")).expect("UTF-8 fields")
    }
}

impl IntoResponse for Table {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
                (header::VARY, HeaderValue::from_static("accept")),
            ],
            self.render(),
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

/// The quality (`q`) the `Accept` header gives a media type and how
/// specifically it names it (3: `type/subtype`, 2: `type/*`, 1: `*/*`);
/// the most specific range wins. `None` when nothing matches.
fn quality(accept: &str, media: &str) -> Option<(u8, f32)> {
    let (kind, _) = media.split_once('/')?;
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let specificity = if name == media {
            3
        } else if name == format!("{kind}/*") {
            2
        } else if name == "*/*" || name == "*" {
            1
        } else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best
}

/// Whether the request asks for CSV: it names `text/csv` (or `text/*`)
/// with a quality above 0 and above JSON's. Browsers' and HTTP clients'
/// defaults (`application/json, text/plain, */*`; `text/html, *; q=.2,
/// */*; q=.2`) reach CSV only through `*/*`, which means "anything" and
/// stays JSON, as does a tie and a request without `Accept`.
pub fn wants_csv(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let Some((specificity, csv)) = quality(&accept, "text/csv") else {
        return false;
    };
    if specificity < 2 || csv <= 0.0 {
        return false;
    }
    match quality(&accept, "application/json") {
        Some((_, json)) => csv > json,
        None => true,
    }
}

/// An answer as JSON or, if the request prefers it, as CSV.
#[derive(Debug)]
pub enum Answer<T> {
    Json(T),
    Csv(Table),
}

impl<T> Answer<T> {
    /// Picks the form the request asked for; `table` runs only for CSV.
    pub fn negotiate(headers: &HeaderMap, value: T, table: impl FnOnce(&T) -> Table) -> Self {
        if wants_csv(headers) {
            Self::Csv(table(&value))
        } else {
            Self::Json(value)
        }
    }
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Json(v) => {
                let mut r = Json(v).into_response();
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept"));
                r
            }
            Self::Csv(t) => t.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation() {
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("TEXT/CSV; charset=utf-8")));
        assert!(wants_csv(&accept("text/*")));
        assert!(wants_csv(&accept("application/json;q=0.5, text/csv")));
        assert!(!wants_csv(&accept("application/json")));
        assert!(!wants_csv(&accept("*/*")));
        assert!(!wants_csv(&accept("text/csv;q=0")));
        assert!(!wants_csv(&accept("text/csv;q=0.4, application/json")));
        // Common clients' defaults stay JSON: axios, Java, browsers.
        assert!(!wants_csv(&accept("application/json, text/plain, */*")));
        assert!(!wants_csv(&accept(
            "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
        )));
        assert!(!wants_csv(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        // A tie is JSON.
        assert!(!wants_csv(&accept("text/csv, application/json")));
    }

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        let mut t = Table::new(["label", "value"]);
        t.push(vec!["=HYPERLINK(\"x\")".into(), Cell::Number(-1.5)]);
        t.push(vec!["@SUM(A1)".into(), Cell::Int(-2)]);
        t.push(vec!["-2+3".into(), "plain".into()]);
        assert_eq!(
            t.render(),
            "label,value\n\"'=HYPERLINK(\"\"x\"\")\",-1.5\n'@SUM(A1),-2\n'-2+3,plain\n"
        );
    }

    #[test]
    fn numbers_round_trip_without_exponents() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-2.0), "-2");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(33.33), "33.33");
        assert_eq!(number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number(f64::NAN), "");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn fields_are_quoted_when_needed() {
        let mut t = Table::new(["name", "value"]);
        t.push(vec!["plain".into(), Cell::Int(1)]);
        t.push(vec!["a, b".into(), Cell::Number(0.5)]);
        t.push(vec!["say \"hi\"".into(), Cell::Empty]);
        t.push(vec!["two\nlines".into(), Cell::from(None::<f64>)]);
        assert_eq!(
            t.render(),
            "name,value\nplain,1\n\"a, b\",0.5\n\"say \"\"hi\"\"\",\n\"two\nlines\",\n"
        );
    }
}
