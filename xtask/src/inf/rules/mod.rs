//! The checks `cargo xtask infverify` applies. Each rule's source (a
//! Microsoft page, and the InfVerif code where one exists) is in the table of
//! `docs/infverify.md`; the rule names below are the ones printed.

use std::collections::{HashMap, HashSet};

mod files;
mod install;
mod pnp;
mod registry;
mod sections;
mod version;

use super::parse::{Diag, Entry, Inf, Section, Severity, Strings, expand};

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
