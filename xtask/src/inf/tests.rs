//! One test per rule: the good INF passes it, a deliberately broken copy
//! fails it with that rule (and the line it is on).

use super::parse::{Encoding, Severity, encode};
use super::{Mode, verify_bytes};

/// A complete, stamped, non-PnP kernel-service INF that every mode accepts.
const GOOD: &str = r#"[Version]
Signature   = "$Windows NT$"
Class       = Sample
ClassGuid   = {78A1C341-4539-11d3-B88D-00C04FAD5171}
Provider    = %Provider%
CatalogFile = good.cat
DriverVer   = 12/02/2025,1.2.3.4
PnpLockdown = 1

[SourceDisksNames]
1 = %Disk%,,,""

[SourceDisksFiles]
good.sys = 1,,

[DestinationDirs]
Good.Files = 13

[DefaultInstall.NTamd64]
CopyFiles = Good.Files

[DefaultInstall.NTamd64.Services]
AddService = Good,,Good.Service

[Good.Files]
good.sys

[Good.Service]
DisplayName   = %Name%
ServiceType   = 1
StartType     = 3
ErrorControl  = 1
ServiceBinary = %13%\good.sys
AddReg        = Good.AddReg

[Good.AddReg]
HKR,Parameters,Port,0x00010001,40007

[Strings]
Provider = "Example"
Disk     = "Disk"
Name     = "Good service"
"#;

/// The findings as (rule, severity, line).
fn findings(text: &str, mode: Mode) -> Vec<(&'static str, Severity, usize)> {
    verify_bytes(text.as_bytes(), false, mode)
        .diags
        .into_iter()
        .map(|d| (d.rule, d.severity, d.line))
        .collect()
}

/// GOOD with `from` replaced by `to` (which must occur exactly once).
fn broken(from: &str, to: &str) -> String {
    assert_eq!(
        GOOD.matches(from).count(),
        1,
        "`{from}` must occur once in GOOD"
    );
    GOOD.replace(from, to)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in the text"))
}

/// Asserts `text` has exactly one finding of `rule`, with `severity`, on the
/// line containing `at`, and no error of another rule.
fn assert_only(text: &str, mode: Mode, rule: &str, severity: Severity, at: &str) {
    let found = findings(text, mode);
    let line = if at.is_empty() { 0 } else { line_of(text, at) };
    let of_rule: Vec<(Severity, usize)> = found
        .iter()
        .filter(|f| f.0 == rule)
        .map(|f| (f.1, f.2))
        .collect();
    assert_eq!(
        of_rule,
        vec![(severity, line)],
        "expected one {rule} {severity:?} at line {line}; all findings: {found:?}"
    );
    let others: Vec<_> = found
        .iter()
        .filter(|(r, s, _)| *r != rule && *s == Severity::Error)
        .collect();
    assert!(others.is_empty(), "unexpected errors: {others:?}");
}

#[test]
fn the_good_inf_passes_every_mode() {
    for mode in [Mode::Desktop, Mode::Universal, Mode::Windows] {
        assert_eq!(findings(GOOD, mode), vec![], "{mode:?}");
    }
}

#[test]
fn the_project_template_passes_every_mode_as_a_template() {
    let inx = include_bytes!("../../../inf/wdk_async_echo.inx");
    for mode in [Mode::Desktop, Mode::Universal, Mode::Windows] {
        let report = verify_bytes(inx, true, mode);
        assert!(report.template);
        assert_eq!(report.diags, vec![], "{mode:?}");
    }
}

#[test]
fn grammar_variants_read_the_same() {
    // CRLF, UTF-16LE with BOM, upper-case names, continuation, comments.
    let crlf = GOOD.replace('\n', "\r\n");
    assert_eq!(findings(&crlf, Mode::Universal), vec![]);
    let utf16 = encode(&crlf, Encoding::Utf16Le).unwrap();
    assert!(
        verify_bytes(&utf16, false, Mode::Universal)
            .diags
            .is_empty()
    );
    let shouting = GOOD
        .replace("[DefaultInstall.NTamd64]", "[DEFAULTINSTALL.ntAMD64]")
        .replace(
            "CopyFiles = Good.Files",
            "COPYFILES = good.files ; a comment",
        )
        .replace("good.sys = 1,,", "GOOD.SYS = \\\n    1,,");
    assert_eq!(findings(&shouting, Mode::Universal), vec![]);
}

#[test]
fn encoding() {
    let mut bytes = vec![0xFE, 0xFF];
    bytes.extend(GOOD.encode_utf16().flat_map(u16::to_be_bytes));
    let report = verify_bytes(&bytes, false, Mode::Universal);
    assert_eq!(report.diags.len(), 1);
    assert_eq!(report.diags[0].rule, "encoding");
    assert_eq!(report.errors(), 1);
}

#[test]
fn syntax() {
    let text = broken("[Good.Files]", "[Good.Files");
    let found = findings(&text, Mode::Universal);
    assert!(found.contains(&("syntax", Severity::Error, line_of(&text, "[Good.Files"))));
}

#[test]
fn string_token() {
    let text = broken("DisplayName   = %Name%", "DisplayName   = %Nmae%");
    assert_only(
        &text,
        Mode::Universal,
        "string-token",
        Severity::Error,
        "%Nmae%",
    );
    // %% is a literal percent sign, not a token.
    let escaped = broken("DisplayName   = %Name%", "DisplayName   = \"100%% good\"");
    assert_eq!(findings(&escaped, Mode::Universal), vec![]);
    // A token must be in every localized Strings section too.
    let localized = format!("{GOOD}\n[Strings.0407]\nProvider = \"Beispiel\"\nDisk = \"D\"\n");
    assert_only(
        &localized,
        Mode::Universal,
        "string-token",
        Severity::Error,
        "%Name%",
    );
}

#[test]
fn version_signature() {
    let text = broken("\"$Windows NT$\"", "\"$Windows 95$\"");
    assert_only(
        &text,
        Mode::Universal,
        "version-signature",
        Severity::Error,
        "Signature",
    );
}

#[test]
fn version_class() {
    let text = broken(
        "{78A1C341-4539-11d3-B88D-00C04FAD5171}",
        "{78A1C341-4539-11d3-B88D}",
    );
    assert_only(
        &text,
        Mode::Universal,
        "version-class",
        Severity::Error,
        "ClassGuid",
    );
    let text = broken("Class       = Sample\n", "");
    assert_only(
        &text,
        Mode::Universal,
        "version-class",
        Severity::Error,
        "[Version]",
    );
}

#[test]
fn version_provider() {
    let text = broken("Provider = \"Example\"", "Provider = \"Microsoft\"");
    assert_only(
        &text,
        Mode::Universal,
        "version-provider",
        Severity::Error,
        "Provider    =",
    );
}

#[test]
fn version_driverver() {
    for bad in [
        "2025/12/02,1.0.0.0",
        "02/30/2025,1.0.0.0",
        "12/02/2025,1.0.65535.0",
        "12/2/2025",
    ] {
        let text = broken("12/02/2025,1.2.3.4", bad);
        assert_only(
            &text,
            Mode::Universal,
            "version-driverver",
            Severity::Error,
            "DriverVer",
        );
    }
    // An empty DriverVer is a template: accepted as if stamped.
    let template = broken("12/02/2025,1.2.3.4", "");
    assert_eq!(findings(&template, Mode::Universal), vec![]);
}

#[test]
fn version_catalogfile() {
    let text = broken("CatalogFile = good.cat\n", "");
    assert_only(
        &text,
        Mode::Universal,
        "version-catalogfile",
        Severity::Error,
        "[Version]",
    );
}

#[test]
fn version_pnplockdown_is_an_error_stricter_than_infverif() {
    let text = broken("PnpLockdown = 1\n", "");
    assert_only(
        &text,
        Mode::Universal,
        "version-pnplockdown",
        Severity::Error,
        "[Version]",
    );
    let zero = broken("PnpLockdown = 1", "PnpLockdown = 0");
    assert_only(
        &zero,
        Mode::Universal,
        "version-pnplockdown",
        Severity::Warning,
        "PnpLockdown",
    );
}

#[test]
fn install_section() {
    let text = GOOD
        .replace("[DefaultInstall.NTamd64]\nCopyFiles = Good.Files\n", "")
        .replace(
            "[DefaultInstall.NTamd64.Services]\nAddService = Good,,Good.Service\n",
            "",
        );
    let found = findings(&text, Mode::Universal);
    assert!(
        found.contains(&("install-section", Severity::Error, 0)),
        "{found:?}"
    );
}

#[test]
fn defaultinstall_manufacturer() {
    let text = format!("{GOOD}\n[Manufacturer]\n%Provider% = Models,NTamd64\n[Models.NTamd64]\n");
    let found = findings(&text, Mode::Universal);
    assert!(
        found
            .iter()
            .any(|f| f.0 == "defaultinstall-manufacturer" && f.1 == Severity::Error),
        "{found:?}"
    );
}

#[test]
fn defaultinstall_decoration() {
    let text = GOOD.replace("DefaultInstall.NTamd64", "DefaultInstall");
    let found = findings(&text, Mode::Universal);
    let decoration: Vec<_> = found
        .iter()
        .filter(|f| f.0 == "defaultinstall-decoration")
        .collect();
    assert_eq!(decoration.len(), 2, "{found:?}");
    assert!(decoration.iter().all(|f| f.1 == Severity::Error));
    // /h reports it as a warning.
    let desktop = findings(&text, Mode::Desktop);
    assert!(
        desktop.iter().all(|f| f.1 == Severity::Warning),
        "{desktop:?}"
    );
    // A TargetOSVersion after the architecture is fine; garbage is not.
    let versioned = GOOD.replace(
        "DefaultInstall.NTamd64",
        "DefaultInstall.NTamd64.10.0...25952",
    );
    assert_eq!(findings(&versioned, Mode::Universal), vec![]);
    let garbage = GOOD.replace("[DefaultInstall.NTamd64]", "[DefaultInstall.NTamd64.oops]");
    assert!(
        findings(&garbage, Mode::Universal)
            .iter()
            .any(|f| f.0 == "unknown-section")
    );
}

#[test]
fn unknown_directive() {
    let text = broken(
        "CopyFiles = Good.Files",
        "CopyFiles = Good.Files\nCopyFile = Good.Files",
    );
    assert_only(
        &text,
        Mode::Universal,
        "unknown-directive",
        Severity::Warning,
        "CopyFile =",
    );
    let text = broken(
        "CopyFiles = Good.Files",
        "CopyFiles = Good.Files\nDriverVer = 12/02/2025",
    );
    assert_only(
        &text,
        Mode::Universal,
        "unknown-directive",
        Severity::Error,
        "DriverVer = 12",
    );
}

#[test]
fn legacy() {
    let text = format!(
        "{}\n[Old.Del]\nold.sys\n",
        broken(
            "CopyFiles = Good.Files",
            "CopyFiles = Good.Files\nDelFiles = Old.Del"
        )
    )
    .replace("Good.Files = 13", "Good.Files = 13\nOld.Del = 12");
    assert_only(
        &text,
        Mode::Universal,
        "legacy",
        Severity::Error,
        "DelFiles",
    );
    let desktop = findings(&text, Mode::Desktop);
    assert!(desktop.contains(&("legacy", Severity::Warning, line_of(&text, "DelFiles"))));
}

#[test]
fn addservice() {
    for (from, to, at) in [
        (
            "ServiceType   = 1",
            "ServiceType   = 16777216",
            "ServiceType",
        ),
        ("StartType     = 3", "StartType     = 5", "StartType"),
        ("ErrorControl  = 1", "ErrorControl  = 4", "ErrorControl"),
        ("ErrorControl  = 1\n", "", "[Good.Service]"),
        (
            "AddService = Good,,Good.Service",
            "AddService = Good",
            "AddService",
        ),
    ] {
        let text = broken(from, to);
        assert_only(&text, Mode::Universal, "addservice", Severity::Error, at);
    }
    // A file system driver (a minifilter) is ServiceType 2.
    assert_eq!(
        findings(
            &broken("ServiceType   = 1", "ServiceType   = 2"),
            Mode::Universal
        ),
        vec![]
    );
}

#[test]
fn service_binary() {
    // Under %12%: a warning by default, an error with the file-location rules.
    let text = broken("ServiceBinary = %13%", "ServiceBinary = %12%")
        .replace("Good.Files = 13", "Good.Files = 12");
    let found = findings(&text, Mode::Universal);
    assert!(found.contains(&(
        "service-binary",
        Severity::Warning,
        line_of(&text, "ServiceBinary")
    )));
    assert!(found.iter().all(|f| f.1 == Severity::Warning), "{found:?}");
    let windows = findings(&text, Mode::Windows);
    assert!(windows.contains(&(
        "service-binary",
        Severity::Error,
        line_of(&text, "ServiceBinary")
    )));
    // Not copied where it points: an error (stricter than InfVerif).
    let text = broken(
        "ServiceBinary = %13%\\good.sys",
        "ServiceBinary = %13%\\other.sys",
    );
    assert_only(
        &text,
        Mode::Universal,
        "service-binary",
        Severity::Error,
        "ServiceBinary",
    );
    // Not %dirid%\file at all.
    let text = broken(
        "ServiceBinary = %13%\\good.sys",
        "ServiceBinary = C:\\good.sys",
    );
    assert_only(
        &text,
        Mode::Universal,
        "service-binary",
        Severity::Error,
        "ServiceBinary",
    );
}

#[test]
fn section_not_found() {
    let text = broken("CopyFiles = Good.Files", "CopyFiles = Good.Files, good.sys");
    assert_only(
        &text,
        Mode::Universal,
        "section-not-found",
        Severity::Error,
        "CopyFiles =",
    );
}

#[test]
fn destinationdirs() {
    let text = broken("Good.Files = 13\n", "");
    let found = findings(&text, Mode::Universal);
    assert!(found.contains(&(
        "destinationdirs",
        Severity::Error,
        line_of(&text, "CopyFiles =")
    )));
    // A copy outside the driver store is a /w error.
    let text = broken("Good.Files = 13", "Good.Files = 13\nOther.Files = 11")
        .replace(
            "CopyFiles = Good.Files",
            "CopyFiles = Good.Files, Other.Files",
        )
        .replace("[Good.Files]", "[Other.Files]\nother.dll\n\n[Good.Files]")
        .replace("good.sys = 1,,", "good.sys = 1,,\nother.dll = 1,,");
    assert_eq!(
        findings(&text, Mode::Windows),
        vec![(
            "destinationdirs",
            Severity::Error,
            line_of(&text, "Other.Files = 11")
        )]
    );
}

#[test]
fn copyfiles() {
    let text = broken(
        "[Good.Files]\ngood.sys",
        "[Good.Files]\ngood.sys\nextra = x.sys",
    );
    assert_only(
        &text,
        Mode::Universal,
        "copyfiles",
        Severity::Error,
        "extra = x.sys",
    );
}

#[test]
fn sourcedisks() {
    let text = broken("good.sys = 1,,", "good.sys = 2,,");
    assert_only(
        &text,
        Mode::Universal,
        "sourcedisks",
        Severity::Error,
        "good.sys = 2,,",
    );
    let text = broken("good.sys = 1,,", "other.sys = 1,,");
    let found = findings(&text, Mode::Universal);
    let file_entry = line_of(&text, "[Good.Files]") + 1;
    assert!(
        found.contains(&("sourcedisks", Severity::Error, file_entry)),
        "{found:?}"
    );
    assert!(found.contains(&(
        "sourcedisks",
        Severity::Warning,
        line_of(&text, "other.sys")
    )));
    // Decorated [SourceDisksFiles.amd64] serves the amd64 install.
    let decorated = broken("[SourceDisksFiles]", "[SourceDisksFiles.amd64]");
    assert_eq!(findings(&decorated, Mode::Universal), vec![]);
}

#[test]
fn driverstore_copy() {
    let text = broken("Good.Files = 13", "Good.Files = 13,sub");
    let found = findings(&text, Mode::Universal);
    let file_entry = line_of(&text, "[Good.Files]") + 1;
    assert!(
        found.contains(&("driverstore-copy", Severity::Error, file_entry)),
        "{found:?}"
    );
}

#[test]
fn addreg() {
    let text = broken("0x00010001,40007", "0x00010001,port");
    assert_only(
        &text,
        Mode::Universal,
        "addreg",
        Severity::Error,
        "HKR,Parameters",
    );
    let text = broken("HKR,Parameters,Port", "HKLM,Software\\Good,Port");
    assert_only(&text, Mode::Universal, "addreg", Severity::Error, "HKLM");
    // A service value outside Parameters: a /w error only.
    let text = broken("HKR,Parameters,Port", "HKR,,Port");
    assert_eq!(
        findings(&text, Mode::Universal),
        vec![("addreg", Severity::Warning, line_of(&text, "HKR,,Port"))]
    );
    assert_eq!(
        findings(&text, Mode::Windows),
        vec![("addreg", Severity::Error, line_of(&text, "HKR,,Port"))]
    );
}

#[test]
fn unknown_section() {
    let text = format!("{GOOD}\n[Strings.German]\nProvider = \"x\"\n");
    let found = findings(&text, Mode::Universal);
    assert!(found.contains(&(
        "unknown-section",
        Severity::Error,
        line_of(&text, "[Strings.German]")
    )));
}

#[test]
fn unreferenced_section() {
    let text = format!("{GOOD}\n[Forgotten.AddReg]\nHKR,Parameters,X,0x00010001,1\n");
    assert_eq!(
        findings(&text, Mode::Universal),
        vec![(
            "unreferenced-section",
            Severity::Warning,
            line_of(&text, "[Forgotten.AddReg]")
        )]
    );
}

#[test]
fn section_referenced_twice() {
    let text = broken(
        "AddReg        = Good.AddReg",
        "AddReg        = Good.AddReg\nDelReg = Good.AddReg",
    );
    let found = findings(&text, Mode::Universal);
    assert!(found.contains(&(
        "section-referenced-twice",
        Severity::Warning,
        line_of(&text, "[Good.AddReg]")
    )));
}

#[test]
fn rules_list_matches_the_docs() {
    let docs = include_str!("../../../docs/infverify.md");
    for rule in crate::infverify::RULES {
        assert!(
            docs.contains(&format!("| `{rule}` |")),
            "docs/infverify.md lacks {rule}"
        );
    }
}

/// A KMDF PnP INF written for these tests: Manufacturer, decorated Models,
/// a DDInstall with its `.Copy` file list, `.Wdf` (KmdfService names a
/// section) and `.Interfaces` (AddInterface names a section).
const PNP: &str = r#"[Version]
Signature   = "$WINDOWS NT$"
Class       = Sample
ClassGuid   = {78A1C341-4539-11d3-B88D-00C04FAD5171}
Provider    = %Provider%
CatalogFile = pnp.cat
DriverVer   = 12/02/2025,1.0.0.0
PnpLockdown = 1

[DestinationDirs]
Dev.NT.Copy = 13

[SourceDisksNames]
1 = %Disk%,,,""

[SourceDisksFiles]
pnp.sys = 1,,

[Manufacturer]
%Provider% = Models,NT$ARCH$

[Models.NT$ARCH$]
%Desc% = Dev, Root\PnpSample

[Dev.NT]
CopyFiles = Dev.NT.Copy

[Dev.NT.Copy]
pnp.sys

[Dev.NT.Services]
AddService = PnpSample,0x00000002,Dev.Service

[Dev.NT.Wdf]
KmdfService = PnpSample, Dev.WdfSection

[Dev.NT.Interfaces]
AddInterface = {cdc35b6e-0be4-4936-bf5f-5537380a7c1a},,Dev.Interface

[Dev.Interface]
AddProperty = Dev.Interface.Properties

[Dev.Interface.Properties]
{a8b865dd-2e3d-4094-ad97-e593a70c75d6},2,0x12,,"x"

[Dev.WdfSection]
KmdfLibraryVersion = 1.15

[Dev.Service]
ServiceType   = 1
StartType     = 3
ErrorControl  = 1
ServiceBinary = %13%\pnp.sys

[Strings]
Provider = "Example"
Disk     = "Disk"
Desc     = "PnP sample"
"#;

#[test]
fn pnp_infs_are_followed_through_their_directives() {
    // Before: [Dev.WdfSection], [Dev.Interface] and its properties were
    // "unreferenced", and [Dev.NT.Copy] "referenced twice" (taken for a
    // DDInstall extension).
    let report = verify_bytes(PNP.as_bytes(), false, Mode::Universal);
    assert!(report.template);
    assert_eq!(report.diags, vec![]);
}

#[test]
fn a_template_may_leave_driverver_out_for_stampinf() {
    // stampinf writes DriverVer into [Version] whether or not it is there.
    let template = GOOD.replace("DriverVer   = 12/02/2025,1.2.3.4\n", "");
    assert_eq!(
        verify_bytes(template.as_bytes(), true, Mode::Universal).diags,
        vec![]
    );
    // A stamped INF without it is still an error.
    assert_only(
        &template,
        Mode::Universal,
        "version-driverver",
        Severity::Error,
        "[Version]",
    );
}
