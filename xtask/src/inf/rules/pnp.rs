//! PnP entry points, followed so the checker runs on INFs that are not
//! kernel services: ClassInstall32, Manufacturer, Models, DDInstall.

use std::collections::HashSet;

use super::*;
use crate::inf::parse::{Diag, Section};

impl<'a> Ctx<'a> {
    // === PnP entry points (enough to follow an INF that is not ours) ===

    /// `[ClassInstall32(.decoration)]`: an entry point with install directives.
    pub(super) fn class_install(&mut self) {
        let sections: Vec<&'a Section> = self
            .inf
            .sections
            .iter()
            .filter(|s| {
                let name = lower(&s.name);
                name == "classinstall32" || name.starts_with("classinstall32.")
            })
            .collect();
        for section in sections {
            let arch = ARCHES
                .iter()
                .find(|(nt, _)| lower(&section.name).ends_with(&format!(".{nt}")))
                .map(|&(_, a)| a);
            self.install_section(section, arch, false, false);
        }
    }

    pub(super) fn manufacturer(&mut self) {
        let Some(manufacturer) = self.inf.section("Manufacturer") else {
            return;
        };
        for entry in &manufacturer.entries {
            let values = self.expand_values(entry);
            let Some(models) = values.first().filter(|m| !m.is_empty()) else {
                continue;
            };
            let decorations: Vec<&String> = values[1..].iter().filter(|d| !d.is_empty()).collect();
            if decorations.is_empty() {
                self.universal(
                    entry.line,
                    "defaultinstall-decoration",
                    format!(
                        "Models section {models} has no architecture decoration (InfVerif 2223)"
                    ),
                );
            }
            let names: Vec<String> = if decorations.is_empty() {
                vec![models.clone()]
            } else {
                decorations
                    .iter()
                    .map(|d| format!("{models}.{d}"))
                    .collect()
            };
            for name in names {
                let Some(section) = self.inf.section(&name) else {
                    self.push(Diag::error(
                        entry.line,
                        "section-not-found",
                        format!("no Models section [{name}] (InfVerif 1203)"),
                    ));
                    continue;
                };
                self.reference(&name, "manufacturer");
                let arch = ARCHES
                    .iter()
                    .find(|(nt, _)| lower(&name).contains(&format!(".{nt}")))
                    .map(|&(_, a)| a);
                for model in &section.entries {
                    let values = self.expand_values(model);
                    let Some(install) = values.first().filter(|v| !v.is_empty()) else {
                        continue;
                    };
                    self.ddinstall(model.line, install, arch);
                }
            }
        }
    }

    pub(super) fn ddinstall(&mut self, line: usize, install: &str, arch: Option<&'static str>) {
        let base = lower(install);
        let belongs = |name: &str| -> bool {
            let Some(rest) = name.strip_prefix(&base) else {
                return false;
            };
            let parts: Vec<&str> = rest.split('.').skip(1).collect();
            let (decoration, extension) = match parts.as_slice() {
                [] => (None, None),
                [one] if DDINSTALL_EXTENSIONS.contains(one) => (None, Some(*one)),
                [one] => (Some(*one), None),
                [one, two] => (Some(*one), Some(*two)),
                _ => return false,
            };
            rest.is_empty() && parts.is_empty()
                || (rest.starts_with('.')
                    && decoration
                        .is_none_or(|d| d == "nt" || ARCHES.iter().any(|(nt, _)| *nt == d))
                    && extension.is_none_or(|e| DDINSTALL_EXTENSIONS.contains(&e)))
        };
        let related: Vec<&'a Section> = self
            .inf
            .sections
            .iter()
            .filter(|s| belongs(&lower(&s.name)))
            .collect();
        if related.is_empty() {
            self.push(Diag::error(
                line,
                "section-not-found",
                format!("no DDInstall section [{install}] (InfVerif 1203)"),
            ));
            return;
        }
        let already = self.referenced.contains_key(&lower(install));
        self.reference(install, "models");
        if already {
            return;
        }
        let mut copied = HashSet::new();
        for section in &related {
            self.reference(&section.name, "models");
            if !lower(&section.name).ends_with(".services") {
                copied.extend(self.install_section(section, arch, false, false));
            }
        }
        for section in related {
            if lower(&section.name).ends_with(".services") {
                self.services_section(section, &copied, false);
            }
        }
    }
}
