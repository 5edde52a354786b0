//! Build script of the sample driver.
//!
//! On a Windows kernel build (`--features kernel` for a Windows target) the
//! WDK configures the link (wdk-build). Everywhere else the driver is a plain
//! library hosted by `nt::sim`, and we only declare the cfg names wdk-build
//! would otherwise emit so `check-cfg` stays quiet.

fn main() {
    #[cfg(windows)]
    {
        if std::env::var_os("CARGO_FEATURE_KERNEL").is_some() {
            if let Err(error) = wdk_build::configure_wdk_binary_build() {
                panic!("wdk-build could not configure the kernel build: {error}");
            }
            return;
        }
    }
    println!(
        "cargo::rustc-check-cfg=cfg(driver_model__driver_type, values(\"WDM\", \"KMDF\", \"UMDF\"))"
    );
}
