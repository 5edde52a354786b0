//! The recipe `cargo xtask check-kernel --wdk-include DIR` generates the
//! kernel face's bindings with (`build/wdk_recipe.rs`, shared with the
//! build script), checked on a host without a WDK: it must be wdk-sys's
//! (wdk-build 0.6) for a WDM driver on x64, or the WDK mode proves
//! nothing about what wdk-sys would generate. What running it against real
//! headers proves is in `docs/kernel-typecheck.md`.

use std::path::Path;

#[path = "../build/wdk_recipe.rs"]
mod wdk_recipe;

#[test]
fn the_header_set_is_wdk_builds_wdm_set_with_ntifs_first() {
    let includes: Vec<&str> = wdk_recipe::HEADER
        .lines()
        .map(|l| l.strip_prefix("#include ").expect("only #include lines"))
        .collect();
    // ntifs.h first: it switches PETHREAD/PEPROCESS to _KTHREAD/_KPROCESS.
    assert_eq!(includes, ["\"ntifs.h\"", "\"ntddk.h\"", "\"ntstrsafe.h\""]);
}

#[test]
fn the_clang_arguments_are_the_msvc_target_the_wdk_directories_definitions_and_flags() {
    let dir = Path::new("/wdk/Include/10.0.22621.0");
    let args = wdk_recipe::clang_args(dir);
    let expected: Vec<String> = [
        "--target=x86_64-pc-windows-msvc",
        "-fno-builtin",
        "--include-directory=/wdk/Include/10.0.22621.0/km/crt",
        "--include-directory=/wdk/Include/10.0.22621.0/km",
        "--include-directory=/wdk/Include/10.0.22621.0/shared",
        "--define-macro=_WIN64",
        "--define-macro=_AMD64_",
        "--define-macro=AMD64",
        "--define-macro=_KERNEL_MODE",
        "-fms-compatibility",
        "-fms-extensions",
        "-fdelayed-template-parsing",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(args[..expected.len()], expected[..]);
    // Then wdk-build's warning switches, and nothing else: no MinGW-w64 or
    // host include directory, no GNU target.
    for arg in &args[expected.len()..] {
        assert!(arg.starts_with("--warn-=no-"), "{arg}");
    }
    assert_eq!(args.len(), expected.len() + 10);
    assert!(
        !args
            .iter()
            .any(|a| a.contains("mingw") || a.contains("gnu"))
    );
}

#[test]
fn the_blocklist_keeps_wdk_builds_deprecated_allocators_out() {
    for item in [
        "ExAllocatePool",
        "ExAllocatePoolWithTag",
        "ExAllocatePoolWithQuotaTag",
        "ExAllocatePoolWithTagPriority",
    ] {
        assert!(wdk_recipe::BLOCKLIST.contains(&item), "{item}");
    }
    // What the kernel face calls instead is not blocked.
    for item in ["ExAllocatePool2", "ExFreePoolWithTag", "IoAllocateIrp"] {
        assert!(!wdk_recipe::BLOCKLIST.contains(&item), "{item}");
    }
}
