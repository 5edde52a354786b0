//! Entry points and install sections: DefaultInstall/DefaultUninstall
//! decoration, directives, AddService and its service-install section.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use crate::inf::parse::{Diag, Entry, Section};

impl<'a> Ctx<'a> {
    // === install sections ===

    pub(super) fn install_units(&mut self) -> Vec<InstallUnit<'a>> {
        let mut units: BTreeMap<String, InstallUnit<'a>> = BTreeMap::new();
        for section in &self.inf.sections {
            let name = lower(&section.name);
            let (prefix, uninstall) = if name.starts_with("defaultinstall") {
                ("defaultinstall", false)
            } else if name.starts_with("defaultuninstall") {
                ("defaultuninstall", true)
            } else {
                continue;
            };
            let rest = &name[prefix.len()..];
            if !rest.is_empty() && !rest.starts_with('.') {
                continue; // DefaultInstallFoo: an ordinary section name.
            }
            let mut parts: Vec<&str> = rest.split('.').skip(1).collect();
            let services = parts.last() == Some(&"services");
            if services {
                parts.pop();
            }
            let arch = parts
                .first()
                .and_then(|p| ARCHES.iter().find(|(nt, _)| nt == p))
                .map(|&(_, arch)| arch);
            let os_version_ok = parts.len() <= 6
                && parts
                    .iter()
                    .skip(1)
                    .all(|p| p.is_empty() || p.chars().all(|c| c.is_ascii_hexdigit()));
            if arch.is_none() {
                self.universal(
                    section.line,
                    "defaultinstall-decoration",
                    format!(
                        "[{}] is not decorated for an architecture: write [{}.NTamd64] (or \
                         .NT$ARCH$ in a template); an undecorated DefaultInstall is not a \
                         primitive driver and installs on every architecture (InfVerif 2223; \
                         primitive driver requirements)",
                        section.name,
                        if uninstall {
                            "DefaultUninstall"
                        } else {
                            "DefaultInstall"
                        }
                    ),
                );
            } else if !os_version_ok {
                self.push(Diag::error(
                    section.line,
                    "unknown-section",
                    format!(
                        "[{}]: after the architecture only a TargetOSVersion \
                         (.major.minor.product.suite.build) or .Services may follow",
                        section.name
                    ),
                ));
            }
            let base = format!("{prefix}{}", {
                let joined = parts.join(".");
                if joined.is_empty() {
                    String::new()
                } else {
                    format!(".{joined}")
                }
            });
            let unit = units.entry(base).or_insert(InstallUnit {
                section: None,
                services: None,
                arch,
                uninstall,
            });
            if services {
                unit.services = Some(section);
            } else {
                unit.section = Some(section);
            }
        }
        units.into_values().collect()
    }

    pub(super) fn entry_points(&mut self, units: &[InstallUnit<'a>]) {
        let installs: Vec<&InstallUnit> = units
            .iter()
            .filter(|u| !u.uninstall && u.section.is_some())
            .collect();
        let manufacturer = self.inf.section("Manufacturer");
        if let (Some(first), Some(m)) = (installs.first(), manufacturer) {
            let line = first.section.map_or(0, |s| s.line);
            self.push(Diag::error(
                line.max(m.line),
                "defaultinstall-manufacturer",
                "an INF cannot have both [DefaultInstall...] and [Manufacturer] (InfVerif 1212)",
            ));
        }
        if installs.is_empty() && manufacturer.is_none() {
            self.push(Diag::error(
                0,
                "install-section",
                "no install entry point: neither [DefaultInstall.NT<arch>] nor [Manufacturer]",
            ));
        }
        for unit in units {
            if unit.section.is_none()
                && let Some(services) = unit.services
            {
                self.push(Diag::warning(
                    services.line,
                    "unreferenced-section",
                    format!(
                        "[{}] has no [{}] beside it, so Windows never processes it \
                         (InfVerif 2083)",
                        services.name,
                        &services.name[..services.name.len() - ".Services".len()]
                    ),
                ));
            }
        }
        if !installs.is_empty() {
            let with_service = installs.iter().any(|u| {
                u.services.is_some_and(|s| {
                    s.entries.iter().any(|e| {
                        self.expand_key(e)
                            .is_some_and(|k| k.eq_ignore_ascii_case("AddService"))
                    })
                })
            });
            if !with_service {
                let line = installs[0].section.map_or(0, |s| s.line);
                self.push(Diag::warning(
                    line,
                    "addservice",
                    "no [DefaultInstall....Services] section with AddService: the driver files \
                     are copied but no service is created for them",
                ));
            }
        }
    }

    pub(super) fn install_unit(&mut self, unit: &InstallUnit<'a>) {
        let mut copied: HashSet<Copied> = HashSet::new();
        if let Some(section) = unit.section {
            self.reference(&section.name, "(entry point)");
            let legacy_uninstall = unit.uninstall
                && self
                    .value_of(section, "LegacyUninstall")
                    .is_some_and(|(v, _)| v.trim() == "1");
            if unit.uninstall && !legacy_uninstall {
                self.push(Diag::error(
                    section.line,
                    "defaultinstall-decoration",
                    format!(
                        "[{}] without LegacyUninstall = 1: a primitive driver package is \
                         uninstalled by Windows, not by a DefaultUninstall section",
                        section.name
                    ),
                ));
            }
            copied = self.install_section(section, unit.arch, !legacy_uninstall, true);
        }
        if let Some(services) = unit.services {
            if unit.section.is_some() {
                self.reference(&services.name, "(entry point)");
            }
            let legacy_uninstall = unit.uninstall;
            self.services_section(services, &copied, !legacy_uninstall);
        }
    }

    /// Walks an install section's directives; returns the files its
    /// CopyFiles put somewhere.
    pub(super) fn install_section(
        &mut self,
        section: &Section,
        arch: Option<&'static str>,
        legacy_is_error: bool,
        default_install: bool,
    ) -> HashSet<Copied> {
        let mut copied = HashSet::new();
        let has_include = section.entries.iter().any(|e| {
            self.expand_key(e)
                .is_some_and(|k| k.eq_ignore_ascii_case("include"))
        });
        for entry in &section.entries {
            let Some(key) = self.expand_key(entry).map(|k| lower(&k)) else {
                if default_install {
                    self.push(Diag::error(
                        entry.line,
                        "syntax",
                        format!(
                            "[{}]: an install section entry needs `directive =`",
                            section.name
                        ),
                    ));
                }
                continue;
            };
            let values = self.expand_values(entry);
            if default_install && !DEFAULT_INSTALL_DIRECTIVES.contains(&key.as_str()) {
                match key.as_str() {
                    "driverver" | "logconfig" => self.push(Diag::error(
                        entry.line,
                        "unknown-directive",
                        format!(
                            "{key} is not valid in a DefaultInstall section (INF DefaultInstall \
                             Section)"
                        ),
                    )),
                    "legacyuninstall" => {}
                    _ => self.push(Diag::warning(
                        entry.line,
                        "unknown-directive",
                        format!("[{}]: unknown directive `{key}`", section.name),
                    )),
                }
            }
            if LEGACY_DIRECTIVES.contains(&key.as_str()) && legacy_is_error {
                self.universal(
                    entry.line,
                    "legacy",
                    format!(
                        "{key} changes state outside the driver package: not allowed in a \
                         universal INF (InfVerif 1300-1302)"
                    ),
                );
            }
            if key == "needs" && !has_include {
                for value in values.iter().filter(|v| !v.is_empty()) {
                    if self.inf.section(value).is_none() {
                        self.push(Diag::error(
                            entry.line,
                            "section-not-found",
                            format!(
                                "Needs = {value}: no such section and no Include (InfVerif 1203)"
                            ),
                        ));
                    } else {
                        self.reference(value, "needs");
                    }
                }
                continue;
            }
            if let Some(&(_, position)) = SECTION_AT.iter().find(|(d, _)| *d == key) {
                if let Some(target) = values.get(position).filter(|v| !v.is_empty()) {
                    match self.inf.section(target) {
                        Some(section) => {
                            let first = !self.referenced.contains_key(&lower(target));
                            self.reference(target, &key);
                            if first {
                                self.install_section(section, arch, false, false);
                            }
                        }
                        None => self.push(Diag::error(
                            entry.line,
                            "section-not-found",
                            format!("{key}: no section [{target}] (InfVerif 1203)"),
                        )),
                    }
                }
                continue;
            }
            if !SECTION_LIST_DIRECTIVES.contains(&key.as_str()) {
                continue;
            }
            for value in values.iter().filter(|v| !v.is_empty()) {
                if key == "copyfiles"
                    && let Some(file) = value.strip_prefix('@')
                {
                    copied.extend(self.copy_file(entry.line, file, arch));
                    continue;
                }
                let Some(target) = self.inf.section(value) else {
                    self.push(Diag::error(
                        entry.line,
                        "section-not-found",
                        format!(
                            "{key} = {value}: no section [{value}] (InfVerif 1203; a single file \
                             is written @{value})"
                        ),
                    ));
                    continue;
                };
                self.reference(value, &key);
                if key == "copyfiles" {
                    copied.extend(self.copy_list(entry.line, target, arch));
                } else if key == "delfiles" || key == "renfiles" {
                    // Needs a destination too, but puts nothing anywhere.
                    self.destination(entry.line, &target.name, false);
                }
            }
        }
        copied
    }

    pub(super) fn services_section(
        &mut self,
        section: &Section,
        copied: &HashSet<Copied>,
        check: bool,
    ) {
        for entry in &section.entries {
            let Some(key) = self.expand_key(entry).map(|k| lower(&k)) else {
                continue;
            };
            if !SERVICES_DIRECTIVES.contains(&key.as_str()) {
                self.push(Diag::warning(
                    entry.line,
                    "unknown-directive",
                    format!("[{}]: unknown directive `{key}`", section.name),
                ));
                continue;
            }
            if key == "delservice" && check {
                self.universal(
                    entry.line,
                    "legacy",
                    "DelService deletes a service outside the driver package (InfVerif 1302)"
                        .to_string(),
                );
            }
            if key == "addservice" {
                self.add_service(entry, copied);
            }
        }
    }

    pub(super) fn add_service(&mut self, entry: &Entry, copied: &HashSet<Copied>) {
        let values = self.expand_values(entry);
        let name = values.first().cloned().unwrap_or_default();
        let flags_text = values.get(1).cloned().unwrap_or_default();
        let flags = if flags_text.trim().is_empty() {
            0
        } else if let Some(flags) = parse_number(&flags_text) {
            flags
        } else {
            self.push(Diag::error(
                entry.line,
                "addservice",
                format!("AddService flags `{flags_text}` is not a number"),
            ));
            0
        };
        if name.trim().is_empty() {
            if flags & 0x2 == 0 {
                self.push(Diag::error(
                    entry.line,
                    "addservice",
                    "AddService without a ServiceName",
                ));
            }
            return;
        }
        let Some(install) = values.get(2).filter(|v| !v.is_empty()) else {
            self.push(Diag::error(
                entry.line,
                "addservice",
                format!("AddService = {name}: no service-install-section (InfVerif 1005)"),
            ));
            return;
        };
        let Some(section) = self.inf.section(install) else {
            self.push(Diag::error(
                entry.line,
                "section-not-found",
                format!("AddService = {name}: no section [{install}] (InfVerif 1203)"),
            ));
            return;
        };
        self.reference(install, "addservice");
        if let Some(log) = values.get(3).filter(|v| !v.is_empty()) {
            match self.inf.section(log) {
                Some(log_section) => {
                    self.reference(log, "addservice");
                    self.install_section(log_section, None, false, false);
                }
                None => self.push(Diag::error(
                    entry.line,
                    "section-not-found",
                    format!("AddService = {name}: no event-log section [{log}] (InfVerif 1203)"),
                )),
            }
        }
        self.service_install(&name, section, copied);
    }

    pub(super) fn service_install(
        &mut self,
        name: &str,
        section: &Section,
        copied: &HashSet<Copied>,
    ) {
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for entry in &section.entries {
            let Some(key) = self.expand_key(entry).map(|k| lower(&k)) else {
                continue;
            };
            let values = self.expand_values(entry);
            if !SERVICE_INSTALL_KEYS.contains(&key.as_str()) {
                self.push(Diag::warning(
                    entry.line,
                    "unknown-directive",
                    format!("[{}]: unknown service-install entry `{key}`", section.name),
                ));
            }
            if matches!(key.as_str(), "addreg" | "delreg" | "bitreg") {
                for value in values.iter().filter(|v| !v.is_empty()) {
                    if self.inf.section(value).is_some() {
                        self.reference(value, &key);
                        if key == "addreg" {
                            self.service_addreg.insert(lower(value));
                        }
                    } else {
                        self.push(Diag::error(
                            entry.line,
                            "section-not-found",
                            format!("{key} = {value}: no section [{value}] (InfVerif 1203)"),
                        ));
                    }
                }
            }
            if matches!(key.as_str(), "addtrigger" | "failureactions") {
                for value in values.iter().filter(|v| !v.is_empty()) {
                    if self.inf.section(value).is_some() {
                        self.reference(value, &key);
                    }
                }
            }
            seen.entry(key).or_insert((values.join(","), entry.line));
        }
        let at = section.line;
        let number = |ctx: &mut Self, key: &str| -> Option<(u64, usize)> {
            match seen.get(key) {
                None => {
                    ctx.push(Diag::error(
                        at,
                        "addservice",
                        format!(
                            "[{}] (service {name}) has no {key}: ServiceType, StartType, \
                             ErrorControl and ServiceBinary are required",
                            section.name
                        ),
                    ));
                    None
                }
                Some((text, line)) => match parse_number(text) {
                    Some(n) => Some((n, *line)),
                    None => {
                        ctx.push(Diag::error(
                            *line,
                            "addservice",
                            format!("{key} `{text}` is not a number"),
                        ));
                        None
                    }
                },
            }
        };
        let service_type = number(self, "servicetype");
        let start_type = number(self, "starttype");
        let error_control = number(self, "errorcontrol");
        let driver = match service_type {
            Some((1 | 2, _)) => true,
            Some((0x10 | 0x20 | 0x110 | 0x120, _)) => false,
            Some((other, line)) => {
                self.push(Diag::error(
                    line,
                    "addservice",
                    format!(
                        "ServiceType {other:#x}: a kernel driver is 1 (SERVICE_KERNEL_DRIVER), a \
                         file system driver or minifilter 2 (SERVICE_FILE_SYSTEM_DRIVER)"
                    ),
                ));
                true
            }
            None => true,
        };
        match start_type {
            Some((0..=3, _)) | None => {}
            Some((4, line)) => self.push(Diag::warning(
                line,
                "addservice",
                "StartType 4 (SERVICE_DISABLED): the service can never start",
            )),
            Some((other, line)) => self.push(Diag::error(
                line,
                "addservice",
                format!("StartType {other} is not 0 (boot) to 4 (disabled)"),
            )),
        }
        if let Some((other @ 4.., line)) = error_control {
            self.push(Diag::error(
                line,
                "addservice",
                format!("ErrorControl {other} is not 0 (ignore) to 3 (critical)"),
            ));
        }
        match seen.get("servicebinary") {
            None => {
                number(self, "servicebinary");
            }
            Some((binary, line)) if driver => self.service_binary(binary, *line, copied),
            Some(_) => {}
        }
    }

    pub(super) fn service_binary(&mut self, binary: &str, line: usize, copied: &HashSet<Copied>) {
        let parsed = binary.strip_prefix('%').and_then(|rest| {
            let (dirid, path) = rest.split_once('%')?;
            let dirid: u32 = dirid.parse().ok()?;
            let path = path.strip_prefix('\\')?;
            (!path.is_empty()).then(|| (dirid, path.trim_matches('\\').to_ascii_lowercase()))
        });
        let Some((dirid, path)) = parsed else {
            self.push(Diag::error(
                line,
                "service-binary",
                format!("ServiceBinary `{binary}` is not %dirid%\\file (INF AddService Directive)"),
            ));
            return;
        };
        match dirid {
            13 => {}
            12 => self.isolation(
                line,
                "service-binary",
                format!(
                    "ServiceBinary `{binary}` is under %12% (system32\\drivers); run from the \
                     driver store: %13% (InfVerif 1322 under /w)"
                ),
            ),
            other => self.push(Diag::error(
                line,
                "service-binary",
                format!(
                    "ServiceBinary `{binary}`: DIRID {other} is not a driver location; use %13% \
                     (driver store)"
                ),
            )),
        }
        if !copied.contains(&Copied {
            dirid,
            path: path.clone(),
        }) {
            self.push(Diag::error(
                line,
                "service-binary",
                format!(
                    "ServiceBinary `{binary}` is not put there by any CopyFiles of this install \
                     section (an error here, stricter than InfVerif's warning)"
                ),
            ));
        }
    }
}
