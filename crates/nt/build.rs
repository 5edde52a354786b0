//! Build script of `nt`.
//!
//! Ordinary builds (the simulated kernel on any host, the kernel face on
//! wdk-sys for a Windows target) generate nothing.
//!
//! In the kernel face's **type-check mode** (`RUSTFLAGS="--cfg nt_typecheck"`
//! on a non-Windows host; see `docs/kernel-typecheck.md`) it generates
//! bindings to the NT kernel API with bindgen, configured like wdk-sys
//! (module-constant enums, `core` types, 32-bit `c_long`), into
//! `$OUT_DIR/typecheck_types.rs` (types and constants, the root of wdk-sys)
//! and `$OUT_DIR/typecheck_ntddk.rs` (functions, `wdk_sys::ntddk`), from
//! either
//! - MinGW-w64's DDK headers (the default, what CI has), arranged to match
//!   wdk-sys's `ntifs.h`-first configuration, or
//! - a real WDK `Include/<version>` directory (`NT_TYPECHECK_WDK_INCLUDE`,
//!   set by `cargo xtask check-kernel --wdk-include DIR`): `ntifs.h`,
//!   `ntddk.h` and `ntstrsafe.h` with wdk-build 0.6's target, include
//!   directories, definitions, compiler flags and blocklist (then the cfg
//!   `nt_typecheck_wdk` is set).
//!
//! The generated code is never committed.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build/wdk_recipe.rs");
    println!("cargo::rerun-if-env-changed=NT_TYPECHECK_MINGW_INCLUDE");
    println!("cargo::rerun-if-env-changed=NT_TYPECHECK_CLANG_INCLUDE");
    println!("cargo::rerun-if-env-changed=NT_TYPECHECK_WDK_INCLUDE");
    println!("cargo::rustc-check-cfg=cfg(nt_typecheck_wdk)");

    let typecheck_requested = std::env::var_os("CARGO_CFG_NT_TYPECHECK").is_some();
    let windows_target = std::env::var("CARGO_CFG_WINDOWS").is_ok();
    if !typecheck_requested || windows_target {
        return;
    }

    #[cfg(nt_typecheck)]
    typecheck::generate();

    #[cfg(not(nt_typecheck))]
    panic!(
        "`--cfg nt_typecheck` reached the crate but not its build script: the type-check mode \
         runs on the host target only. Run `cargo xtask check-kernel` (or set \
         RUSTFLAGS=\"--cfg nt_typecheck\" without `--target`)."
    );
}

/// How wdk-sys generates its bindings from a WDK: the header set, clang
/// arguments and blocklist (shared with `tests/wdk_recipe.rs`).
#[cfg(nt_typecheck)]
#[path = "build/wdk_recipe.rs"]
mod wdk_recipe;

#[cfg(nt_typecheck)]
mod typecheck {
    use std::path::{Path, PathBuf};

    use bindgen::CodegenConfig;

    use super::wdk_recipe;

    /// Functions MinGW-w64 lacks or declares otherwise (declared by hand in
    /// `src/kernel/typecheck.rs` in MinGW mode), generated from the WDK's
    /// headers in WDK mode.
    const WDK_ONLY_FUNCTIONS: &[&str] = &[
        "ExAllocatePool2",
        "KeQuerySystemTimePrecise",
        "KeQueryInterruptTimePrecise",
        "MmMapLockedPagesSpecifyCache",
        "ZwWaitForSingleObject",
        // Exported since Windows 8 (wdm.h: NTDDI_VERSION >= NTDDI_WIN8 and
        // !NT_INLINE_IRQL); MinGW-w64 only has the FORCEINLINE versions.
        "KfRaiseIrql",
        "KeLowerIrql",
    ];

    /// Functions the kernel face re-exports from `ntddk` (wdk-sys generates
    /// every one of them; the FORCEINLINE helpers and macros are hand-ported
    /// in `src/kernel`, so they are not in this list).
    const FUNCTIONS: &[&str] = &[
        // Io
        "IoAllocateIrp",
        "IoFreeIrp",
        "IoReuseIrp",
        "IoInitializeIrp",
        "IoSetCompletionRoutineEx",
        "IofCallDriver",
        "IofCompleteRequest",
        "IoCancelIrp",
        "IoAcquireCancelSpinLock",
        "IoReleaseCancelSpinLock",
        "IoCreateDevice",
        "IoDeleteDevice",
        "IoCreateSymbolicLink",
        "IoDeleteSymbolicLink",
        "IoAllocateWorkItem",
        "IoQueueWorkItem",
        "IoFreeWorkItem",
        "IoAllocateMdl",
        "IoFreeMdl",
        // Ke
        "KeInitializeEvent",
        "KeSetEvent",
        "KeResetEvent",
        "KeClearEvent",
        "KeReadStateEvent",
        "KeWaitForSingleObject",
        "KeAcquireSpinLockRaiseToDpc",
        "KeReleaseSpinLock",
        "KeAcquireSpinLockAtDpcLevel",
        "KeReleaseSpinLockFromDpcLevel",
        "KeDelayExecutionThread",
        // KDPC / KTIMER (KeQueryInterruptTimePrecise, Windows 8.1: absent
        // from MinGW-w64, declared in src/kernel/typecheck.rs)
        "KeInitializeDpc",
        "KeInsertQueueDpc",
        "KeRemoveQueueDpc",
        "KeFlushQueuedDpcs",
        "KeInitializeTimer",
        "KeInitializeTimerEx",
        "KeSetTimer",
        "KeSetTimerEx",
        "KeCancelTimer",
        "KeReadStateTimer",
        "KeEnterCriticalRegion",
        "KeLeaveCriticalRegion",
        // KeQuerySystemTimePrecise (Windows 8.1): absent from MinGW-w64,
        // declared in src/kernel/typecheck.rs.
        // Ex (ExAllocatePool2: absent from MinGW-w64, declared in
        // src/kernel/typecheck.rs)
        "ExFreePool",
        "ExFreePoolWithTag",
        // Mm
        "MmBuildMdlForNonPagedPool",
        // MmMapLockedPagesSpecifyCache: MinGW-w64 types `Priority` as
        // MM_PAGE_PRIORITY, the WDK as ULONG; declared in typecheck.rs.
        // Ps / Ob / Zw / Rtl
        "PsCreateSystemThread",
        "PsTerminateSystemThread",
        "ObReferenceObjectByHandle",
        "ObfDereferenceObject",
        "ZwClose",
        "ZwOpenKey",
        "ZwQueryValueKey",
        "RtlInitUnicodeString",
        // Debugger output
        "DbgPrintEx",
    ];

    /// Types the kernel face re-exports or checks against `types.rs`.
    const TYPES: &[&str] = &[
        "IRP",
        "PIRP",
        "IO_STACK_LOCATION",
        "PIO_STACK_LOCATION",
        "IO_STATUS_BLOCK",
        "PIO_STATUS_BLOCK",
        "MDL",
        "PMDL",
        "PMDLX",
        "KEVENT",
        "PKEVENT",
        "PRKEVENT",
        "DRIVER_OBJECT",
        "PDRIVER_OBJECT",
        "DEVICE_OBJECT",
        "PDEVICE_OBJECT",
        "FILE_OBJECT",
        "PFILE_OBJECT",
        "UNICODE_STRING",
        "PUNICODE_STRING",
        "PCUNICODE_STRING",
        "LARGE_INTEGER",
        "PLARGE_INTEGER",
        "LIST_ENTRY",
        "PLIST_ENTRY",
        "OBJECT_ATTRIBUTES",
        "POBJECT_ATTRIBUTES",
        "CLIENT_ID",
        "PCLIENT_ID",
        "KEY_VALUE_BASIC_INFORMATION",
        "PKEY_VALUE_BASIC_INFORMATION",
        "KEY_VALUE_FULL_INFORMATION",
        "PKEY_VALUE_FULL_INFORMATION",
        "KEY_VALUE_PARTIAL_INFORMATION",
        "PKEY_VALUE_PARTIAL_INFORMATION",
        "IO_WORKITEM",
        "PIO_WORKITEM",
        "PETHREAD",
        "PKTHREAD",
        "PEPROCESS",
        "PKPROCESS",
        "POBJECT_TYPE",
        "PIO_COMPLETION_ROUTINE",
        "PDRIVER_CANCEL",
        "PDRIVER_DISPATCH",
        "PDRIVER_UNLOAD",
        "PDRIVER_INITIALIZE",
        "DRIVER_INITIALIZE",
        "PKSTART_ROUTINE",
        "PIO_WORKITEM_ROUTINE",
        // Scalars (checked for identity with crate::types).
        "NTSTATUS",
        "LONG",
        "ULONG",
        "PULONG",
        "SHORT",
        "CSHORT",
        "USHORT",
        "CHAR",
        "CCHAR",
        "UCHAR",
        "BOOLEAN",
        "PBOOLEAN",
        "KIRQL",
        "PKIRQL",
        "KPRIORITY",
        "KPROCESSOR_MODE",
        "ULONG64",
        "LONG64",
        "LONGLONG",
        "ULONGLONG",
        "ULONG_PTR",
        "LONG_PTR",
        "SIZE_T",
        "PSIZE_T",
        "KSPIN_LOCK",
        "PKSPIN_LOCK",
        "ACCESS_MASK",
        "DEVICE_TYPE",
        "POOL_FLAGS",
        "WCHAR",
        "PWCH",
        "PWSTR",
        "PCWSTR",
        "PCSTR",
        "KDPC",
        "PKDPC",
        "PRKDPC",
        "KTIMER",
        "PKTIMER",
        "PKDEFERRED_ROUTINE",
        "TIMER_TYPE",
        "PULONG64",
        "PVOID",
        "HANDLE",
        "PHANDLE",
        "PCHAR",
        "PUCHAR",
        "EVENT_TYPE",
        "KWAIT_REASON",
        "WORK_QUEUE_TYPE",
        "KEY_VALUE_INFORMATION_CLASS",
        "MM_PAGE_PRIORITY",
        "LOCK_OPERATION",
        "MEMORY_CACHING_TYPE",
        "MODE",
        "OBJECT_HANDLE_INFORMATION",
        "POBJECT_HANDLE_INFORMATION",
    ];

    /// `#define` constants checked against `types.rs`.
    const VARS: &[&str] = &[
        "IRP_MJ_.*",
        "SL_PENDING_RETURNED",
        "SL_ERROR_RETURNED",
        "SL_INVOKE_ON_.*",
        "DO_BUFFERED_IO",
        "DO_DIRECT_IO",
        "DO_DEVICE_INITIALIZING",
        "FILE_DEVICE_UNKNOWN",
        "FILE_DEVICE_NETWORK",
        "FILE_DEVICE_SECURE_OPEN",
        "METHOD_(BUFFERED|IN_DIRECT|OUT_DIRECT|NEITHER)",
        "FILE_(ANY|READ|WRITE)_ACCESS",
        "OBJ_CASE_INSENSITIVE",
        "OBJ_KERNEL_HANDLE",
        "KEY_READ",
        "KEY_QUERY_VALUE",
        "THREAD_ALL_ACCESS",
        "SYNCHRONIZE",
        "REG_(NONE|SZ|BINARY|DWORD)",
        "(PASSIVE|APC|DISPATCH|HIGH)_LEVEL",
        "MDL_(MAPPED_TO_SYSTEM_VA|PAGES_LOCKED|SOURCE_IS_NONPAGED_POOL|ALLOCATED_FIXED_SIZE|PARTIAL)",
        "IO_TYPE_(DRIVER|DEVICE|FILE|IRP|MDL)",
        "MdlMappingNoExecute",
        "IO_NO_INCREMENT",
        "IO_NETWORK_INCREMENT",
        "TRUE",
        "FALSE",
        // extern statics
        "PsThreadType",
    ];

    /// Where the bindings come from.
    enum Source {
        MinGw(Headers),
        Wdk(PathBuf),
    }

    pub fn generate() {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let source = match std::env::var_os("NT_TYPECHECK_WDK_INCLUDE") {
            Some(dir) => {
                println!("cargo::rustc-cfg=nt_typecheck_wdk");
                Source::Wdk(PathBuf::from(dir))
            }
            None => Source::MinGw(Headers::find()),
        };
        let (clang_args, ntstatus) = match &source {
            Source::MinGw(headers) => (headers.clang_args(), headers.mingw.join("ntstatus.h")),
            Source::Wdk(dir) => (wdk_clang_args(dir), dir.join("shared").join("ntstatus.h")),
        };
        let wdk = matches!(source, Source::Wdk(_));

        let types = generate_one(&clang_args, wdk, CodegenConfig::TYPES | CodegenConfig::VARS);
        let types = if wdk {
            types
        } else {
            ntifs_pointers(&msvc_enums(&types))
        };
        write(&out_dir.join("typecheck_types.rs"), &types);
        let functions = generate_one(&clang_args, wdk, CodegenConfig::FUNCTIONS);
        write(&out_dir.join("typecheck_ntddk.rs"), &functions);

        println!("cargo::rerun-if-changed={}", ntstatus.display());
        let ntstatus = std::fs::read_to_string(&ntstatus)
            .unwrap_or_else(|error| panic!("reading {}: {error}", ntstatus.display()));
        write(
            &out_dir.join("typecheck_status.rs"),
            &status_constants(&ntstatus),
        );

        println!("cargo::rerun-if-changed=src/status.rs");
        let ours = std::fs::read_to_string("src/status.rs").expect("src/status.rs is readable");
        write(
            &out_dir.join("typecheck_status_agreement.rs"),
            &status_agreement(&ours),
        );
    }

    /// The clang arguments of the WDK recipe (see `build/wdk_recipe.rs`),
    /// after checking that `dir` is an Include directory.
    fn wdk_clang_args(dir: &Path) -> Vec<String> {
        let ntifs = dir.join("km").join("ntifs.h");
        assert!(
            ntifs.is_file(),
            "NT_TYPECHECK_WDK_INCLUDE={}: not a WDK Include/<version> directory ({} not \
             found)",
            dir.display(),
            ntifs.display()
        );
        for sub in wdk_recipe::INCLUDE_DIRECTORIES {
            println!("cargo::rerun-if-changed={}", dir.join(sub).display());
        }
        wdk_recipe::clang_args(dir)
    }

    /// MinGW-w64's `wdm.h` declares `PETHREAD`/`PEPROCESS` as pointers to
    /// `_ETHREAD`/`_EPROCESS` whatever is included first; the WDK's `wdm.h`
    /// and `ntddk.h`, included after `ntifs.h` as wdk-sys does, declare them
    /// as pointers to `_KTHREAD`/`_KPROCESS` (and never define `_ETHREAD`).
    /// The stand-in follows wdk-sys.
    fn ntifs_pointers(types: &str) -> String {
        let mut out = types.to_owned();
        for (from, to) in [
            (
                "pub type PETHREAD = *mut _ETHREAD;",
                "pub type PETHREAD = *mut _KTHREAD;",
            ),
            (
                "pub type PEPROCESS = *mut _EPROCESS;",
                "pub type PEPROCESS = *mut _KPROCESS;",
            ),
        ] {
            assert!(
                out.contains(from),
                "MinGW-w64's bindings changed: `{from}` not found"
            );
            out = out.replace(from, to);
        }
        out
    }

    fn generate_one(clang_args: &[String], wdk: bool, what: CodegenConfig) -> String {
        let header = if wdk {
            // wdk-build's WDM header set, ntifs.h first.
            wdk_recipe::HEADER
        } else {
            "#include <ntddk.h>\n"
        };
        let mut builder = bindgen::Builder::default()
            .header_contents("nt-typecheck.h", header)
            .clang_args(clang_args)
            .detect_include_paths(false)
            .use_core()
            .ctypes_prefix("ctypes")
            .derive_default(true)
            .generate_cstr(true)
            .default_enum_style(bindgen::EnumVariation::ModuleConsts)
            .must_use_type("NTSTATUS")
            .generate_comments(false)
            .layout_tests(true)
            .with_codegen_config(what);
        if wdk {
            builder = builder
                .must_use_type("HRESULT")
                .opaque_type("_KGDTENTRY64")
                .opaque_type("_KIDTENTRY64");
            for item in wdk_recipe::BLOCKLIST {
                builder = builder.blocklist_item(item);
            }
            for function in WDK_ONLY_FUNCTIONS {
                builder = builder.allowlist_function(function);
            }
        }
        for function in FUNCTIONS {
            builder = builder.allowlist_function(function);
        }
        for ty in TYPES {
            builder = builder.allowlist_type(ty);
        }
        for var in VARS {
            builder = builder.allowlist_var(var);
        }
        match builder.generate() {
            Ok(bindings) => bindings.to_string(),
            Err(error) => panic!(
                "bindgen could not generate the type-check bindings from {}: {error}",
                if wdk {
                    "the WDK's headers"
                } else {
                    "MinGW-w64's DDK headers"
                }
            ),
        }
    }

    /// MSVC gives every C enum the type `int`; GNU targets (MinGW-w64) use
    /// `unsigned int` for enums without negative values. wdk-sys is generated
    /// for MSVC, so its `_EVENT_TYPE::Type` & co. are `c_int`: do the same.
    /// (`pub type Type` only ever appears in bindgen's module-constant
    /// enums.)
    fn msvc_enums(types: &str) -> String {
        const GNU: &str = "pub type Type = ctypes::c_uint;";
        const MSVC: &str = "pub type Type = ctypes::c_int;";
        assert!(
            types.contains(GNU) || types.contains(MSVC),
            "bindgen generated no module-constant enums: did the enum style change?"
        );
        types.replace(GNU, MSVC)
    }

    /// `#define STATUS_X ((NTSTATUS)0x...)` lines of ntstatus.h as Rust
    /// constants (bindgen cannot evaluate the cast).
    fn status_constants(header: &str) -> String {
        let mut seen = std::collections::BTreeMap::new();
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            if !name.starts_with("STATUS_") {
                continue;
            }
            let Some(hex) = value
                .strip_prefix("((NTSTATUS)0x")
                .and_then(|rest| rest.strip_suffix(')'))
                .map(|rest| rest.trim_end_matches(')').trim_end_matches(['L', 'l']))
            else {
                continue;
            };
            if let Ok(value) = u32::from_str_radix(hex, 16) {
                seen.entry(name.to_owned()).or_insert(value);
            }
        }
        assert!(
            seen.contains_key("STATUS_SUCCESS"),
            "no STATUS_ constants parsed from ntstatus.h"
        );
        let mut out = String::from("// Generated by nt's build script from ntstatus.h.\n");
        for (name, value) in seen {
            out.push_str(&format!(
                "pub const {name}: NTSTATUS = 0x{value:08X}_u32 as NTSTATUS;\n"
            ));
        }
        out
    }

    /// One assertion per `pub const STATUS_*` of `src/status.rs`: its value
    /// must be the header's.
    fn status_agreement(status_rs: &str) -> String {
        let mut out = String::from(
            "// Generated by nt's build script from src/status.rs.\nconst _: () = {\n",
        );
        let mut count = 0;
        for line in status_rs.lines() {
            let Some(rest) = line.trim_start().strip_prefix("pub const ") else {
                continue;
            };
            let Some((name, _)) = rest.split_once(':') else {
                continue;
            };
            if !name.starts_with("STATUS_") {
                continue;
            }
            count += 1;
            out.push_str(&format!(
                "    assert!(crate::status::{name} == sys::{name}, \"nt::{name} differs from ntstatus.h\");\n"
            ));
        }
        assert!(count > 0, "no STATUS_ constants found in src/status.rs");
        out.push_str("};\n");
        out
    }

    fn write(path: &Path, contents: &str) {
        std::fs::write(path, contents)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    }

    /// Where MinGW-w64's headers and clang's builtin headers are.
    struct Headers {
        mingw: PathBuf,
        clang: PathBuf,
    }

    impl Headers {
        fn find() -> Self {
            let mingw = std::env::var_os("NT_TYPECHECK_MINGW_INCLUDE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/x86_64-w64-mingw32/include"));
            let ntddk = mingw.join("ddk").join("ntddk.h");
            assert!(
                ntddk.is_file(),
                "MinGW-w64's DDK headers are missing ({} not found). Install them with \
                 `sudo apt-get install mingw-w64-x86-64-dev`, or point \
                 NT_TYPECHECK_MINGW_INCLUDE at a MinGW-w64 `include` directory.",
                ntddk.display()
            );
            let clang = std::env::var_os("NT_TYPECHECK_CLANG_INCLUDE")
                .map(PathBuf::from)
                .or_else(find_clang_builtin_include)
                .unwrap_or_else(|| {
                    panic!(
                        "clang's builtin headers were not found under \
                         /usr/lib/llvm-*/lib/clang/*/include. Install libclang with \
                         `sudo apt-get install libclang-dev`, or set NT_TYPECHECK_CLANG_INCLUDE."
                    )
                });
            Self { mingw, clang }
        }

        /// The clang arguments of issue 6: MinGW-w64 target, x64 kernel
        /// mode, only the headers named here.
        fn clang_args(&self) -> Vec<String> {
            let ddk = self.mingw.join("ddk");
            for dir in [&self.mingw, &ddk, &self.clang] {
                println!("cargo::rerun-if-changed={}", dir.display());
            }
            vec![
                "--target=x86_64-w64-mingw32".into(),
                "-nostdinc".into(),
                format!("-isystem{}", self.clang.display()),
                format!("-I{}", ddk.display()),
                format!("-I{}", self.mingw.display()),
                "-D_AMD64_".into(),
                "-D_WIN64".into(),
                "-D_KERNEL_MODE".into(),
                "-fno-builtin".into(),
                "-fms-extensions".into(),
            ]
        }
    }

    /// The newest `/usr/lib/llvm-N/lib/clang/V/include`.
    fn find_clang_builtin_include() -> Option<PathBuf> {
        let mut candidates = Vec::new();
        for llvm in std::fs::read_dir("/usr/lib").ok()?.flatten() {
            let name = llvm.file_name();
            let Some(version) = name.to_str().and_then(|n| n.strip_prefix("llvm-")) else {
                continue;
            };
            let Ok(major) = version.parse::<u32>() else {
                continue;
            };
            let Ok(clangs) = std::fs::read_dir(llvm.path().join("lib/clang")) else {
                continue;
            };
            for clang in clangs.flatten() {
                let include = clang.path().join("include");
                if include.join("stddef.h").is_file() {
                    candidates.push((major, include));
                }
            }
        }
        candidates.sort();
        candidates.pop().map(|(_, include)| include)
    }
}
