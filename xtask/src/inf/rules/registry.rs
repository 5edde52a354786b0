//! Add-registry sections (InfVerif 1221, 1303-1305, 1323).

use super::*;
use crate::inf::parse::{Diag, Entry, Section};

impl<'a> Ctx<'a> {
    // === registry ===

    pub(super) fn addreg_sections(&mut self) {
        let addreg: Vec<String> = self
            .referenced
            .iter()
            .filter(|(_, by)| by.contains("addreg"))
            .map(|(name, _)| name.clone())
            .collect();
        for name in addreg {
            let Some(section) = self.inf.section(&name) else {
                continue;
            };
            let for_service = self.service_addreg.contains(&name);
            for entry in &section.entries {
                self.addreg_line(section, entry, for_service);
            }
        }
    }

    pub(super) fn addreg_line(&mut self, section: &Section, entry: &Entry, for_service: bool) {
        if entry.key.is_some() {
            self.push(Diag::error(
                entry.line,
                "addreg",
                format!(
                    "[{}]: an add-registry line is `root, subkey, name, flags, value`, not `key =`",
                    section.name
                ),
            ));
            return;
        }
        let values = self.expand_values(entry);
        let root = values
            .first()
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default();
        let subkey = values.get(1).cloned().unwrap_or_default();
        let name = values.get(2).cloned().unwrap_or_default();
        let flags_text = values.get(3).cloned().unwrap_or_default();
        if !matches!(root.as_str(), "HKR" | "HKCR" | "HKCU" | "HKLM" | "HKU") {
            self.push(Diag::error(
                entry.line,
                "addreg",
                format!("registry root `{root}` is not HKR, HKCR, HKCU, HKLM or HKU"),
            ));
            return;
        }
        if root == "HKLM"
            && lower(subkey.trim_start_matches('\\'))
                .starts_with("system\\currentcontrolset\\services")
        {
            self.push(Diag::error(
                entry.line,
                "addreg",
                "writes the services key directly; use HKR in the service-install section's \
                 AddReg (InfVerif 1221)",
            ));
        }
        if root != "HKR" {
            self.universal(
                entry.line,
                "addreg",
                format!("{root} is not relative to the driver (HKR) (InfVerif 1304)"),
            );
        }
        let flags = if flags_text.trim().is_empty() {
            0
        } else {
            match parse_number(&flags_text) {
                Some(f) => f,
                None => {
                    self.push(Diag::error(
                        entry.line,
                        "addreg",
                        format!("flags `{flags_text}` is not a number"),
                    ));
                    return;
                }
            }
        };
        if name.eq_ignore_ascii_case("CoInstallers32") {
            self.universal(
                entry.line,
                "legacy",
                "defines co-installers (InfVerif 1303)".to_string(),
            );
        }
        if flags & 0x8 != 0 {
            self.universal(
                entry.line,
                "addreg",
                "FLG_ADDREG_APPEND appends to a REG_MULTI_SZ (InfVerif 1305)".to_string(),
            );
        }
        if flags & 0xFFFF_0001 == 0x0001_0001 {
            let value = values.get(4).cloned().unwrap_or_default();
            if parse_number(&value).is_none_or(|v| v > u64::from(u32::MAX)) {
                self.push(Diag::error(
                    entry.line,
                    "addreg",
                    format!("REG_DWORD value `{value}` for `{name}` is not a 32-bit number"),
                ));
            }
        }
        if for_service && root == "HKR" {
            let sub = lower(subkey.trim_matches('\\'));
            if sub != "parameters" && !sub.starts_with("parameters\\") {
                self.isolation(
                    entry.line,
                    "addreg",
                    format!(
                        "service registry value `{name}` is not under the Parameters subkey \
                         (InfVerif 1323 under /w)"
                    ),
                );
            }
        }
    }
}
