//! `[Version]` (InfVerif 1001, 1204, 1233, 1324; DriverVer) and the string
//! tokens (1235).

use std::collections::HashSet;

use super::{Ctx, driver_ver_problem, is_guid, lower};
use crate::inf::parse::{Diag, TokenProblem, expand};

impl<'a> Ctx<'a> {
    // === strings (1235) ===

    pub(super) fn string_tokens(&mut self) {
        let mut seen: HashSet<(usize, String)> = HashSet::new();
        let mut found = Vec::new();
        for section in &self.inf.sections {
            let name = lower(&section.name);
            if name == "strings" || name.starts_with("strings.") {
                if let Some(language) = name.strip_prefix("strings.") {
                    let valid = !language.is_empty()
                        && language.len() <= 4
                        && u16::from_str_radix(language, 16).is_ok_and(|id| id != 0);
                    if !valid {
                        found.push(Diag::error(
                            section.line,
                            "unknown-section",
                            format!(
                                "[{}]: a localized Strings section is [Strings.LanguageID] \
                                 with a hexadecimal language id such as 0409",
                                section.name
                            ),
                        ));
                    }
                }
                continue;
            }
            for entry in &section.entries {
                let mut problems = Vec::new();
                for field in entry.key.iter().chain(entry.values.iter()) {
                    expand(field, &self.strings, &mut problems);
                }
                for problem in problems {
                    match problem {
                        TokenProblem::Undefined { token, missing } => {
                            if seen.insert((entry.line, lower(&token))) {
                                found.push(Diag::error(
                                    entry.line,
                                    "string-token",
                                    format!(
                                        "%{token}% is not defined in [{}] (InfVerif 1235); \
                                         write %% for a literal %",
                                        missing.join("], [")
                                    ),
                                ));
                            }
                        }
                        TokenProblem::Unpaired => {
                            if seen.insert((entry.line, "%".into())) {
                                found.push(Diag::error(
                                    entry.line,
                                    "string-token",
                                    "a lone `%`: write %% for a literal percent sign \
                                     (InfVerif 1235)",
                                ));
                            }
                        }
                    }
                }
            }
        }
        self.diags.extend(found);
    }

    // === [Version] ===

    pub(super) fn version(&mut self) {
        let Some(version) = self.inf.section("Version") else {
            self.push(Diag::error(
                0,
                "version-signature",
                "no [Version] section (InfVerif 1001)",
            ));
            return;
        };
        let line = version.line;
        match self.value_of(version, "Signature") {
            Some((sig, l)) => {
                let ok = sig.eq_ignore_ascii_case("$Windows NT$")
                    || sig.eq_ignore_ascii_case("$Chicago$");
                if !ok {
                    self.push(Diag::error(
                        l,
                        "version-signature",
                        format!(
                            "Signature is `{sig}`; it must be \"$Windows NT$\" (InfVerif 1001)"
                        ),
                    ));
                }
            }
            None => self.push(Diag::error(
                line,
                "version-signature",
                "[Version] has no Signature (InfVerif 1001)",
            )),
        }
        match self.value_of(version, "Class") {
            Some((class, l)) if class.is_empty() || class.len() > 32 => self.push(Diag::error(
                l,
                "version-class",
                format!("Class `{class}` must be 1 to 32 characters"),
            )),
            Some(_) => {}
            None => self.push(Diag::error(
                line,
                "version-class",
                "[Version] has no Class (required for a primitive/DefaultInstall driver package \
                 as for a PnP one)",
            )),
        }
        match self.value_of(version, "ClassGuid") {
            Some((guid, l)) if !is_guid(&guid) => self.push(Diag::error(
                l,
                "version-class",
                format!("ClassGuid `{guid}` is not {{nnnnnnnn-nnnn-nnnn-nnnn-nnnnnnnnnnnn}}"),
            )),
            Some(_) => {}
            None => self.push(Diag::error(
                line,
                "version-class",
                "[Version] has no ClassGuid",
            )),
        }
        match self.value_of(version, "Provider") {
            Some((provider, l)) if provider.trim().is_empty() => {
                self.push(Diag::error(l, "version-provider", "Provider is empty"))
            }
            Some((provider, l)) if provider.trim().eq_ignore_ascii_case("microsoft") => {
                self.push(Diag::error(
                    l,
                    "version-provider",
                    "Provider cannot be Microsoft (InfVerif 1204)",
                ))
            }
            Some(_) => {}
            None => self.push(Diag::error(
                line,
                "version-provider",
                "[Version] has no Provider",
            )),
        }
        match self.value_of(version, "DriverVer") {
            Some((value, _)) if value.trim().is_empty() && self.opts.template => {}
            Some((value, l)) => {
                if let Some(problem) = driver_ver_problem(&value) {
                    self.push(Diag::error(
                        l,
                        "version-driverver",
                        format!("DriverVer `{value}`: {problem}"),
                    ));
                }
            }
            // stampinf writes DriverVer into [Version] whether or not it is there.
            None if self.opts.template => {}
            None => self.push(Diag::error(
                line,
                "version-driverver",
                "[Version] has no DriverVer (required since Windows 2000; a template may leave \
                 it empty or out for stampinf)",
            )),
        }
        let catalogs: Vec<(String, usize)> = version
            .entries
            .iter()
            .filter_map(|e| {
                let key = lower(&self.expand_key(e)?);
                (key == "catalogfile" || key.starts_with("catalogfile."))
                    .then(|| (self.expand_values(e).join(","), e.line))
            })
            .collect();
        if catalogs.is_empty() {
            self.push(Diag::error(
                line,
                "version-catalogfile",
                "[Version] has no CatalogFile: the package cannot be signed (InfVerif 1233)",
            ));
        }
        for (catalog, l) in catalogs {
            let empty_ok = catalog.trim().is_empty() && self.opts.template;
            if !empty_ok && !lower(catalog.trim()).ends_with(".cat") {
                self.push(Diag::error(
                    l,
                    "version-catalogfile",
                    format!("CatalogFile `{catalog}` is not a .cat file name (InfVerif 1233)"),
                ));
            }
        }
        match self.value_of(version, "PnpLockdown") {
            Some((value, _)) if value.trim() == "1" => {}
            Some((value, l)) if value.trim() == "0" => self.push(Diag::warning(
                l,
                "version-pnplockdown",
                "PnpLockdown = 0 lets administrators modify the installed driver files; \
                 set it to 1 (InfVerif 1324)",
            )),
            Some((value, l)) => self.push(Diag::error(
                l,
                "version-pnplockdown",
                format!("PnpLockdown `{value}` must be 1 (InfVerif 1324)"),
            )),
            None => self.push(Diag::error(
                line,
                "version-pnplockdown",
                "[Version] has no PnpLockdown = 1 (InfVerif 1324; an error here, stricter than \
                 InfVerif /u's warning)",
            )),
        }
    }
}
