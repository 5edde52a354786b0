//! The Windows flow of `cargo xtask package`, as cargo-wdk runs it
//! (windows-drivers-rs `crates/cargo-wdk/src/actions/build/package_task.rs`)
//! and with the WDK found the way wdk-build finds it
//! (`crates/wdk-build/src/utils.rs` `detect_wdk_content_root`,
//! `cargo_make.rs` `setup_path`).
//!
//! One plan serves three uses: `--dry-run` prints it, a Windows host with
//! the WDK runs it, and every other host records each step in
//! `package.json` as skipped, with its command line and the reason.
//!
//! Paths are relative to the workspace root (the plan runs there), written
//! with `\`, so the printed commands are the ones Windows runs.

use std::path::{Path, PathBuf};

/// What the plan is built from.
#[derive(Debug, Clone)]
pub struct Params {
    /// `wdk_async_echo`
    pub name: String,
    /// `wdk-async-echo`
    pub crate_name: String,
    pub release: bool,
    /// `amd64` or `arm64`.
    pub arch: String,
    pub platform: Platform,
    pub sign: bool,
    pub verify_signature: bool,
    /// `mm/dd/yyyy`
    pub date: String,
    /// `w.x.y.z`
    pub version: String,
    /// The template, relative to the workspace root (`inf\wdk_async_echo.inx`).
    pub inx: String,
    /// The package folder, relative to the workspace root.
    pub out: String,
    /// The folder the package is assembled in, renamed to `out` at the end.
    pub partial: String,
    /// Cargo's target directory (`target`, or `CARGO_TARGET_DIR`).
    pub target: String,
}

/// `--target-platform`, and the InfVerif flag cargo-wdk passes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Desktop,
    Universal,
    Windows,
}

impl Platform {
    pub fn parse(text: &str) -> Option<Platform> {
        match text.to_ascii_lowercase().as_str() {
            "desktop" => Some(Platform::Desktop),
            "universal" => Some(Platform::Universal),
            "windows" => Some(Platform::Windows),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Platform::Desktop => "desktop",
            Platform::Universal => "universal",
            Platform::Windows => "windows",
        }
    }

    pub fn infverif_flag(self) -> &'static str {
        match self {
            Platform::Desktop => "/h",
            Platform::Universal => "/u",
            Platform::Windows => "/w",
        }
    }
}

/// The test certificate cargo-wdk creates once and reuses.
pub const CERT_STORE: &str = "WDRTestCertStore";
pub const CERT_NAME: &str = "WDRLocalTestCert";
/// cargo-wdk's default timestamp server.
pub const TIMESTAMP_URL: &str = "http://timestamp.digicert.com";

/// Where the WDK is, as wdk-build finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wdk {
    /// `C:\Program Files (x86)\Windows Kits\10`
    pub root: String,
    /// `10.0.26100.0`, or `<Version>` when unknown (dry run only).
    pub version: String,
    /// `bin\<version>` (or `WDKBinRoot`).
    pub bin_root: String,
    /// `tools\<version>` (or `WDKToolRoot`).
    pub tools_root: String,
    /// How it was found (printed with the dry run, kept in the manifest).
    pub found_by: String,
    /// The host architecture's folder name (`x64`, `arm64`).
    pub host: String,
}

/// The WDK's default location: the Windows Kits installer's default.
pub const DEFAULT_KITS_ROOT: &str = r"C:\Program Files (x86)\Windows Kits\10";

impl Wdk {
    /// Finds the WDK as wdk-build does: `WDKContentRoot`, then
    /// `MicrosoftKitRoot\Windows Kits\<WDKKitVersion or 10.0>`, then the
    /// registry's `KitsRoot10` (Windows only); the version from
    /// `Version_Number` or the newest `Lib\10.*` folder.
    ///
    /// `var` reads the environment; `exists` says whether a directory
    /// exists; `registry` reads `KitsRoot10`.
    pub fn detect(
        var: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&str) -> bool,
        registry: &dyn Fn() -> Option<String>,
        newest_lib: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Wdk, Vec<String>> {
        let mut looked = Vec::new();
        let mut found = None;
        if let Some(root) = var("WDKContentRoot") {
            let root = root.trim_end_matches('\\').to_string();
            if exists(&root) {
                found = Some((root, "WDKContentRoot".to_string()));
            } else {
                looked.push(format!("WDKContentRoot={root} (not a directory)"));
            }
        } else {
            looked.push("WDKContentRoot (not set)".into());
        }
        if found.is_none() {
            match var("MicrosoftKitRoot") {
                Some(kit_root) => {
                    let version = var("WDKKitVersion").unwrap_or_else(|| "10.0".into());
                    let root = format!(r"{kit_root}\Windows Kits\{version}");
                    if exists(&root) {
                        found = Some((root, "MicrosoftKitRoot".into()));
                    } else {
                        looked.push(format!("{root} (from MicrosoftKitRoot; not a directory)"));
                    }
                }
                None => looked.push("MicrosoftKitRoot (not set)".into()),
            }
        }
        if found.is_none() {
            match registry() {
                Some(root) => found = Some((root, "registry KitsRoot10".into())),
                None => looked.push(
                    r"HKLM\SOFTWARE\(Wow6432Node\)Microsoft\Windows Kits\Installed Roots@KitsRoot10 (absent)"
                        .into(),
                ),
            }
        }
        let Some((root, found_by)) = found else {
            return Err(looked);
        };
        let root = root.trim_end_matches('\\').to_string();
        let version = match var("Version_Number").or_else(|| newest_lib(&format!(r"{root}\Lib"))) {
            Some(v) => v,
            None => {
                looked.push(format!(
                    r"{root}\Lib\10.* (no SDK version folder; Version_Number not set)"
                ));
                return Err(looked);
            }
        };
        Ok(Wdk::at(&root, &version, &found_by, var))
    }

    /// The layout under `root` for `version`; `WDKBinRoot` / `WDKToolRoot`
    /// override the bin and tools folders, as in wdk-build.
    pub fn at(
        root: &str,
        version: &str,
        found_by: &str,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Wdk {
        Wdk {
            root: root.to_string(),
            version: version.to_string(),
            bin_root: var("WDKBinRoot").unwrap_or_else(|| format!(r"{root}\bin\{version}")),
            tools_root: var("WDKToolRoot").unwrap_or_else(|| format!(r"{root}\tools\{version}")),
            found_by: found_by.to_string(),
            host: if cfg!(target_arch = "aarch64") {
                "arm64".into()
            } else {
                "x64".into()
            },
        }
    }

    /// The folders wdk-build puts on PATH, in its order: the host bin
    /// folder, the x86 bin folder, the host tools folder.
    pub fn search_dirs(&self) -> Vec<String> {
        vec![
            format!(r"{}\{}", self.bin_root, self.host),
            format!(r"{}\x86", self.bin_root),
            format!(r"{}\{}", self.tools_root, self.host),
        ]
    }

    /// Where each tool sits in a WDK install (used when the WDK is not on
    /// this host, for the dry run): inf2cat is an x86 tool, infverif lives
    /// under `tools`, the rest under the host's bin folder.
    pub fn default_path(&self, tool: &str) -> String {
        let dirs = self.search_dirs();
        let dir = match tool {
            "inf2cat.exe" => &dirs[1],
            "infverif.exe" => &dirs[2],
            _ => &dirs[0],
        };
        format!(r"{dir}\{tool}")
    }

    /// The tool's path: the first search folder that has it (per `exists`),
    /// or an error naming the tool and every folder looked in.
    pub fn find(&self, tool: &str, exists: &dyn Fn(&str) -> bool) -> Result<String, String> {
        let dirs = self.search_dirs();
        dirs.iter()
            .map(|d| format!(r"{d}\{tool}"))
            .find(|p| exists(p))
            .ok_or_else(|| {
                format!(
                    "{tool} not found in the WDK at {} (found by {}); looked in {}",
                    self.root,
                    self.found_by,
                    dirs.join(", ")
                )
            })
    }

    /// The WDK build number (`10.0.26100.0` -> 26100).
    pub fn build_number(&self) -> Option<u32> {
        self.version.split('.').nth(2)?.parse().ok()
    }
}

/// One step of the Windows flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run a program with arguments, in the workspace root.
    Run {
        name: &'static str,
        program: String,
        args: Vec<String>,
    },
    /// Copy a file.
    Copy { from: String, to: String },
    /// The test certificate: reuse `cer` if it exists; else export it from
    /// the store if `certmgr -s` lists it; else create it with makecert.
    Certificate {
        cer: String,
        list: Vec<String>,
        export: Vec<String>,
        create: Vec<String>,
    },
    /// Rename the assembled folder into place.
    Rename { from: String, to: String },
    /// A step cargo-wdk skips, with why.
    Skipped { name: &'static str, reason: String },
}

fn quote(arg: &str) -> String {
    if arg.is_empty() || arg.contains([' ', '\t', '"']) {
        format!("\"{}\"", arg.replace('"', "\\\""))
    } else {
        arg.to_string()
    }
}

fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(quote(program))
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Run { name, .. } | Step::Skipped { name, .. } => name,
            Step::Copy { .. } => "copy",
            Step::Certificate { .. } => "test certificate",
            Step::Rename { .. } => "rename into place",
        }
    }

    /// The command lines this step runs, as printed by `--dry-run`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Step::Run { program, args, .. } => vec![command_line(program, args)],
            Step::Copy { from, to } => vec![format!("copy /y {} {}", quote(from), quote(to))],
            Step::Certificate {
                cer,
                list,
                export,
                create,
            } => vec![
                format!("rem test certificate: reuse {cer} if it exists, else:"),
                command_line(&list[0], &list[1..]),
                format!("rem   if that lists {CERT_NAME}:"),
                command_line(&export[0], &export[1..]),
                "rem   otherwise:".to_string(),
                command_line(&create[0], &create[1..]),
            ],
            Step::Rename { from, to } => vec![format!("move {} {}", quote(from), quote(to))],
            Step::Skipped { name, reason } => vec![format!("rem {name} skipped: {reason}")],
        }
    }
}

/// cargo-wdk: InfVerif of WDK builds 25798..=26100 lacks `/samples`.
const MISSING_SAMPLES_FLAG: std::ops::RangeInclusive<u32> = 25798..=26100;

/// The Windows flow's steps, in cargo-wdk's order: build, copy (dll renamed
/// to sys, pdb, inx as inf), stampinf, inf2cat, infverif, test-sign, verify;
/// then the assembled folder is renamed into place.
///
/// `tool` gives each WDK tool's path; `sample_class` is whether the INF's
/// Class is `Sample` (cargo-wdk's `--sample`: infverif needs `/samples`, or
/// `/msft` before build 25798).
pub fn windows_flow(
    p: &Params,
    wdk: &Wdk,
    tool: &dyn Fn(&str) -> String,
    sample_class: bool,
) -> Vec<Step> {
    let triple = match p.arch.as_str() {
        "arm64" => "aarch64-pc-windows-msvc",
        _ => "x86_64-pc-windows-msvc",
    };
    let profile = if p.release { "release" } else { "debug" };
    let build_dir = format!(r"{}\{triple}\{profile}", p.target);
    let pkg = &p.partial;
    let file = |ext: &str| format!(r"{pkg}\{}.{ext}", p.name);
    let mut build_args: Vec<String> = [
        "build",
        "--package",
        &p.crate_name,
        "--features",
        "kernel",
        "--target",
        triple,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if p.release {
        build_args.push("--release".into());
    }
    let mut steps = vec![
        Step::Run {
            name: "cargo build (kernel)",
            program: "cargo".into(),
            args: build_args,
        },
        Step::Copy {
            from: format!(r"{build_dir}\{}.dll", p.name),
            to: file("sys"),
        },
        Step::Copy {
            from: format!(r"{build_dir}\{}.pdb", p.name),
            to: file("pdb"),
        },
        Step::Copy {
            from: p.inx.clone(),
            to: file("inf"),
        },
        Step::Run {
            name: "stampinf",
            program: tool("stampinf.exe"),
            args: vec![
                "-f".into(),
                file("inf"),
                "-d".into(),
                p.date.clone(),
                "-a".into(),
                p.arch.clone(),
                "-c".into(),
                format!("{}.cat", p.name),
                "-v".into(),
                p.version.clone(),
            ],
        },
        Step::Run {
            name: "inf2cat",
            program: tool("inf2cat.exe"),
            args: vec![
                format!("/driver:{pkg}"),
                format!(
                    "/os:{}",
                    if p.arch == "arm64" {
                        "Server10_arm64"
                    } else {
                        "10_x64"
                    }
                ),
                "/uselocaltime".into(),
            ],
        },
    ];
    let mut infverif_args = vec!["/v".to_string(), p.platform.infverif_flag().to_string()];
    let mut infverif_skipped = None;
    if sample_class {
        match wdk.build_number() {
            Some(n) if MISSING_SAMPLES_FLAG.contains(&n) => {
                infverif_skipped = Some(format!(
                    "InfVerif of WDK build {n} has no /samples flag for the Sample class \
                     (cargo-wdk skips it too); `cargo xtask infverify` checked the INF"
                ));
            }
            Some(n) if n < *MISSING_SAMPLES_FLAG.start() => infverif_args.push("/msft".into()),
            _ => infverif_args.push("/samples".into()),
        }
    }
    infverif_args.push(file("inf"));
    steps.push(match infverif_skipped {
        Some(reason) => Step::Skipped {
            name: "infverif",
            reason,
        },
        None => Step::Run {
            name: "infverif",
            program: tool("infverif.exe"),
            args: infverif_args,
        },
    });
    if p.sign {
        let cer = format!(r"{}\{profile}\{CERT_NAME}.cer", p.target);
        let certmgr = tool("certmgr.exe");
        steps.push(Step::Certificate {
            cer: cer.clone(),
            list: vec![certmgr.clone(), "-s".into(), CERT_STORE.into()],
            export: vec![
                certmgr,
                "-put".into(),
                "-s".into(),
                CERT_STORE.into(),
                "-c".into(),
                "-n".into(),
                CERT_NAME.into(),
                cer.clone(),
            ],
            create: vec![
                tool("makecert.exe"),
                "-r".into(),
                "-pe".into(),
                "-a".into(),
                "SHA256".into(),
                "-eku".into(),
                "1.3.6.1.5.5.7.3.3".into(),
                "-ss".into(),
                CERT_STORE.into(),
                "-n".into(),
                format!("CN={CERT_NAME}"),
                cer.clone(),
            ],
        });
        steps.push(Step::Copy {
            from: cer,
            to: format!(r"{pkg}\{CERT_NAME}.cer"),
        });
        for ext in ["sys", "cat"] {
            steps.push(Step::Run {
                name: "signtool sign",
                program: tool("signtool.exe"),
                args: [
                    "sign",
                    "/v",
                    "/s",
                    CERT_STORE,
                    "/n",
                    CERT_NAME,
                    "/t",
                    TIMESTAMP_URL,
                    "/fd",
                    "SHA256",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([file(ext)])
                .collect(),
            });
        }
        if p.verify_signature {
            for ext in ["sys", "cat"] {
                steps.push(Step::Run {
                    name: "signtool verify",
                    program: tool("signtool.exe"),
                    args: vec!["verify".into(), "/v".into(), "/pa".into(), file(ext)],
                });
            }
        }
    }
    steps.push(Step::Rename {
        from: p.partial.clone(),
        to: p.out.clone(),
    });
    steps
}

/// A path relative to the workspace root, with `\`.
pub fn windows_relative(root: &Path, path: &Path) -> String {
    let relative: PathBuf = path
        .strip_prefix(root)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf);
    relative
        .components()
        .map(|c| match c {
            std::path::Component::RootDir => String::new(),
            other => other.as_os_str().to_string_lossy().into_owned(),
        })
        .collect::<Vec<_>>()
        .join("\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_wdk_is_found_in_wdk_build_order() {
        let dirs = [r"C:\ewdk\Windows Kits\10", r"D:\kits\Windows Kits\10.0"];
        let exists = |p: &str| dirs.contains(&p);
        let newest =
            |lib: &str| (lib == r"C:\ewdk\Windows Kits\10\Lib").then(|| "10.0.22621.0".into());
        // WDKContentRoot wins when it is a directory.
        let var = env(&[("WDKContentRoot", r"C:\ewdk\Windows Kits\10\")]);
        let wdk = Wdk::detect(&var, &exists, &|| None, &newest).unwrap();
        assert_eq!(wdk.root, r"C:\ewdk\Windows Kits\10");
        assert_eq!(wdk.version, "10.0.22621.0");
        assert_eq!(wdk.found_by, "WDKContentRoot");
        // A bad WDKContentRoot falls through to MicrosoftKitRoot + WDKKitVersion.
        let var = env(&[
            ("WDKContentRoot", r"C:\nowhere"),
            ("MicrosoftKitRoot", r"D:\kits"),
            ("Version_Number", "10.0.26100.0"),
        ]);
        let wdk = Wdk::detect(&var, &exists, &|| None, &newest).unwrap();
        assert_eq!(wdk.root, r"D:\kits\Windows Kits\10.0");
        assert_eq!(wdk.bin_root, r"D:\kits\Windows Kits\10.0\bin\10.0.26100.0");
        // Then the registry.
        let wdk = Wdk::detect(
            &env(&[]),
            &exists,
            &|| Some(r"C:\ewdk\Windows Kits\10".into()),
            &newest,
        )
        .unwrap();
        assert_eq!(wdk.found_by, "registry KitsRoot10");
        // Nothing: every place looked at is named.
        let looked = Wdk::detect(&env(&[]), &exists, &|| None, &newest).unwrap_err();
        assert_eq!(looked.len(), 3, "{looked:?}");
        assert!(looked[2].contains("KitsRoot10"));
    }

    #[test]
    fn a_missing_tool_names_where_it_was_looked_for() {
        let wdk = Wdk::at(r"C:\K", "10.0.1.0", "test", &|_| None);
        let error = wdk.find("stampinf.exe", &|_| false).unwrap_err();
        assert!(error.contains("stampinf.exe not found"), "{error}");
        for dir in wdk.search_dirs() {
            assert!(error.contains(&dir), "{error} lacks {dir}");
        }
        let found = wdk.find("inf2cat.exe", &|p| {
            p == r"C:\K\bin\10.0.1.0\x86\inf2cat.exe"
        });
        assert_eq!(found.unwrap(), r"C:\K\bin\10.0.1.0\x86\inf2cat.exe");
    }

    #[test]
    fn infverif_flags_follow_cargo_wdk() {
        let params = Params {
            name: "d".into(),
            crate_name: "d".into(),
            release: false,
            arch: "amd64".into(),
            platform: Platform::Desktop,
            sign: false,
            verify_signature: false,
            date: "12/02/2025".into(),
            version: "1.0.0.0".into(),
            inx: "d.inx".into(),
            out: "o".into(),
            partial: "o.partial".into(),
            target: "target".into(),
        };
        let infverif = |version: &str, sample: bool| {
            let wdk = Wdk::at("K", version, "t", &|_| None);
            windows_flow(&params, &wdk, &|t| t.to_string(), sample)
                .into_iter()
                .find(|s| s.name() == "infverif")
                .unwrap()
                .lines()
                .join("\n")
        };
        assert_eq!(
            infverif("10.0.26100.0", false),
            r"infverif.exe /v /h o.partial\d.inf"
        );
        assert_eq!(
            infverif("10.0.22621.0", true),
            r"infverif.exe /v /h /msft o.partial\d.inf"
        );
        assert_eq!(
            infverif("10.0.26200.0", true),
            r"infverif.exe /v /h /samples o.partial\d.inf"
        );
        assert!(infverif("10.0.26100.0", true).starts_with("rem infverif skipped"));
        // Not signing: no certificate, no signtool.
        let wdk = Wdk::at("K", "10.0.26100.0", "t", &|_| None);
        let steps = windows_flow(&params, &wdk, &|t| t.to_string(), false);
        assert!(
            steps
                .iter()
                .all(|s| !s.lines().join(" ").contains("signtool"))
        );
        assert!(matches!(steps.last(), Some(Step::Rename { .. })));
    }
}
