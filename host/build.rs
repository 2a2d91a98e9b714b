//! Builds the four default policy components and hands their paths to `include_bytes!`,
//! so the host binary carries its defaults and needs no files at run time.

#[path = "../components/build_support.rs"]
mod build_support;

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let workspace = Path::new(&manifest)
        .parent()
        .expect("host/ lives in the workspace");
    let packages = [
        "event-router",
        "rate-limiter",
        "command-validator",
        "voice-filter",
    ];
    let paths = build_support::build_components(workspace, &packages);
    for (package, path) in packages.iter().zip(paths) {
        let var = format!(
            "GATEWAY_DEFAULT_{}_WASM",
            package.replace('-', "_").to_uppercase()
        );
        println!("cargo:rustc-env={var}={}", path.display());
    }
}
