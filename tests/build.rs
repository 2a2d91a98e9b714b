//! Builds the hostile components the test suite loads into the host (see
//! `tests/components/`), so the tests exercise real compiled wasm, built from source.

#[path = "../components/build_support.rs"]
mod build_support;

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let workspace = Path::new(&manifest)
        .parent()
        .expect("tests/ lives in the workspace");
    let packages = [
        "hostile-limiter",
        "hostile-router",
        "voice-typing",
        "keyed-limiter",
        "redacting-router",
        "wit-v2-router",
        "wit-v1-1-router",
        "example-voice-filter",
    ];
    let paths = build_support::build_components(workspace, &packages);
    for (package, path) in packages.iter().zip(paths) {
        let var = format!(
            "GATEWAY_TEST_{}_WASM",
            package.replace('-', "_").to_uppercase()
        );
        println!("cargo:rustc-env={var}={}", path.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("tests/components").display()
    );
    // Where this build's binaries (`gateway-host`) and the components built by `just
    // py-component` / `just js-component` (`<target>/foreign-components/`) are found.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let profile_dir = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .expect("OUT_DIR is <target>/<profile>/build/<pkg>/out");
    println!(
        "cargo:rustc-env=GATEWAY_TEST_PROFILE_DIR={}",
        profile_dir.display()
    );
    println!(
        "cargo:rustc-env=GATEWAY_TEST_WORKSPACE={}",
        workspace.display()
    );
}
