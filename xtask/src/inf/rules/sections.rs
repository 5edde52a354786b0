//! Sections nobody reads (InfVerif 2083) or that two directives name (1205).

use super::{Ctx, lower};
use crate::inf::parse::Diag;

impl<'a> Ctx<'a> {
    // === sections (2083) ===

    pub(super) fn unreferenced_sections(&mut self) {
        const ROOTS: [&str; 8] = [
            "version",
            "strings",
            "sourcedisksnames",
            "sourcedisksfiles",
            "destinationdirs",
            "manufacturer",
            "controlflags",
            "classinstall32",
        ];
        let mut found = Vec::new();
        for section in &self.inf.sections {
            let name = lower(&section.name);
            let root = ROOTS
                .iter()
                .any(|r| name == *r || name.starts_with(&format!("{r}.")))
                || name.starts_with("defaultinstall.")
                || name.starts_with("defaultuninstall.")
                || name == "defaultinstall"
                || name == "defaultuninstall";
            if root {
                continue;
            }
            match self.referenced.get(&name) {
                None => found.push(Diag::warning(
                    section.line,
                    "unreferenced-section",
                    format!(
                        "[{}] is not referenced by any directive, so Windows never reads it \
                         (InfVerif 2083)",
                        section.name
                    ),
                )),
                Some(by) if by.len() > 1 && !by.contains("(entry point)") => {
                    let mut by: Vec<&str> = by.iter().map(String::as_str).collect();
                    by.sort_unstable();
                    found.push(Diag::warning(
                        section.line,
                        "section-referenced-twice",
                        format!(
                            "[{}] is referenced by different directives ({}) (InfVerif 1205)",
                            section.name,
                            by.join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        self.diags.extend(found);
    }
}
