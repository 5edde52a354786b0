//! The results file `echo-bench` writes and `cargo xtask bench` reads: one
//! record per line, a kind, then `key=value` fields, separated by tabs
//! (values never contain a tab or a newline; [`Record::field`] replaces
//! them with spaces).
//!
//! ```text
//! tcp_throughput<TAB>server=tokio-mt<TAB>connections=16<TAB>size=4096<TAB>...
//! ```
//!
//! Kinds and their fields are listed in the README of the report (xtask's
//! `bench::e2e` module reads them by name); unknown kinds and fields are
//! ignored by the reader, so adding one never breaks it.

use std::fmt;

/// One result line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// What was measured (`tcp_throughput`, `udp_burst`, ...).
    pub kind: String,
    /// Its fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// A record of `kind` with no fields yet.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            fields: Vec::new(),
        }
    }

    /// Adds `key=value` (tabs and newlines in the value become spaces).
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Self {
        let value = value.to_string().replace(['\t', '\n', '\r'], " ");
        self.fields.push((key.to_owned(), value));
        self
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parses one line (None for a blank line or a line without a kind).
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.trim_end_matches(['\n', '\r']).split('\t');
        let kind = parts.next()?.trim();
        if kind.is_empty() {
            return None;
        }
        let fields = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Self {
            kind: kind.to_owned(),
            fields,
        })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        for (key, value) in &self.fields {
            write!(f, "\t{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sanitises() {
        let r = Record::new("tcp_throughput")
            .field("server", "tokio-mt")
            .field("size", 4096)
            .field("message", "a\tb\nc=d");
        let line = r.to_string();
        assert_eq!(line.lines().count(), 1);
        let back = Record::parse(&line).unwrap();
        assert_eq!(back.kind, "tcp_throughput");
        assert_eq!(back.get("size"), Some("4096"));
        assert_eq!(back.get("message"), Some("a b c=d"));
        assert_eq!(back.get("absent"), None);
        assert_eq!(Record::parse("\n"), None);
    }
}
