//! Reading an INF file the way Windows' INF parser reads it.
//!
//! What it implements (each point from "General Syntax Rules for INF Files",
//! <https://learn.microsoft.com/windows-hardware/drivers/install/general-syntax-rules-for-inf-files>,
//! and "INF Strings Section",
//! <https://learn.microsoft.com/windows-hardware/drivers/install/inf-strings-section>):
//!
//! - encodings: UTF-16LE with its byte-order mark, or 8-bit text read as
//!   ANSI (Windows-1252); a UTF-8 byte-order mark is read but reported
//!   (InfVerif 1003 accepts only ANSI or UTF-16LE); UTF-16 without a BOM or
//!   big-endian is an error;
//! - CRLF, LF or CR line ends;
//! - `;` starts a comment unless inside a "quoted string" or a `%strkey%`
//!   token;
//! - a `\` as the last character before the end of the line (or before a
//!   comment) continues the entry on the next line; only the last backslash
//!   is the continuator (`dir\\` + newline is `dir\` continued);
//! - `[name]` starts a section; sections with the same name (compared
//!   without regard to case) are merged;
//! - an entry is `key = value, value, ...` or `value, value, ...`; `=` and
//!   `,` separate only outside quotes; leading and trailing blanks of each
//!   field are dropped; inside quotes `""` is one `"`; a field may join
//!   quoted and unquoted pieces (`"Parameters\"%Name%`);
//! - `%strkey%` is replaced from the `[Strings]` section; `%%` is one `%`;
//!   a numeric token such as `%13%` is a directory id (DIRID), kept as is.

use std::collections::HashMap;

/// How the file's bytes were decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 8-bit text, read as Windows-1252 (ANSI). Pure ASCII is this too.
    Ansi,
    /// UTF-8 with a byte-order mark.
    Utf8Bom,
    /// UTF-16 little-endian with a byte-order mark.
    Utf16Le,
}

/// A finding of the reader or of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// 1-based line; 0 when the finding concerns the whole file.
    pub line: usize,
    pub severity: Severity,
    /// Short rule name, as listed in `docs/infverify.md`.
    pub rule: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Diag {
    pub fn error(line: usize, rule: &'static str, message: impl Into<String>) -> Self {
        Diag {
            line,
            severity: Severity::Error,
            rule,
            message: message.into(),
        }
    }

    pub fn warning(line: usize, rule: &'static str, message: impl Into<String>) -> Self {
        Diag {
            line,
            severity: Severity::Warning,
            rule,
            message: message.into(),
        }
    }
}

/// One piece of a field: quoted text is taken literally except for `%`
/// substitution; plain text has had its outer blanks trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Plain(String),
    Quoted(String),
}

/// One comma-separated field of an entry, before string substitution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    pub pieces: Vec<Piece>,
}

impl Field {
    /// The field's text without substitution (quotes removed).
    pub fn raw(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Plain(s) | Piece::Quoted(s) => s.as_str(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.iter().all(|p| match p {
            Piece::Plain(s) | Piece::Quoted(s) => s.is_empty(),
        })
    }
}

/// One entry (line) of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    /// The part before `=`, if the entry has one.
    pub key: Option<Field>,
    pub values: Vec<Field>,
}

/// A section, with the entries of every same-named section merged in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name as first written.
    pub name: String,
    /// Line of the first header with this name.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed INF.
#[derive(Debug, Clone)]
pub struct Inf {
    pub encoding: Encoding,
    pub sections: Vec<Section>,
    index: HashMap<String, usize>,
    /// Findings of the reader itself (encoding, syntax).
    pub diags: Vec<Diag>,
}

impl Inf {
    /// The section named `name` (case-insensitive).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.sections[i])
    }
}

// === decoding ===

/// Windows-1252's 0x80..=0x9F; the other bytes map to the same code point.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}', '\u{017D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{9D}', '\u{017E}', '\u{0178}',
];

fn decode_cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

/// Encodes `text` back into `encoding` (for the stamped copy of a template).
/// Characters ANSI cannot hold are an error.
pub fn encode(text: &str, encoding: Encoding) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Utf16Le => {
            let mut out = vec![0xFF, 0xFE];
            for unit in text.encode_utf16() {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            Ok(out)
        }
        Encoding::Utf8Bom => {
            let mut out = vec![0xEF, 0xBB, 0xBF];
            out.extend_from_slice(text.as_bytes());
            Ok(out)
        }
        Encoding::Ansi => text
            .chars()
            .map(|c| {
                if let Some(i) = CP1252_HIGH.iter().position(|&h| h == c) {
                    Ok(0x80 + i as u8)
                } else if (c as u32) < 0x100 && !(0x80..=0x9F).contains(&(c as u32)) {
                    Ok(c as u8)
                } else {
                    Err(format!("`{c}` cannot be written in an ANSI INF"))
                }
            })
            .collect(),
    }
}

/// Decodes an INF's bytes. Findings about the encoding go to `diags`.
pub fn decode(bytes: &[u8], diags: &mut Vec<Diag>) -> Option<(String, Encoding)> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if rest.len() % 2 != 0 {
            diags.push(Diag::error(
                0,
                "encoding",
                "UTF-16LE file with an odd number of bytes (InfVerif 1003)",
            ));
            return None;
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return match String::from_utf16(&units) {
            Ok(text) => Some((text, Encoding::Utf16Le)),
            Err(_) => {
                diags.push(Diag::error(
                    0,
                    "encoding",
                    "invalid UTF-16LE (unpaired surrogate) (InfVerif 1003)",
                ));
                None
            }
        };
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        diags.push(Diag::error(
            0,
            "encoding",
            "UTF-16 big-endian: an INF must be ANSI or UTF-16LE (InfVerif 1003)",
        ));
        return None;
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        diags.push(Diag::warning(
            0,
            "encoding",
            "UTF-8 with a byte-order mark: InfVerif documents only ANSI and UTF-16LE \
             (code 1003); save it as UTF-16LE to be safe",
        ));
        return match String::from_utf8(rest.to_vec()) {
            Ok(text) => Some((text, Encoding::Utf8Bom)),
            Err(_) => {
                diags.push(Diag::error(
                    0,
                    "encoding",
                    "UTF-8 byte-order mark but invalid UTF-8 (InfVerif 1003)",
                ));
                None
            }
        };
    }
    if bytes.contains(&0) {
        diags.push(Diag::error(
            0,
            "encoding",
            "NUL bytes without a byte-order mark (UTF-16 without BOM?): an INF must be ANSI \
             or UTF-16LE with a BOM (InfVerif 1003)",
        ));
        return None;
    }
    if !bytes.is_ascii() && std::str::from_utf8(bytes).is_ok() {
        diags.push(Diag::warning(
            0,
            "encoding",
            "non-ASCII UTF-8 without a byte-order mark: Windows reads it as ANSI (code page), \
             not UTF-8; save it as UTF-16LE with a BOM (InfVerif 1003)",
        ));
    }
    Some((decode_cp1252(bytes), Encoding::Ansi))
}

// === lines ===

/// A logical line: the content before any comment, continuation lines joined.
struct LogicalLine {
    line: usize,
    content: String,
}

/// Cuts the comment off one physical line and says whether it continues.
/// Returns (content, continues, unterminated-quote).
fn strip_comment(line: &str) -> (String, bool, bool) {
    let trimmed = line.trim_start();
    // A section header may contain `;` (a quoted-style section name such as
    // `[;; Std Mfg ]`): the header runs to its `]`.
    if trimmed.starts_with('[')
        && let Some(close) = trimmed.find(']')
    {
        let (head, rest) = trimmed.split_at(close + 1);
        let rest_content = strip_comment(rest).0;
        return (format!("{head}{rest_content}"), false, false);
    }
    let chars: Vec<char> = line.chars().collect();
    let mut in_quote = false;
    let mut end = chars.len();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_quote {
            if c == '"' {
                if chars.get(i + 1) == Some(&'"') {
                    i += 2;
                    continue;
                }
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '%' {
            // A %strkey% token may contain `;`: skip to its closing `%`.
            if let Some(len) = chars[i + 1..].iter().position(|&c| c == '%' || c == '"')
                && chars[i + 1 + len] == '%'
            {
                i += len + 2;
                continue;
            }
        } else if c == ';' {
            end = i;
            break;
        }
        i += 1;
    }
    let content: String = chars[..end].iter().collect();
    let trimmed_end = content.trim_end();
    if !in_quote && trimmed_end.ends_with('\\') {
        return (
            trimmed_end[..trimmed_end.len() - 1].to_string(),
            true,
            false,
        );
    }
    (content, false, in_quote)
}

fn logical_lines(text: &str, diags: &mut Vec<Diag>) -> Vec<LogicalLine> {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut pending: Option<LogicalLine> = None;
    for (index, physical) in normalized.split('\n').enumerate() {
        let number = index + 1;
        let (content, continues, open_quote) = strip_comment(physical);
        if open_quote {
            diags.push(Diag::error(
                number,
                "syntax",
                "unterminated quoted string (InfVerif 1002)",
            ));
        }
        let joined = match pending.take() {
            Some(mut previous) => {
                previous.content.push_str(&content);
                previous
            }
            None => LogicalLine {
                line: number,
                content,
            },
        };
        if continues {
            pending = Some(joined);
        } else {
            out.push(joined);
        }
    }
    if let Some(last) = pending {
        out.push(last);
    }
    out
}

/// Splits an entry's text into its key (if any) and fields.
fn split_entry(content: &str) -> (Option<Field>, Vec<Field>) {
    let mut fields: Vec<Field> = Vec::new();
    let mut key: Option<Field> = None;
    let mut current = Field::default();
    let mut plain = String::new();
    let mut chars = content.chars().peekable();
    let flush_plain = |plain: &mut String, field: &mut Field| {
        if !plain.is_empty() {
            field.pieces.push(Piece::Plain(std::mem::take(plain)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush_plain(&mut plain, &mut current);
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            quoted.push('"');
                        }
                        Some('"') | None => break,
                        Some(other) => quoted.push(other),
                    }
                }
                current.pieces.push(Piece::Quoted(quoted));
            }
            '=' if key.is_none() && fields.is_empty() => {
                flush_plain(&mut plain, &mut current);
                key = Some(trim_field(std::mem::take(&mut current)));
            }
            ',' => {
                flush_plain(&mut plain, &mut current);
                fields.push(trim_field(std::mem::take(&mut current)));
            }
            other => plain.push(other),
        }
    }
    flush_plain(&mut plain, &mut current);
    fields.push(trim_field(current));
    (key, fields)
}

/// Drops blanks around the field (outside quotes) and blank-only plain
/// pieces between quoted ones.
fn trim_field(field: Field) -> Field {
    let count = field.pieces.len();
    let pieces = field
        .pieces
        .into_iter()
        .enumerate()
        .filter_map(|(i, piece)| match piece {
            Piece::Plain(s) => {
                let mut s = s.as_str();
                if i == 0 {
                    s = s.trim_start();
                }
                if i + 1 == count {
                    s = s.trim_end();
                }
                if s.trim().is_empty() && count > 1 {
                    None
                } else {
                    Some(Piece::Plain(s.to_string()))
                }
            }
            quoted => Some(quoted),
        })
        .collect();
    Field { pieces }
}

/// Parses an INF from its bytes (tests; the checker decodes first to read a
/// template as if stamped). Never fails: findings are in `diags`; an
/// undecodable file has no sections.
#[cfg(test)]
pub fn parse(bytes: &[u8]) -> Inf {
    let mut diags = Vec::new();
    let Some((text, encoding)) = decode(bytes, &mut diags) else {
        return Inf {
            encoding: Encoding::Ansi,
            sections: Vec::new(),
            index: HashMap::new(),
            diags,
        };
    };
    parse_str(&text, encoding, diags)
}

/// Parses already-decoded text; `diags` holds the decoder's findings.
pub fn parse_str(text: &str, encoding: Encoding, mut diags: Vec<Diag>) -> Inf {
    let mut inf = parse_text(text, &mut diags);
    inf.encoding = encoding;
    inf.diags = diags;
    inf
}

fn parse_text(text: &str, diags: &mut Vec<Diag>) -> Inf {
    let mut sections: Vec<Section> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut current: Option<usize> = None;
    for logical in logical_lines(text, diags) {
        let content = logical.content.trim();
        if content.is_empty() {
            continue;
        }
        if let Some(rest) = content.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                diags.push(Diag::error(
                    logical.line,
                    "syntax",
                    "section header without `]` (InfVerif 1002)",
                ));
                current = None;
                continue;
            };
            let name = rest[..close].trim();
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(name);
            if !rest[close + 1..].trim().is_empty() {
                diags.push(Diag::error(
                    logical.line,
                    "syntax",
                    format!(
                        "text after the section header [{name}]: `{}` (InfVerif 1002)",
                        rest[close + 1..].trim()
                    ),
                ));
            }
            if name.is_empty() {
                diags.push(Diag::error(
                    logical.line,
                    "syntax",
                    "empty section name (InfVerif 1002)",
                ));
            }
            let key = name.to_ascii_lowercase();
            let position = *index.entry(key).or_insert_with(|| {
                sections.push(Section {
                    name: name.to_string(),
                    line: logical.line,
                    entries: Vec::new(),
                });
                sections.len() - 1
            });
            current = Some(position);
            continue;
        }
        let Some(section) = current else {
            diags.push(Diag::error(
                logical.line,
                "syntax",
                format!("entry outside any section: `{content}` (InfVerif 1002)"),
            ));
            continue;
        };
        let (key, values) = split_entry(content);
        sections[section].entries.push(Entry {
            line: logical.line,
            key,
            values,
        });
    }
    Inf {
        encoding: Encoding::Ansi,
        sections,
        index,
        diags: Vec::new(),
    }
}

// === strings ===

/// The string tables: the undecorated `[Strings]` and each `[Strings.LLLL]`.
#[derive(Debug, Default)]
pub struct Strings {
    /// (section name, lower-case key -> value), undecorated first.
    pub tables: Vec<(String, HashMap<String, String>)>,
}

impl Strings {
    pub fn from_inf(inf: &Inf) -> Self {
        let mut tables: Vec<(String, HashMap<String, String>)> = Vec::new();
        for section in &inf.sections {
            let lower = section.name.to_ascii_lowercase();
            if lower != "strings" && !lower.starts_with("strings.") {
                continue;
            }
            let mut table = HashMap::new();
            for entry in &section.entries {
                let Some(key) = &entry.key else { continue };
                // A value is everything after `=`, commas included.
                let value = entry
                    .values
                    .iter()
                    .map(Field::raw)
                    .collect::<Vec<_>>()
                    .join(",");
                table.insert(key.raw().to_ascii_lowercase(), value);
            }
            if lower == "strings" {
                tables.insert(0, (section.name.clone(), table));
            } else {
                tables.push((section.name.clone(), table));
            }
        }
        Strings { tables }
    }

    /// The value Windows would use on a machine whose locale matches no
    /// localized section: the undecorated table, else the first one.
    pub fn lookup(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.tables
            .iter()
            .find_map(|(_, t)| t.get(&key))
            .map(String::as_str)
    }

    /// The tables that do not define `key`.
    pub fn missing_in(&self, key: &str) -> Vec<&str> {
        let key = key.to_ascii_lowercase();
        self.tables
            .iter()
            .filter(|(_, t)| !t.contains_key(&key))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// A `%token%` found while expanding a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not defined in the named string sections (all of them if none exist).
    Undefined { token: String, missing: Vec<String> },
    /// A lone `%` with no closing `%`.
    Unpaired,
}

/// Replaces `%strkey%` tokens and `%%` in one piece of text. Numeric tokens
/// (`%13%`) are directory ids and stay as written.
pub fn expand_text(text: &str, strings: &Strings, problems: &mut Vec<TokenProblem>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            problems.push(TokenProblem::Unpaired);
            out.push('%');
            rest = after;
            continue;
        };
        let token = &after[..end];
        if token.is_empty() {
            out.push('%');
        } else if token.chars().all(|c| c.is_ascii_digit()) {
            out.push('%');
            out.push_str(token);
            out.push('%');
        } else if let Some(value) = strings.lookup(token) {
            let missing = strings.missing_in(token);
            if !missing.is_empty() {
                problems.push(TokenProblem::Undefined {
                    token: token.to_string(),
                    missing: missing.iter().map(|s| s.to_string()).collect(),
                });
            }
            out.push_str(value);
        } else {
            problems.push(TokenProblem::Undefined {
                token: token.to_string(),
                missing: if strings.tables.is_empty() {
                    vec!["Strings".to_string()]
                } else {
                    strings.tables.iter().map(|(n, _)| n.clone()).collect()
                },
            });
            out.push('%');
            out.push_str(token);
            out.push('%');
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Expands a whole field (quoted pieces are expanded too: `"%%x%%"` is `%x%`).
pub fn expand(field: &Field, strings: &Strings, problems: &mut Vec<TokenProblem>) -> String {
    field
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Plain(s) | Piece::Quoted(s) => expand_text(s, strings, problems),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(inf: &Inf, section: &str) -> Vec<(Option<String>, Vec<String>)> {
        inf.section(section)
            .unwrap()
            .entries
            .iter()
            .map(|e| {
                (
                    e.key.as_ref().map(Field::raw),
                    e.values.iter().map(Field::raw).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn comments_quotes_and_fields() {
        let inf = parse(
            b"; leading comment\r\n[Version]\r\nSignature = \"$Windows NT$\" ; trailing\r\n\
              [A]\r\nHKR, \"Parameters\" , \"Semi;colon\",0x00010001, 40007\r\n\
              key = \"say \"\"hi\"\"\"\r\n",
        );
        assert!(inf.diags.is_empty(), "{:?}", inf.diags);
        assert_eq!(
            values(&inf, "version"),
            vec![(Some("Signature".into()), vec!["$Windows NT$".into()])]
        );
        assert_eq!(
            values(&inf, "A"),
            vec![
                (
                    None,
                    vec![
                        "HKR".into(),
                        "Parameters".into(),
                        "Semi;colon".into(),
                        "0x00010001".into(),
                        "40007".into()
                    ]
                ),
                (Some("key".into()), vec!["say \"hi\"".into()]),
            ]
        );
    }

    #[test]
    fn continuation_joins_lines_and_keeps_the_first_line_number() {
        let inf = parse(
            b"[S]\nCopyFiles = \"SomeDirectory\\\"\\ ; comment\n,SomeFile\nX = dir\\\\\n,next\n",
        );
        let section = inf.section("s").unwrap();
        assert_eq!(section.entries[0].line, 2);
        assert_eq!(
            values(&inf, "s"),
            vec![
                (
                    Some("CopyFiles".into()),
                    vec!["SomeDirectory\\".into(), "SomeFile".into()]
                ),
                (Some("X".into()), vec!["dir\\".into(), "next".into()]),
            ]
        );
        assert_eq!(section.entries[1].line, 4);
    }

    #[test]
    fn sections_are_case_insensitive_and_merged() {
        let inf = parse(b"[Files]\na.sys\n[other]\nx=1\n[FILES]\nb.sys\n");
        let files = inf.section("files").unwrap();
        assert_eq!(files.entries.len(), 2);
        assert_eq!(files.line, 1);
        assert_eq!(inf.sections.len(), 2);
    }

    #[test]
    fn utf16le_with_bom_and_cr_line_ends() {
        let text = "[Version]\r\nSignature=\"$Windows NT$\"\r\n[Strings]\r\nName=\"Ünïcode\"\r\n";
        let mut bytes = vec![0xFF, 0xFE];
        for unit in text.encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let inf = parse(&bytes);
        assert_eq!(inf.encoding, Encoding::Utf16Le);
        assert!(inf.diags.is_empty());
        assert_eq!(Strings::from_inf(&inf).lookup("name"), Some("Ünïcode"));
        let round_trip = encode(text, Encoding::Utf16Le).unwrap();
        assert_eq!(round_trip, bytes);
    }

    #[test]
    fn bad_encodings_are_reported() {
        let mut diags = Vec::new();
        assert!(decode(&[0xFE, 0xFF, 0, b'['], &mut diags).is_none());
        assert!(decode(b"[\0V\0", &mut diags).is_none());
        assert_eq!(diags.len(), 2);
        assert!(diags.iter().all(|d| d.rule == "encoding"));
        // ANSI: 0x93/0x94 are curly quotes in Windows-1252.
        let mut diags = Vec::new();
        let (text, encoding) = decode(b"[S]\nA=\x93x\x94\n", &mut diags).unwrap();
        assert_eq!(encoding, Encoding::Ansi);
        assert!(text.contains('\u{201C}'));
        assert_eq!(
            encode(&text, Encoding::Ansi).unwrap(),
            b"[S]\nA=\x93x\x94\n"
        );
    }

    #[test]
    fn substitution_escapes_dirids_and_localized_tables() {
        let inf = parse(
            b"[S]\nA = %Name%\\x, \"%%SystemRoot%%\\y\", %13%\\z.sys, %missing%, 50%\n\
              [Strings]\nname = \"Echo\"\n[Strings.0407]\nName = \"Echo (de)\"\nOther=1\n",
        );
        let strings = Strings::from_inf(&inf);
        let entry = &inf.section("s").unwrap().entries[0];
        let mut problems = Vec::new();
        let expanded: Vec<String> = entry
            .values
            .iter()
            .map(|f| expand(f, &strings, &mut problems))
            .collect();
        assert_eq!(
            expanded,
            vec![
                "Echo\\x",
                "%SystemRoot%\\y",
                "%13%\\z.sys",
                "%missing%",
                "50%"
            ]
        );
        assert_eq!(
            problems,
            vec![
                TokenProblem::Undefined {
                    token: "missing".into(),
                    missing: vec!["Strings".into(), "Strings.0407".into()]
                },
                TokenProblem::Unpaired
            ]
        );
        // Defined only in the localized table: missing from [Strings].
        let mut problems = Vec::new();
        expand_text("%other%", &strings, &mut problems);
        assert_eq!(
            problems,
            vec![TokenProblem::Undefined {
                token: "other".into(),
                missing: vec!["Strings".into()]
            }]
        );
    }

    #[test]
    fn syntax_errors_have_lines() {
        let inf = parse(b"orphan = 1\n[Version\n[S] junk\nA = \"open\n");
        let rules: Vec<(usize, &str)> = inf.diags.iter().map(|d| (d.line, d.rule)).collect();
        assert_eq!(
            rules,
            vec![(4, "syntax"), (1, "syntax"), (2, "syntax"), (3, "syntax")]
        );
    }
}
