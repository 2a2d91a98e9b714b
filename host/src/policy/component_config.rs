//! The configuration a component version was loaded with, and where it came from.
//!
//! Why this exists: a slot's configuration belongs to the *component* it was written for,
//! not to the slot. A replacement limiter with its own keys must get its own keys (from the
//! admin upload, a `<slot>.toml` beside its `<slot>.wasm`, or the config file when it is the
//! slot's starting component), and a rollback must bring back the old version *with* its
//! old configuration. So every loaded version carries a [`ComponentConfig`].
//!
//! [`resolve_config`] is the one rule both `serve` (components directory at start and on
//! every change) and `component check` use, so `check` never accepts what `serve` refuses.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::watch::{ReadError, read_component_file};

/// Largest component configuration file read (a flat table of short strings).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Where a version's configuration came from (`configSource` in the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigSource {
    /// The host config file's `[policy.slots.<slot>] config`.
    ConfigFile,
    /// A `<slot>.toml` beside the component (components directory, or `--component-config`).
    ComponentsDir,
    /// The `config` part of an admin upload.
    Admin,
    /// The embedded default component, with no configured keys.
    Default,
    /// Nothing gave a configuration: `init` got an empty list.
    None,
}

/// The ordered key/value pairs a version's `init` accepted, and their origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    pub pairs: Vec<(String, String)>,
    pub source: ConfigSource,
}

impl ComponentConfig {
    /// No configuration at all (`init` gets an empty list).
    pub fn none() -> ComponentConfig {
        ComponentConfig {
            pairs: Vec::new(),
            source: ConfigSource::None,
        }
    }

    /// `pairs` from `source`.
    pub fn new(pairs: Vec<(String, String)>, source: ConfigSource) -> ComponentConfig {
        ComponentConfig { pairs, source }
    }

    /// Parse a component configuration file's text (see [`parse_toml`]).
    pub fn from_toml(text: &str, source: ConfigSource) -> Result<ComponentConfig, String> {
        Ok(ComponentConfig::new(parse_toml(text)?, source))
    }

    /// The pairs as a JSON object (`config` in the admin API).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect()
    }
}

/// No configuration (`init` gets an empty list).
impl Default for ComponentConfig {
    fn default() -> ComponentConfig {
        ComponentConfig::none()
    }
}

/// Tests and tools hand explicit pairs: source `admin` (or `none` when empty).
impl From<Vec<(String, String)>> for ComponentConfig {
    fn from(pairs: Vec<(String, String)>) -> ComponentConfig {
        let source = if pairs.is_empty() {
            ConfigSource::None
        } else {
            ConfigSource::Admin
        };
        ComponentConfig { pairs, source }
    }
}

/// A TOML value as `init` gets it: strings as themselves, anything else as its TOML text.
pub fn value_text(v: &toml::Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// Parse a component configuration: a flat TOML table `key = value`, in key order.
/// Nested tables are refused (`init` takes flat pairs).
pub fn parse_toml(text: &str) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("not a TOML table: {}", e.message()))?;
    let mut pairs = Vec::with_capacity(table.len());
    for (key, value) in table {
        if value.is_table() {
            return Err(format!(
                "key {key:?} is a table; a component configuration is a flat table of `key = value`"
            ));
        }
        pairs.push((key, value_text(&value)));
    }
    Ok(pairs)
}

/// Read and parse a component configuration file: a regular file (not a symlink, FIFO or
/// device) of at most [`MAX_CONFIG_BYTES`], checked as component files are.
/// `Ok(None)` if it does not exist.
pub fn read_config_file(path: &Path) -> Result<Option<Vec<(String, String)>>, String> {
    let bytes = match read_component_file(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadError::Gone) => return Ok(None),
        Err(ReadError::Refused(reason)) => return Err(format!("{}: {reason}", path.display())),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: is not UTF-8 text", path.display()))?;
    parse_toml(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The `.toml` beside a component file: same directory, same stem (`rate-limiter.wasm` →
/// `rate-limiter.toml`).
pub fn config_path_for(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// What a component gets as its configuration — the one rule for `serve` and `check`:
///
/// 1. `explicit` (`--component-config`) if given;
/// 2. else the `.toml` beside `wasm` (the components directory's `<slot>.toml`) if present;
/// 3. else the host config file's slot keys (`config_file_keys`): source `config-file` when
///    there are any, else `default` for the embedded default (`wasm` is `None`) or `none`.
pub fn resolve_config(
    wasm: Option<&Path>,
    explicit: Option<&Path>,
    config_file_keys: &[(String, String)],
) -> Result<ComponentConfig, String> {
    if let Some(path) = explicit {
        return match read_config_file(path)? {
            Some(pairs) => Ok(ComponentConfig::new(pairs, ConfigSource::ComponentsDir)),
            None => Err(format!("{}: does not exist", path.display())),
        };
    }
    if let Some(wasm) = wasm
        && let Some(pairs) = read_config_file(&config_path_for(wasm))?
    {
        return Ok(ComponentConfig::new(pairs, ConfigSource::ComponentsDir));
    }
    let source = match (config_file_keys.is_empty(), wasm) {
        (false, _) => ConfigSource::ConfigFile,
        (true, None) => ConfigSource::Default,
        (true, Some(_)) => ConfigSource::None,
    };
    Ok(ComponentConfig::new(config_file_keys.to_vec(), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_tables_parse_in_key_order_and_nested_ones_are_refused() {
        let pairs = parse_toml("refill-ms = 250\nburst = 3\nname = \"x\"\n").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("burst".into(), "3".into()),
                ("name".into(), "x".into()),
                ("refill-ms".into(), "250".into()),
            ]
        );
        assert!(parse_toml("[t]\na = 1").unwrap_err().contains("flat"));
        assert!(parse_toml("a = ").unwrap_err().contains("TOML"));
        assert!(parse_toml("").unwrap().is_empty());
    }

    #[test]
    fn explicit_then_beside_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("rate-limiter.wasm");
        let keys = vec![("capacity".to_string(), "5".to_string())];
        let c = resolve_config(Some(&wasm), None, &keys).unwrap();
        assert_eq!(
            (c.pairs.clone(), c.source),
            (keys.clone(), ConfigSource::ConfigFile)
        );
        assert_eq!(
            resolve_config(None, None, &[]).unwrap().source,
            ConfigSource::Default
        );
        assert_eq!(
            resolve_config(Some(&wasm), None, &[]).unwrap().source,
            ConfigSource::None
        );
        std::fs::write(dir.path().join("rate-limiter.toml"), "burst = 2").unwrap();
        let c = resolve_config(Some(&wasm), None, &keys).unwrap();
        assert_eq!(c.pairs, vec![("burst".to_string(), "2".to_string())]);
        assert_eq!(c.source, ConfigSource::ComponentsDir);
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "refill-ms = 9").unwrap();
        let c = resolve_config(Some(&wasm), Some(&other), &keys).unwrap();
        assert_eq!(c.pairs, vec![("refill-ms".to_string(), "9".to_string())]);
        assert!(resolve_config(Some(&wasm), Some(&dir.path().join("no.toml")), &keys).is_err());
    }
}
