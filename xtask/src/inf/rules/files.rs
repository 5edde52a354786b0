//! Files: DestinationDirs, CopyFiles lists, SourceDisksFiles/Names, the
//! driver-store layout (InfVerif 1100, 1230, 1322).

use std::collections::HashSet;

use super::*;
use crate::inf::parse::{Diag, Section};

impl<'a> Ctx<'a> {
    // === files ===

    /// The DestinationDirs entry for a file-list section (or DefaultDestDir):
    /// (dirid, subdir).
    pub(super) fn destination(
        &mut self,
        line: usize,
        list: &str,
        copies: bool,
    ) -> Option<(u32, String)> {
        let dirs = self.inf.section("DestinationDirs");
        let found = dirs.and_then(|d| {
            d.entries.iter().find_map(|e| {
                let key = self.expand_key(e)?;
                key.eq_ignore_ascii_case(list)
                    .then(|| (self.expand_values(e), e.line))
            })
        });
        let found = found.or_else(|| {
            dirs.and_then(|d| {
                d.entries.iter().find_map(|e| {
                    let key = self.expand_key(e)?;
                    key.eq_ignore_ascii_case("DefaultDestDir")
                        .then(|| (self.expand_values(e), e.line))
                })
            })
        });
        let Some((values, dest_line)) = found else {
            self.push(Diag::error(
                line,
                "destinationdirs",
                format!("[{list}] has no DestinationDirs entry and there is no DefaultDestDir"),
            ));
            return None;
        };
        let dirid_text = values.first().cloned().unwrap_or_default();
        let Some(dirid) = parse_number(&dirid_text).and_then(|d| u32::try_from(d).ok()) else {
            self.push(Diag::error(
                dest_line,
                "destinationdirs",
                format!("DestinationDirs: `{dirid_text}` is not a DIRID"),
            ));
            return None;
        };
        if dirid != 13 && copies {
            self.isolation(
                dest_line,
                "destinationdirs",
                format!(
                    "[{list}] is copied to DIRID {dirid}, not the driver store (13) \
                     (InfVerif 1322 under /w)"
                ),
            );
        }
        let subdir = values
            .get(1)
            .map(|s| s.trim_matches('\\').to_ascii_lowercase())
            .unwrap_or_default();
        Some((dirid, subdir))
    }

    pub(super) fn copy_list(
        &mut self,
        line: usize,
        list: &Section,
        arch: Option<&'static str>,
    ) -> HashSet<Copied> {
        let mut copied = HashSet::new();
        let Some((dirid, subdir)) = self.destination(line, &list.name, true) else {
            return copied;
        };
        for entry in &list.entries {
            if entry.key.is_some() {
                self.push(Diag::error(
                    entry.line,
                    "copyfiles",
                    format!(
                        "[{}]: a file-list entry is `destination[,source[,,flags]]`, not `key =`",
                        list.name
                    ),
                ));
                continue;
            }
            let values = self.expand_values(entry);
            let dest = values.first().cloned().unwrap_or_default();
            if dest.is_empty() {
                continue;
            }
            let source = values.get(1).filter(|s| !s.is_empty()).cloned();
            if let Some(file) =
                self.copy_file_to(entry.line, dirid, &subdir, &dest, source.as_deref(), arch)
            {
                copied.insert(file);
            }
        }
        copied
    }

    /// `CopyFiles = @file`: one file to the DefaultDestDir.
    pub(super) fn copy_file(
        &mut self,
        line: usize,
        file: &str,
        arch: Option<&'static str>,
    ) -> Option<Copied> {
        let (dirid, subdir) = self.destination(line, "DefaultDestDir", true)?;
        self.copy_file_to(line, dirid, &subdir, file, None, arch)
    }

    pub(super) fn copy_file_to(
        &mut self,
        line: usize,
        dirid: u32,
        subdir: &str,
        dest: &str,
        source: Option<&str>,
        arch: Option<&'static str>,
    ) -> Option<Copied> {
        let source_name = source.unwrap_or(dest);
        self.copied_files.insert(lower(source_name));
        match self.source_file(source_name, arch) {
            None => self.push(Diag::error(
                line,
                "sourcedisks",
                format!(
                    "{source_name} is copied but not listed in [SourceDisksFiles{}] \
                     (InfVerif 1230)",
                    arch.map(|a| format!(".{a}")).unwrap_or_default()
                ),
            )),
            Some(source_dir) => {
                if dirid == 13 && (source_dir != subdir || !dest.eq_ignore_ascii_case(source_name))
                {
                    self.push(Diag::error(
                        line,
                        "driverstore-copy",
                        format!(
                            "{source_name} moves from `{source_dir}` to `{subdir}`\\{dest} in the \
                             driver store, which keeps the package layout (InfVerif 1100)"
                        ),
                    ));
                }
            }
        }
        let path = if subdir.is_empty() {
            lower(dest)
        } else {
            format!("{subdir}\\{}", lower(dest))
        };
        Some(Copied { dirid, path })
    }

    /// Where a source file sits in the package (lower-case subdir), if it is
    /// listed; decorated `[SourceDisksFiles.arch]` first.
    pub(super) fn source_file(&mut self, file: &str, arch: Option<&str>) -> Option<String> {
        let mut candidates = Vec::new();
        if let Some(arch) = arch {
            candidates.push(format!("SourceDisksFiles.{arch}"));
        }
        candidates.push("SourceDisksFiles".to_string());
        for name in candidates {
            let Some(section) = self.inf.section(&name) else {
                continue;
            };
            for entry in &section.entries {
                let Some(key) = self.expand_key(entry) else {
                    continue;
                };
                if !key.eq_ignore_ascii_case(file) {
                    continue;
                }
                let values = self.expand_values(entry);
                let disk = values.first().cloned().unwrap_or_default();
                let disk_path = self.disk_path(entry.line, &disk, arch);
                let file_dir = values
                    .get(1)
                    .map(|s| s.trim_matches('\\').to_ascii_lowercase())
                    .unwrap_or_default();
                let dir = [disk_path.unwrap_or_default(), file_dir]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("\\");
                return Some(dir);
            }
        }
        None
    }

    /// The path of a disk in `[SourceDisksNames]`; reports unknown disks.
    pub(super) fn disk_path(
        &mut self,
        line: usize,
        disk: &str,
        arch: Option<&str>,
    ) -> Option<String> {
        let mut candidates = Vec::new();
        if let Some(arch) = arch {
            candidates.push(format!("SourceDisksNames.{arch}"));
        }
        candidates.push("SourceDisksNames".to_string());
        for name in &candidates {
            let Some(section) = self.inf.section(name) else {
                continue;
            };
            for entry in &section.entries {
                let Some(key) = self.expand_key(entry) else {
                    continue;
                };
                if key.trim() == disk.trim() {
                    let values = self.expand_values(entry);
                    return Some(
                        values
                            .get(3)
                            .map(|s| s.trim_matches('\\').to_ascii_lowercase())
                            .unwrap_or_default(),
                    );
                }
            }
        }
        self.push(Diag::error(
            line,
            "sourcedisks",
            format!("disk `{disk}` is not in [{}]", candidates.join("] or [")),
        ));
        None
    }

    pub(super) fn source_disks(&mut self) {
        for section in &self.inf.sections {
            let name = lower(&section.name);
            let (is_files, decoration) = if let Some(rest) = name.strip_prefix("sourcedisksfiles") {
                (true, rest)
            } else if let Some(rest) = name.strip_prefix("sourcedisksnames") {
                (false, rest)
            } else {
                continue;
            };
            if !decoration.is_empty() {
                let arch = decoration.strip_prefix('.').unwrap_or("");
                if !ARCHES.iter().any(|(_, a)| *a == arch) {
                    self.push(Diag::error(
                        section.line,
                        "unknown-section",
                        format!(
                            "[{}]: the decoration must be an architecture (x86, amd64, arm, \
                             arm64, ia64)",
                            section.name
                        ),
                    ));
                }
            }
            for entry in &section.entries {
                let key = self.expand_key(entry).unwrap_or_default();
                if is_files {
                    if !self.copied_files.contains(&lower(&key)) {
                        self.push(Diag::warning(
                            entry.line,
                            "sourcedisks",
                            format!("{key} is in [{}] but no CopyFiles copies it", section.name),
                        ));
                    }
                } else if parse_number(&key).is_none() {
                    self.push(Diag::error(
                        entry.line,
                        "sourcedisks",
                        format!("[{}]: disk id `{key}` is not a number", section.name),
                    ));
                }
            }
        }
    }
}
