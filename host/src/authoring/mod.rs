//! The component author's kit behind `gateway-host component test` and `component new`.
//!
//! Authors should be able to go from nothing to a component the host accepts without reading
//! the host's source: [`template`] writes a standalone crate that builds and passes its own
//! cases unedited, and [`cases`] + [`run`] replay recorded inputs against a component through
//! the same loading checks and calls the host uses, so "passes its cases" means "behaves so
//! once loaded". See `docs/component-authors.md`.

pub mod cases;
pub mod run;
pub mod template;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::policy::runtime::PolicyRuntime;
use crate::policy::{ComponentVersion, ConfigSource, SlotKind};

/// Exit code of `component test` for a case file that cannot be run.
pub const EXIT_BAD_CASES: u8 = 2;

/// A flat TOML table (`key = value`) as `init`'s `(key, value)` pairs; non-string values
/// are passed as their TOML text, as in the config file (the host's one parser,
/// [`crate::policy::component_config::parse_toml`]).
pub fn parse_component_config(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    crate::policy::component_config::parse_toml(text).map_err(anyhow::Error::msg)
}

/// The config `init` gets, by the same rule as `component check` and `serve` (the host's
/// one resolver, [`crate::policy::component_config::resolve_config`]): `--component-config`
/// if given, else `<FILE stem>.toml` beside FILE, else the host config's
/// `[policy.slots.<slot>] config`. Also returns where it came from, for messages.
pub fn resolve_config(
    slot: SlotKind,
    file: &Path,
    host: &Config,
    component_config: Option<&Path>,
) -> anyhow::Result<(Vec<(String, String)>, String)> {
    let config = crate::policy::component_config::resolve_config(
        Some(file),
        component_config,
        &host.slot(slot).config,
    )
    .map_err(anyhow::Error::msg)?;
    let origin = match (component_config, config.source) {
        (Some(p), _) => p.display().to_string(),
        (None, ConfigSource::ComponentsDir) => file.with_extension("toml").display().to_string(),
        _ => "the host config".to_string(),
    };
    Ok((config.pairs, origin))
}

/// `gateway-host component test`: load FILE for `slot`, run every case, print a line per
/// case and a summary. Exit 0 when all pass, 1 when one fails or the component is refused,
/// 2 when the case file cannot be run.
pub fn test_component(
    slot: SlotKind,
    file: &Path,
    cases_path: &Path,
    host_config: Option<&Path>,
    component_config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read {}", cases_path.display()))?;
    let cases = match cases::parse(slot, &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}:{}: {}", cases_path.display(), e.line, e.message);
            return Ok(ExitCode::from(EXIT_BAD_CASES));
        }
    };
    let host = Config::load(host_config)?;
    let (config, _) = resolve_config(slot, file, &host, component_config)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let limits = host.policy.limits.clone();
    let runtime = PolicyRuntime::new(limits.clone())?;
    let version =
        match ComponentVersion::load(&runtime, slot, &bytes, config, file.display().to_string()) {
            Ok(v) => v,
            Err(e) => {
                println!("refused: {} for slot {slot}: {e}", file.display());
                return Ok(ExitCode::from(1));
            }
        };
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        match run::run_case(&version, &limits, case) {
            Ok(()) => {
                passed += 1;
                println!("ok   {}", case.name);
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}: {why}", case.name);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_config_tables_only() {
        let pairs = parse_component_config("burst = 3\nkey = \"user\"\n").expect("flat");
        assert_eq!(
            pairs,
            vec![
                ("burst".to_string(), "3".to_string()),
                ("key".to_string(), "user".to_string())
            ]
        );
        let err = parse_component_config("[nested]\na = 1\n").expect_err("nested");
        assert!(err.to_string().contains("flat table"), "{err}");
    }
}
