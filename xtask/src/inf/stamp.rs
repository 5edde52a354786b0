//! The project's own stampinf: what `stampinf -f FILE -d DATE -a ARCH -c CAT
//! -v VERSION` does to an INF template, on any host.
//!
//! From "Stampinf Command Options"
//! (<https://learn.microsoft.com/windows-hardware/drivers/devtest/stampinf-command-options>):
//! `$ARCH$` is replaced by the architecture, DriverVer in `[Version]` is set
//! to `DATE,VERSION`, CatalogFile in `[Version]` to CAT. Entries that exist
//! are rewritten in place (their comment goes); missing ones are added at
//! the end of `[Version]`. The file keeps its encoding and line ends.

use super::parse::{self, Diag};

/// What to stamp.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `amd64`, `x86`, `arm64`...
    pub arch: String,
    /// `mm/dd/yyyy,w.x.y.z`.
    pub driver_ver: String,
    /// `name.cat`.
    pub catalog: String,
}

/// Stamps an INF template's bytes; the result has the template's encoding.
pub fn stamp_bytes(bytes: &[u8], stamp: &Stamp) -> Result<Vec<u8>, String> {
    let mut diags: Vec<Diag> = Vec::new();
    let Some((text, encoding)) = parse::decode(bytes, &mut diags) else {
        let reasons: Vec<String> = diags.into_iter().map(|d| d.message).collect();
        return Err(format!(
            "cannot decode the template: {}",
            reasons.join("; ")
        ));
    };
    let stamped = stamp_text(&text, stamp)?;
    parse::encode(&stamped, encoding)
}

/// Stamps an INF template's text.
pub fn stamp_text(text: &str, stamp: &Stamp) -> Result<String, String> {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let replaced = text.replace("$ARCH$", &stamp.arch);
    let mut lines: Vec<String> = replaced.split(newline).map(str::to_string).collect();
    let Some(header) = lines
        .iter()
        .position(|l| l.trim().to_ascii_lowercase().starts_with("[version]"))
    else {
        return Err("the template has no [Version] section to stamp".into());
    };
    let end = lines[header + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |p| header + 1 + p);
    let mut last_entry = header;
    let mut driver_ver = None;
    let mut catalog = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(header + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        last_entry = i;
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if key.eq_ignore_ascii_case("DriverVer") {
            driver_ver = Some(i);
        } else if key.eq_ignore_ascii_case("CatalogFile") {
            catalog = Some(i);
        }
    }
    let indent = |line: &str| -> String {
        line.chars()
            .take_while(|c| c.is_whitespace())
            .collect::<String>()
    };
    let mut inserts = Vec::new();
    for (found, key, value) in [
        (catalog, "CatalogFile", &stamp.catalog),
        (driver_ver, "DriverVer", &stamp.driver_ver),
    ] {
        match found {
            Some(i) => {
                let width = lines[i].split('=').next().unwrap_or("").trim_start().len();
                let padded = format!("{key:<width$}", width = width.max(key.len()));
                lines[i] = format!("{}{padded}= {value}", indent(&lines[i]));
            }
            None => inserts.push(format!("{}{key} = {value}", indent(&lines[last_entry]))),
        }
    }
    for line in inserts.into_iter().rev() {
        lines.insert(last_entry + 1, line);
    }
    Ok(lines.join(newline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inf::parse::Encoding;

    fn stamp() -> Stamp {
        Stamp {
            arch: "amd64".into(),
            driver_ver: "12/02/2025,0.1.0.0".into(),
            catalog: "echo.cat".into(),
        }
    }

    #[test]
    fn rewrites_existing_entries_and_arch() {
        let text = "[Version]\r\nSignature   = \"$Windows NT$\"\r\nDriverVer   = ; stampinf\r\n\
                    CatalogFile = old.cat\r\n\r\n[DefaultInstall.NT$ARCH$]\r\nCopyFiles = F\r\n";
        let out = stamp_text(text, &stamp()).unwrap();
        assert_eq!(
            out,
            "[Version]\r\nSignature   = \"$Windows NT$\"\r\nDriverVer   = 12/02/2025,0.1.0.0\r\n\
             CatalogFile = echo.cat\r\n\r\n[DefaultInstall.NTamd64]\r\nCopyFiles = F\r\n"
        );
    }

    #[test]
    fn adds_missing_entries_at_the_end_of_version() {
        let text = "[version]\n  Signature = \"$Windows NT$\"\n\n; c\n[S]\nA=1\n";
        let out = stamp_text(text, &stamp()).unwrap();
        assert_eq!(
            out,
            "[version]\n  Signature = \"$Windows NT$\"\n  CatalogFile = echo.cat\n  \
             DriverVer = 12/02/2025,0.1.0.0\n\n; c\n[S]\nA=1\n"
        );
    }

    #[test]
    fn keeps_utf16_and_refuses_a_template_without_version() {
        let text = "[Version]\r\nDriverVer=\r\n";
        let bytes = parse::encode(text, Encoding::Utf16Le).unwrap();
        let out = stamp_bytes(&bytes, &stamp()).unwrap();
        let mut diags = Vec::new();
        let (decoded, encoding) = parse::decode(&out, &mut diags).unwrap();
        assert_eq!(encoding, Encoding::Utf16Le);
        assert!(decoded.contains("DriverVer= 12/02/2025,0.1.0.0"));
        assert!(decoded.contains("CatalogFile = echo.cat"));
        assert!(stamp_text("[Strings]\n", &stamp()).is_err());
        assert!(stamp_bytes(&[0xFE, 0xFF, 0, 1], &stamp()).is_err());
    }
}
