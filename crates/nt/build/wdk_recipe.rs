//! How wdk-sys (wdk-build 0.6) generates its bindings from a WDK, for a
//! WDM driver on x64: the recipe `cargo xtask check-kernel --wdk-include
//! DIR` follows (`NT_TYPECHECK_WDK_INCLUDE`). Included by the build script
//! (`mod wdk_recipe`) and by `tests/wdk_recipe.rs`, which checks it, so the
//! command the WDK mode runs is tested on hosts without a WDK. Plain data
//! and string building only: no bindgen here.

use std::path::Path;

/// wdk-build's WDM header set, `ntifs.h` first (it defines
/// `_NTIFS_INCLUDED_`, which switches `wdm.h`/`ntddk.h` to the `_KTHREAD`
/// and `_KPROCESS` pointer types).
pub const HEADER: &str = "#include \"ntifs.h\"\n#include \"ntddk.h\"\n#include \"ntstrsafe.h\"\n";

/// The target bindgen's clang parses for: wdk-sys's bindings are generated
/// for MSVC (`long` is 32 bits there; the bindings' `ctypes::c_long` is
/// `i32` to match).
pub const TARGET: &str = "--target=x86_64-pc-windows-msvc";

/// The subdirectories of `Include/<version>`, in wdk-build's order.
pub const INCLUDE_DIRECTORIES: [&str; 3] = ["km/crt", "km", "shared"];

/// wdk-build's definitions for a kernel-mode x64 build.
pub const DEFINITIONS: [&str; 4] = ["_WIN64", "_AMD64_", "AMD64", "_KERNEL_MODE"];

/// wdk-build 0.6's `wdk_bindgen_compiler_flags`.
pub const COMPILER_FLAGS: &[&str] = &[
    "-fms-compatibility",
    "-fms-extensions",
    "-fdelayed-template-parsing",
    "--warn-=no-nonportable-include-path",
    "--warn-=no-pragma-pack",
    "--warn-=no-ignored-attributes",
    "--warn-=no-ignored-pragma-intrinsic",
    "--warn-=no-visibility",
    "--warn-=no-switch",
    "--warn-=no-comment",
    "--warn-=no-deprecated-declarations",
    "--warn-=no-invalid-token-paste",
    "--warn-=no-microsoft",
];

/// wdk-build 0.6's blocklist (`bindgen.rs`: deprecated or unusable
/// items), applied in WDK mode as wdk-sys applies it.
pub const BLOCKLIST: &[&str] = &[
    "ExAllocatePoolWithTag",
    "ExAllocatePoolWithQuotaTag",
    "ExAllocatePoolWithTagPriority",
    "ExAllocatePool",
    "USBD_CalculateUsbBandwidth",
    "USBD_CreateConfigurationRequest",
    "USBD_Debug_LogEntry",
    "USBD_GetUSBDIVersion",
    "USBD_ParseConfigurationDescriptor",
    "USBD_QueryBusTime",
    "USBD_RegisterHcFilter",
    "IOCTL_USB_DIAG_IGNORE_HUBS_OFF",
    "IOCTL_USB_DIAG_IGNORE_HUBS_ON",
    "IOCTL_USB_DIAGNOSTIC_MODE_OFF",
    "IOCTL_USB_DIAGNOSTIC_MODE_ON",
    "IOCTL_USB_GET_HUB_CAPABILITIES",
    "IOCTL_USB_HCD_DISABLE_PORT",
    "IOCTL_USB_HCD_ENABLE_PORT",
    "IOCTL_USB_HCD_GET_STATS_1",
    "IOCTL_USB_HCD_GET_STATS_2",
    "IOCTL_USB_RESET_HUB",
    ".*MCG_CAP(?:__bindgen.*)?",
    ".*WHEA_XPF_MCA_SECTION",
    ".*WHEA_ARM_BUS_ERROR(?:__bindgen.*)?",
    ".*WHEA_ARM_PROCESSOR_ERROR",
    ".*WHEA_ARM_CACHE_ERROR",
    ".*ADDRESS0_OWNERSHIP_ACQUIRE",
    ".*USBDEVICE_ABORTIO",
    ".*USBDEVICE_STARTIO",
    ".*USBDEVICE_TREE_PURGEIO",
];

/// The clang arguments for the Include directory `dir`: the target, no
/// builtins, the include directories, the definitions and the compiler
/// flags, in that order.
pub fn clang_args(dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![TARGET.into(), "-fno-builtin".into()];
    for sub in INCLUDE_DIRECTORIES {
        args.push(format!("--include-directory={}", dir.join(sub).display()));
    }
    for define in DEFINITIONS {
        args.push(format!("--define-macro={define}"));
    }
    args.extend(COMPILER_FLAGS.iter().map(|f| (*f).to_owned()));
    args
}
