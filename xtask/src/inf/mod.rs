//! The project's INF tools: a reader that follows Windows' INF grammar
//! (`parse`), the checks InfVerif applies to a non-PnP kernel-service driver
//! package (`rules`, documented with sources in `docs/infverify.md`), and
//! the stampinf step (`stamp`) that `cargo xtask package` runs on every
//! host.

pub mod parse;
pub mod rules;
pub mod stamp;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use parse::{Diag, Severity};
pub use rules::{Mode, Options};

/// The architecture a template's `$ARCH$` stands for when it is checked
/// as if stamped (stampinf `-a amd64`, as cargo-wdk runs it for x64).
pub const CHECK_ARCH: &str = "amd64";

/// The result of checking one INF.
#[derive(Debug)]
pub struct Report {
    pub diags: Vec<Diag>,
    /// The file was checked as a template (as `infverif /stampinf` does).
    pub template: bool,
}

impl Report {
    pub fn errors(&self) -> usize {
        rules::counts(&self.diags).0
    }

    pub fn warnings(&self) -> usize {
        rules::counts(&self.diags).1
    }

    /// `file:line: rule: severity: message`, one line per finding.
    pub fn render(&self, file: &str) -> String {
        self.diags
            .iter()
            .map(|d| {
                let severity = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                format!("{file}:{}: {}: {severity}: {}\n", d.line, d.rule, d.message)
            })
            .collect()
    }
}

/// Checks an INF's bytes. `template` forces template mode (an `.inx`);
/// otherwise a file is a template if it contains `$ARCH$` or has an empty
/// DriverVer.
pub fn verify_bytes(bytes: &[u8], template: bool, mode: Mode) -> Report {
    let mut decode_diags = Vec::new();
    let Some((text, encoding)) = parse::decode(bytes, &mut decode_diags) else {
        return Report {
            diags: decode_diags,
            template,
        };
    };
    let has_arch = text.contains("$ARCH$");
    let text = text.replace("$ARCH$", CHECK_ARCH);
    let inf = parse::parse_str(&text, encoding, decode_diags);
    let empty_driver_ver = inf.section("Version").is_some_and(|v| {
        v.entries.iter().any(|e| {
            e.key
                .as_ref()
                .is_some_and(|k| k.raw().trim().eq_ignore_ascii_case("DriverVer"))
                && e.values.iter().all(parse::Field::is_empty)
        })
    });
    let template = template || has_arch || empty_driver_ver;
    let diags = rules::check(&inf, Options { mode, template });
    Report { diags, template }
}

/// Checks an INF file; `.inx` files are templates.
pub fn verify_file(path: &Path, mode: Mode) -> Result<Report, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let inx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("inx"));
    Ok(verify_bytes(&bytes, inx, mode))
}
