//! The Rust example in `docs/components.md` is real code: the page shows exactly what
//! `tests/components/example-voice-filter` holds between its markers (with the WIT path
//! an author would write), that crate is built by this suite's build script, and the
//! result loads into the `voice-filter` slot and relays voice events.

use gateway_host::policy::{Policies, SlotKind, VoiceDecision};
use gateway_tests::policy::{EXAMPLE_VOICE_FILTER, event, relaxed_settings};

const PAGE: &str = include_str!("../../docs/components.md");
const CRATE: &str = include_str!("../components/example-voice-filter/src/lib.rs");

/// The lines between the crate's markers.
fn example() -> String {
    let start = CRATE
        .find("// --- example start ---\n")
        .expect("start marker");
    let end = CRATE.find("// --- example end ---").expect("end marker");
    CRATE[start + "// --- example start ---\n".len()..end].to_string()
}

#[test]
fn the_page_shows_the_compiled_example() {
    let shown = example().replace("path: \"../../../wit\"", "path: \"path/to/wit\"");
    assert!(
        PAGE.contains(&format!("```rust\n{shown}```")),
        "docs/components.md must show tests/components/example-voice-filter verbatim:\n{shown}"
    );
}

#[test]
fn the_example_loads_and_relays_voice_events() -> anyhow::Result<()> {
    let p = Policies::with_defaults(relaxed_settings())?;
    let slot = p.slot(SlotKind::VoiceFilter);
    slot.install(slot.prepare_with_config(EXAMPLE_VOICE_FILTER, "test", Vec::new())?);
    let voice = event("VOICE_STATE_UPDATE", Some("7"), Some("8"));
    assert_eq!(
        p.filter_voice(&voice).value,
        VoiceDecision::Relay("7".into())
    );
    let message = event("MESSAGE_CREATE", Some("7"), Some("8"));
    assert_eq!(p.filter_voice(&message).value, VoiceDecision::Reject);
    let refused = slot.prepare_with_config(
        EXAMPLE_VOICE_FILTER,
        "test",
        vec![("burst".into(), "1".into())],
    );
    assert!(refused.is_err_and(|e| e.to_string().contains("unknown config key \"burst\"")));
    Ok(())
}
