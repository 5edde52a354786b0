//! `package.json`: what a `cargo xtask package` run produced and skipped.
//! Written by hand (a few fields; xtask has no dependencies); the escaping
//! is tested.

use super::plan::{Params, Step};
use crate::inf::{Mode, Report};

/// A file in the package folder.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// One step of the flow: what ran and how, or why it did not.
#[derive(Debug, Clone)]
pub struct StepEntry {
    pub name: String,
    /// `done`, `ran` or `skipped`.
    pub status: &'static str,
    pub detail: String,
    pub commands: Vec<String>,
}

impl StepEntry {
    /// A step done by the project's own code.
    pub fn done(name: &str, how: &str) -> Self {
        StepEntry {
            name: name.into(),
            status: "done",
            detail: how.into(),
            commands: Vec::new(),
        }
    }

    /// A step of the Windows flow that ran.
    pub fn ran(step: &Step) -> Self {
        StepEntry {
            name: step.name().into(),
            status: "ran",
            detail: String::new(),
            commands: step.lines(),
        }
    }

    /// A step of the Windows flow that did not run, and why.
    pub fn skipped(step: &Step, reason: &str) -> Self {
        let (detail, commands) = match step {
            Step::Skipped { reason, .. } => (reason.clone(), Vec::new()),
            _ => (reason.to_string(), step.lines()),
        };
        StepEntry {
            name: step.name().into(),
            status: "skipped",
            detail,
            commands,
        }
    }
}

/// The manifest being assembled.
#[derive(Debug)]
pub struct Manifest {
    fields: Vec<(&'static str, String)>,
    inf_check: (String, usize, usize),
    files: Vec<FileEntry>,
    steps: Vec<StepEntry>,
}

impl Manifest {
    pub fn new(p: &Params, mode: Mode, report: &Report) -> Self {
        Manifest {
            fields: vec![
                ("package", p.name.clone()),
                ("crate", p.crate_name.clone()),
                ("driver_ver", format!("{},{}", p.date, p.version)),
                ("arch", p.arch.clone()),
                (
                    "profile",
                    if p.release { "release" } else { "debug" }.to_string(),
                ),
                ("target_platform", p.platform.name().to_string()),
                ("sign", if p.sign { "test" } else { "none" }.to_string()),
                ("host", std::env::consts::OS.to_string()),
            ],
            inf_check: (mode.name().to_string(), report.errors(), report.warnings()),
            files: Vec::new(),
            steps: Vec::new(),
        }
    }

    pub fn file(&mut self, entry: FileEntry) {
        self.files.push(entry);
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn step(&mut self, entry: StepEntry) {
        self.steps.push(entry);
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    pub fn skipped(&self) -> usize {
        self.steps.iter().filter(|s| s.status == "skipped").count()
    }

    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n");
        for (key, value) in &self.fields {
            out.push_str(&format!("  {}: {},\n", string(key), string(value)));
        }
        out.push_str(&format!(
            "  \"inf_check\": {{\"checker\": \"cargo xtask infverify\", \"mode\": {}, \
             \"errors\": {}, \"warnings\": {}}},\n",
            string(&self.inf_check.0),
            self.inf_check.1,
            self.inf_check.2
        ));
        out.push_str("  \"files\": [");
        for (i, f) in self.files.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&format!(
                "    {{\"name\": {}, \"bytes\": {}, \"sha256\": {}}}",
                string(&f.name),
                f.bytes,
                string(&f.sha256)
            ));
        }
        out.push_str(if self.files.is_empty() {
            "],\n"
        } else {
            "\n  ],\n"
        });
        out.push_str("  \"steps\": [");
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let commands: Vec<String> = s.commands.iter().map(|c| string(c)).collect();
            out.push_str(&format!(
                "    {{\"step\": {}, \"status\": {}, \"detail\": {}, \"commands\": [{}]}}",
                string(&s.name),
                string(s.status),
                string(&s.detail),
                commands.join(", ")
            ));
        }
        out.push_str(if self.steps.is_empty() {
            "]\n"
        } else {
            "\n  ]\n"
        });
        out.push_str("}\n");
        out
    }
}

/// A JSON string literal (RFC 8259: `"` and `\` escaped, control
/// characters as `\uXXXX` or their short forms).
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::string;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("plain"), "\"plain\"");
        assert_eq!(
            string("C:\\Program Files \"x\"\n\t\u{1}é"),
            "\"C:\\\\Program Files \\\"x\\\"\\n\\t\\u0001é\""
        );
    }
}
