//! The checks `cargo xtask infverify` applies. Each rule's source (a
//! Microsoft page, and the InfVerif code where one exists) is in the table of
//! `docs/infverify.md`; the rule names below are the ones printed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::parse::{Diag, Entry, Inf, Section, Severity, Strings, TokenProblem, expand};

/// Which of InfVerif's modes the rules follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/h` (WHQL, "Desktop" target platform): the Universal (13xx) rules
    /// are warnings.
    Desktop,
    /// `/u` (Universal): the 13xx rules are errors. The default.
    Universal,
    /// `/w` (Windows Driver): `/u` plus the driver-isolation file-location
    /// and registry rules (1320-1323) as errors.
    Windows,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text.to_ascii_lowercase().as_str() {
            "desktop" | "/h" | "h" => Some(Mode::Desktop),
            "universal" | "/u" | "u" => Some(Mode::Universal),
            "windows" | "/w" | "w" => Some(Mode::Windows),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Desktop => "desktop (/h)",
            Mode::Universal => "universal (/u)",
            Mode::Windows => "windows (/w)",
        }
    }
}

/// The architectures an INF section can be decorated for, as
/// (`NT` decoration, `SourceDisks*` decoration).
const ARCHES: [(&str, &str); 5] = [
    ("ntx86", "x86"),
    ("ntamd64", "amd64"),
    ("ntarm", "arm"),
    ("ntarm64", "arm64"),
    ("ntia64", "ia64"),
];

/// Directives whose every value names a section.
const SECTION_LIST_DIRECTIVES: [&str; 15] = [
    "copyfiles",
    "addreg",
    "delreg",
    "bitreg",
    "delfiles",
    "renfiles",
    "updateinis",
    "updateinifields",
    "ini2reg",
    "profileitems",
    "registerdlls",
    "unregisterdlls",
    "addproperty",
    "delproperty",
    "addpowersetting",
];

/// Directives that name one section at a value position (0-based), whose
/// entries are directives in turn (followed so their sections count as used).
const SECTION_AT: [(&str, usize); 6] = [
    ("kmdfservice", 1),
    ("umdfservice", 1),
    ("addinterface", 2),
    ("addcomponent", 2),
    ("addsoftware", 2),
    ("addeventprovider", 1),
];

/// The extensions of a DDInstall section that belong to it
/// ([INF DDInstall Section](https://learn.microsoft.com/windows-hardware/drivers/install/inf-ddinstall-section)).
const DDINSTALL_EXTENSIONS: [&str; 10] = [
    "services",
    "hw",
    "coinstallers",
    "interfaces",
    "wdf",
    "events",
    "components",
    "software",
    "filters",
    "logconfigoverride",
];

/// Install-section directives that change state outside the driver package:
/// "Found legacy ..." (InfVerif 1300-1302) under `/u`.
const LEGACY_DIRECTIVES: [&str; 11] = [
    "delfiles",
    "renfiles",
    "delreg",
    "bitreg",
    "updateinis",
    "updateinifields",
    "ini2reg",
    "profileitems",
    "registerdlls",
    "unregisterdlls",
    "logconfig",
];

const DEFAULT_INSTALL_DIRECTIVES: [&str; 22] = [
    "copyfiles",
    "copyinf",
    "addreg",
    "include",
    "needs",
    "delfiles",
    "renfiles",
    "delreg",
    "bitreg",
    "profileitems",
    "updateinis",
    "updateinifields",
    "ini2reg",
    "registerdlls",
    "unregisterdlls",
    "optiondesc",
    "addproperty",
    "delproperty",
    "addpowersetting",
    "featurescore",
    "reboot",
    "restart",
];

const SERVICES_DIRECTIVES: [&str; 4] = ["addservice", "delservice", "include", "needs"];

const SERVICE_INSTALL_KEYS: [&str; 19] = [
    "displayname",
    "description",
    "servicetype",
    "starttype",
    "errorcontrol",
    "servicebinary",
    "startname",
    "addreg",
    "delreg",
    "bitreg",
    "loadordergroup",
    "dependencies",
    "security",
    "requiredprivileges",
    "servicesidtype",
    "delayedautostart",
    "addtrigger",
    "failureactions",
    "bootflags",
];

/// What the checker was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// The file is a template (`$ARCH$` replaced, empty DriverVer /
    /// CatalogFile accepted), as `infverif /stampinf` validates it.
    pub template: bool,
}

/// One install entry point: `[DefaultInstall.NTamd64]` and its `.Services`.
struct InstallUnit<'a> {
    section: Option<&'a Section>,
    services: Option<&'a Section>,
    /// `SourceDisks*` decoration, `None` if the unit is undecorated.
    arch: Option<&'static str>,
    uninstall: bool,
}

/// A file a `CopyFiles` puts somewhere, for the ServiceBinary check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Copied {
    dirid: u32,
    /// Lower-case `subdir\name`, without leading or trailing `\`.
    path: String,
}

struct Ctx<'a> {
    inf: &'a Inf,
    strings: Strings,
    opts: Options,
    diags: Vec<Diag>,
    /// Lower-case section name -> the directives that referenced it.
    referenced: HashMap<String, HashSet<String>>,
    /// Lower-case file names some CopyFiles copies.
    copied_files: HashSet<String>,
    /// AddReg sections referenced from service-install sections.
    service_addreg: HashSet<String>,
}

/// Runs every rule on a parsed INF. The reader's own findings come first.
pub fn check(inf: &Inf, opts: Options) -> Vec<Diag> {
    let mut ctx = Ctx {
        inf,
        strings: Strings::from_inf(inf),
        opts,
        diags: inf.diags.clone(),
        referenced: HashMap::new(),
        copied_files: HashSet::new(),
        service_addreg: HashSet::new(),
    };
    if inf.sections.is_empty() && !inf.diags.is_empty() {
        return ctx.diags;
    }
    ctx.string_tokens();
    ctx.version();
    let units = ctx.install_units();
    ctx.entry_points(&units);
    for unit in &units {
        ctx.install_unit(unit);
    }
    ctx.manufacturer();
    ctx.class_install();
    ctx.addreg_sections();
    ctx.source_disks();
    ctx.unreferenced_sections();
    ctx.diags
        .sort_by_key(|d| (d.line, std::cmp::Reverse(d.severity)));
    ctx.diags
}

/// Parses a number as INF writes them: decimal or `0x` hexadecimal.
pub fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        text.parse().ok()
    }
}

/// Checks a DriverVer value: `mm/dd/yyyy[,w.x.y.z]` (`-` may separate the
/// date), two-digit month and day, four-digit year, each version part below
/// 65535. Returns what is wrong.
pub fn driver_ver_problem(value: &str) -> Option<String> {
    let mut parts = value.splitn(2, ',');
    let date = parts.next().unwrap_or("").trim();
    let version = parts.next().map(str::trim);
    let fields: Vec<&str> = date.split(['/', '-']).collect();
    let well_formed = fields.len() == 3
        && fields[0].len() == 2
        && fields[1].len() == 2
        && fields[2].len() == 4
        && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Some(format!(
            "date `{date}` is not mm/dd/yyyy (two-digit month and day, four-digit year)"
        ));
    }
    let month: u32 = fields[0].parse().unwrap_or(0);
    let day: u32 = fields[1].parse().unwrap_or(0);
    let year: u32 = fields[2].parse().unwrap_or(0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    };
    if day == 0 || day > days_in_month || year == 0 {
        return Some(format!("date `{date}` does not exist"));
    }
    if let Some(version) = version {
        let parts: Vec<&str> = version.split('.').collect();
        let ok = parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.parse::<u32>().is_ok_and(|n| n < 65535));
        if !ok {
            return Some(format!(
                "version `{version}` is not w.x.y.z with each part from 0 to 65534"
            ));
        }
    }
    None
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl<'a> Ctx<'a> {
    fn push(&mut self, diag: Diag) {
        self.diags.push(diag);
    }

    /// A Universal-INF rule (13xx): an error under `/u` and `/w`, a warning
    /// under `/h`.
    fn universal(&mut self, line: usize, rule: &'static str, message: String) {
        let diag = if self.opts.mode == Mode::Desktop {
            Diag::warning(line, rule, message)
        } else {
            Diag::error(line, rule, message)
        };
        self.push(diag);
    }

    /// A driver-isolation rule (132x): an error under `/w` only, otherwise a
    /// warning.
    fn isolation(&mut self, line: usize, rule: &'static str, message: String) {
        let diag = if self.opts.mode == Mode::Windows {
            Diag::error(line, rule, message)
        } else {
            Diag::warning(line, rule, message)
        };
        self.push(diag);
    }

    fn expand_values(&self, entry: &Entry) -> Vec<String> {
        let mut ignored = Vec::new();
        entry
            .values
            .iter()
            .map(|f| expand(f, &self.strings, &mut ignored))
            .collect()
    }

    fn expand_key(&self, entry: &Entry) -> Option<String> {
        let mut ignored = Vec::new();
        entry
            .key
            .as_ref()
            .map(|k| expand(k, &self.strings, &mut ignored))
    }

    /// The first value of `key` in `section`, expanded, with its line.
    fn value_of(&self, section: &Section, key: &str) -> Option<(String, usize)> {
        section.entries.iter().find_map(|e| {
            let k = self.expand_key(e)?;
            k.eq_ignore_ascii_case(key).then(|| {
                let values = self.expand_values(e);
                (values.join(","), e.line)
            })
        })
    }

    fn reference(&mut self, name: &str, directive: &str) {
        self.referenced
            .entry(lower(name))
            .or_default()
            .insert(lower(directive));
    }

    // === strings (1235) ===

    fn string_tokens(&mut self) {
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

    fn version(&mut self) {
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

    // === install sections ===

    fn install_units(&mut self) -> Vec<InstallUnit<'a>> {
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

    fn entry_points(&mut self, units: &[InstallUnit<'a>]) {
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

    fn install_unit(&mut self, unit: &InstallUnit<'a>) {
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
    fn install_section(
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

    fn services_section(&mut self, section: &Section, copied: &HashSet<Copied>, check: bool) {
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

    fn add_service(&mut self, entry: &Entry, copied: &HashSet<Copied>) {
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

    fn service_install(&mut self, name: &str, section: &Section, copied: &HashSet<Copied>) {
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

    fn service_binary(&mut self, binary: &str, line: usize, copied: &HashSet<Copied>) {
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

    // === files ===

    /// The DestinationDirs entry for a file-list section (or DefaultDestDir):
    /// (dirid, subdir).
    fn destination(&mut self, line: usize, list: &str, copies: bool) -> Option<(u32, String)> {
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

    fn copy_list(
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
    fn copy_file(&mut self, line: usize, file: &str, arch: Option<&'static str>) -> Option<Copied> {
        let (dirid, subdir) = self.destination(line, "DefaultDestDir", true)?;
        self.copy_file_to(line, dirid, &subdir, file, None, arch)
    }

    fn copy_file_to(
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
    fn source_file(&mut self, file: &str, arch: Option<&str>) -> Option<String> {
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
    fn disk_path(&mut self, line: usize, disk: &str, arch: Option<&str>) -> Option<String> {
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

    fn source_disks(&mut self) {
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

    // === registry ===

    fn addreg_sections(&mut self) {
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

    fn addreg_line(&mut self, section: &Section, entry: &Entry, for_service: bool) {
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

    // === PnP entry points (enough to follow an INF that is not ours) ===

    /// `[ClassInstall32(.decoration)]`: an entry point with install directives.
    fn class_install(&mut self) {
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

    fn manufacturer(&mut self) {
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

    fn ddinstall(&mut self, line: usize, install: &str, arch: Option<&'static str>) {
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

    // === sections (2083) ===

    fn unreferenced_sections(&mut self) {
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

fn is_guid(text: &str) -> bool {
    let Some(inner) = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
    else {
        return false;
    };
    let groups: Vec<&str> = inner.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Counts of errors and warnings.
pub fn counts(diags: &[Diag]) -> (usize, usize) {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diags.len() - errors)
}
