//! Which `gateway:policy` package version a component was built against, and whether this
//! host serves it.
//!
//! Why: worlds are otherwise matched by shape, so a component built against another major
//! with the same types would pass, and one importing `log@2.0.0` would be refused with a
//! message about imports that names no version. The version is read from the component's
//! own imports (`gateway:policy/types@X.Y.Z`, `gateway:policy/log@X.Y.Z`) before anything
//! is linked. Same major and a minor the host knows: served. Another major, or a newer minor
//! (it may use functions this host does not have): refused, naming both versions. A
//! component importing nothing versioned from the package falls through to the world check.

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package the host implements.
pub const PACKAGE: &str = "gateway:policy";
/// The package version the host implements (`wit/`).
pub const VERSION: (u64, u64, u64) = (1, 0, 0);
/// The majors this host serves.
pub const MAJORS: [u64; 1] = [1];

/// The host's package version as text (`1.0.0`).
pub fn version_text() -> String {
    let (a, b, c) = VERSION;
    format!("{a}.{b}.{c}")
}

/// `"wit"` in `GET /admin/components`.
#[derive(Debug, Clone, Serialize)]
pub struct WitInfo {
    pub package: &'static str,
    pub version: String,
    pub majors: Vec<u64>,
}

/// The host's WIT facts for operators.
pub fn wit_info() -> WitInfo {
    WitInfo {
        package: PACKAGE,
        version: version_text(),
        majors: MAJORS.to_vec(),
    }
}

/// The `gateway:policy` versions `component` imports (deduplicated, in import order).
pub fn imported_versions(component: &Component, engine: &Engine) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        if let Some((_, version)) = rest.split_once('@')
            && !versions.iter().any(|v| v == version)
        {
            versions.push(version.to_string());
        }
    }
    versions
}

/// `Err(message)` if this host does not serve a component built against `version`.
pub fn check_version(version: &str) -> Result<(), String> {
    let host = format!("{PACKAGE}@{}", version_text());
    let parsed = parse(version).ok_or_else(|| {
        format!("built against {PACKAGE}@{version}, which is not a version this host can read; this host serves {host}")
    })?;
    let (major, minor, _) = parsed;
    if !MAJORS.contains(&major) {
        let majors: Vec<String> = MAJORS.iter().map(u64::to_string).collect();
        return Err(format!(
            "built against {PACKAGE}@{version}; this host serves {host} (major {})",
            majors.join(", ")
        ));
    }
    if major == VERSION.0 && minor > VERSION.1 {
        return Err(format!(
            "built against {PACKAGE}@{version}, a newer minor version than this host knows; \
             this host serves {host}: rebuild against {host} or upgrade the host"
        ));
    }
    Ok(())
}

/// `X.Y.Z` (a pre-release or build suffix on the patch is ignored).
fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_text = parts.next()?;
    let digits: String = patch_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let patch = digits.parse().ok()?;
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_match_wit() {
        let wit = include_str!("../../../wit/policy.wit");
        assert!(wit.contains(&format!("package {PACKAGE}@{};", version_text())));
        assert!(MAJORS.contains(&VERSION.0));
    }

    #[test]
    fn majors_and_minors() {
        assert!(check_version("1.0.0").is_ok());
        assert!(check_version("1.0.3").is_ok());
        let e = check_version("2.0.0").unwrap_err();
        assert!(
            e.contains("gateway:policy@2.0.0") && e.contains("gateway:policy@1.0.0"),
            "{e}"
        );
        let e = check_version("1.1.0").unwrap_err();
        assert!(e.contains("newer minor") && e.contains("1.1.0"), "{e}");
        assert!(check_version("0.9.0").is_err());
        assert!(check_version("x").is_err());
    }
}
