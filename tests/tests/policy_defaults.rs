//! The default components' rules, called through the real host runtime (real compiled
//! wasm, the same instances and failure handling the host uses).

use gateway_host::policy::types::{AddReaction, Command, SendMessage, TypingStart};
use gateway_host::policy::{
    LimitOutcome, LoadError, Policies, RouteDecision, SlotKind, SlotSettings, Validation,
    VoiceDecision,
};
use gateway_tests::policy::{event, rate_request, relaxed_settings};

fn defaults() -> Policies {
    Policies::with_defaults(relaxed_settings()).expect("default components load")
}

fn allow(p: &Policies, user: &str, channel: &str, now: u64) -> LimitOutcome {
    let verdict = p.check_rate_at(&rate_request(user, channel), now);
    assert_eq!(
        verdict.fallback, None,
        "the component answered, not the failure policy"
    );
    verdict.value
}

#[test]
fn limiter_allows_a_burst_of_ten_then_denies_until_refill() {
    let p = defaults();
    let t0 = 1_000_000;
    for i in 0..10 {
        assert_eq!(
            allow(&p, "42", "7", t0),
            LimitOutcome::Allow { remaining: 9 - i },
            "call {i}"
        );
    }
    assert_eq!(
        allow(&p, "42", "7", t0),
        LimitOutcome::Deny {
            retry_after_ms: 5000
        }
    );
    assert_eq!(
        allow(&p, "42", "7", t0 + 3000),
        LimitOutcome::Deny {
            retry_after_ms: 2000
        }
    );
    // Other keys have their own buckets.
    assert_eq!(
        allow(&p, "42", "8", t0),
        LimitOutcome::Allow { remaining: 9 }
    );
    assert_eq!(
        allow(&p, "43", "7", t0),
        LimitOutcome::Allow { remaining: 9 }
    );
    // 5 s of host time later, 5 tokens are back.
    for i in 0..5 {
        assert_eq!(
            allow(&p, "42", "7", t0 + 5000),
            LimitOutcome::Allow { remaining: 4 - i }
        );
    }
    assert!(matches!(
        allow(&p, "42", "7", t0 + 5000),
        LimitOutcome::Deny { .. }
    ));
    // After 10 s more the bucket is full again, never above the burst.
    assert_eq!(
        allow(&p, "42", "7", t0 + 60_000),
        LimitOutcome::Allow { remaining: 9 }
    );
}

#[test]
fn limiter_is_configured_through_init() {
    let mut settings = relaxed_settings();
    settings.slots.insert(
        SlotKind::RateLimiter,
        SlotSettings {
            failure: SlotKind::RateLimiter.default_failure_policy(),
            config: vec![
                ("burst".into(), "2".into()),
                ("refill-tokens".into(), "1".into()),
                ("refill-interval-ms".into(), "100".into()),
            ],
        },
    );
    let p = Policies::with_defaults(settings).expect("configured limiter loads");
    assert_eq!(allow(&p, "1", "2", 0), LimitOutcome::Allow { remaining: 1 });
    assert_eq!(allow(&p, "1", "2", 0), LimitOutcome::Allow { remaining: 0 });
    assert_eq!(
        allow(&p, "1", "2", 0),
        LimitOutcome::Deny {
            retry_after_ms: 100
        }
    );
    assert_eq!(
        allow(&p, "1", "2", 100),
        LimitOutcome::Allow { remaining: 0 }
    );
}

#[test]
fn a_configuration_init_refuses_never_goes_live() {
    let p = defaults();
    let slot = p.slot(SlotKind::RateLimiter);
    let before = slot.current().sha256().to_string();
    let bytes = gateway_host::policy::defaults::default_component(SlotKind::RateLimiter);
    let err = slot
        .prepare_with_config(bytes, "test", vec![("burst".into(), "lots".into())])
        .err()
        .expect("init refuses a non-numeric burst");
    assert!(
        matches!(&err, LoadError::Init(msg) if msg.contains("burst")),
        "{err}"
    );
    let err = slot
        .prepare_with_config(bytes, "test", vec![("bogus".into(), "1".into())])
        .err()
        .expect("unknown key");
    assert!(err.to_string().contains("bogus"), "{err}");
    assert_eq!(slot.current().sha256(), before);
    assert!(
        slot.info()
            .last_rejection
            .is_some_and(|r| r.reason.contains("bogus"))
    );
}

fn validate(p: &Policies, command: Command) -> Validation {
    let verdict = p.validate("42", &command);
    assert_eq!(verdict.fallback, None);
    verdict.value
}

fn send(channel: &str, content: &str, nonce: Option<&str>) -> Command {
    Command::SendMessage(SendMessage {
        channel_id: channel.into(),
        content: content.into(),
        nonce: nonce.map(Into::into),
    })
}

fn reaction(channel: &str, message: &str, emoji: &str) -> Command {
    Command::AddReaction(AddReaction {
        channel_id: channel.into(),
        message_id: message.into(),
        emoji: emoji.into(),
    })
}

/// The `(field, code)` pairs of an invalid command.
fn errors(v: Validation) -> Vec<(String, String)> {
    match v {
        Validation::Invalid(errors) => {
            assert!(errors.iter().all(|e| !e.message.is_empty()));
            errors.into_iter().map(|e| (e.field, e.code)).collect()
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

fn pair(field: &str, code: &str) -> (String, String) {
    (field.to_string(), code.to_string())
}

#[test]
fn validator_send_message_rules() {
    let p = defaults();
    let ok = send("1234567890123456789", "hello", Some("abc"));
    assert_eq!(validate(&p, ok.clone()), Validation::Valid(ok));
    let max = "é".repeat(2000);
    assert!(
        matches!(validate(&p, send("1", &max, None)), Validation::Valid(_)),
        "2000 characters are allowed"
    );

    assert_eq!(
        errors(validate(&p, send("abc", "hi", None))),
        vec![pair("channelId", "invalid_snowflake")]
    );
    assert_eq!(
        errors(validate(&p, send("0", "hi", None))),
        vec![pair("channelId", "invalid_snowflake")]
    );
    assert_eq!(
        errors(validate(&p, send("99999999999999999999", "hi", None))),
        vec![pair("channelId", "invalid_snowflake")],
        "beyond u64"
    );
    assert_eq!(
        errors(validate(&p, send("1", "", None))),
        vec![pair("content", "empty")]
    );
    assert_eq!(
        errors(validate(&p, send("1", " \n\t ", None))),
        vec![pair("content", "blank")]
    );
    assert_eq!(
        errors(validate(&p, send("1", &"x".repeat(2001), None))),
        vec![pair("content", "too_long")]
    );
    assert_eq!(
        errors(validate(&p, send("1", "hi", Some(&"n".repeat(26))))),
        vec![pair("nonce", "invalid_nonce")]
    );
    // Every error is reported, not just the first.
    assert_eq!(
        errors(validate(&p, send("x", "", Some("")))),
        vec![
            pair("channelId", "invalid_snowflake"),
            pair("content", "empty"),
            pair("nonce", "invalid_nonce")
        ]
    );
}

#[test]
fn validator_add_reaction_and_typing_rules() {
    let p = defaults();
    for emoji in ["👍", "❤️", "👨‍👩‍👧", "1️⃣", "party_parrot:123456789012345678"]
    {
        assert!(
            matches!(
                validate(&p, reaction("1", "2", emoji)),
                Validation::Valid(_)
            ),
            "{emoji} is valid"
        );
    }
    assert_eq!(
        validate(&p, reaction("1", "2", "<a:blob:42>")),
        Validation::Valid(reaction("1", "2", "blob:42")),
        "markup form is normalised to name:id"
    );
    for emoji in ["", "thumbsup", "a:1", "blob:notanid", ":)", "👍 extra"] {
        assert_eq!(
            errors(validate(&p, reaction("1", "2", emoji))),
            vec![pair("emoji", "invalid_emoji")],
            "{emoji:?}"
        );
    }
    assert_eq!(
        errors(validate(&p, reaction("1", "x", "👍"))),
        vec![pair("messageId", "invalid_snowflake")]
    );
    assert_eq!(
        errors(validate(&p, reaction("-1", "2", "👍"))),
        vec![pair("channelId", "invalid_snowflake")]
    );

    let typing = Command::TypingStart(TypingStart {
        channel_id: "77".into(),
    });
    assert_eq!(validate(&p, typing.clone()), Validation::Valid(typing));
    let bad = Command::TypingStart(TypingStart {
        channel_id: "7 7".into(),
    });
    assert_eq!(
        errors(validate(&p, bad)),
        vec![pair("channelId", "invalid_snowflake")]
    );
}

fn topics(p: &Policies, name: &str, guild: Option<&str>, channel: Option<&str>) -> RouteDecision {
    let verdict = p.route(&event(name, guild, channel));
    assert_eq!(verdict.fallback, None);
    verdict.value
}

fn deliver(topics: &[&str]) -> RouteDecision {
    RouteDecision::Deliver {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        payload: None,
    }
}

#[test]
fn router_topics() {
    let p = defaults();
    assert_eq!(
        topics(&p, "MESSAGE_CREATE", Some("1"), Some("2")),
        deliver(&["guild:1", "channel:2"])
    );
    assert_eq!(
        topics(&p, "MESSAGE_CREATE", None, Some("2")),
        deliver(&["channel:2"]),
        "a DM has no guild topic"
    );
    assert_eq!(
        topics(&p, "VOICE_STATE_UPDATE", Some("1"), Some("3")),
        deliver(&["guild:1", "channel:3", "voice:1"])
    );
    assert_eq!(
        topics(&p, "VOICE_SERVER_UPDATE", Some("1"), None),
        deliver(&["guild:1", "voice:1"])
    );
    assert_eq!(
        topics(&p, "SOMETHING_NEW", Some("9"), None),
        deliver(&["guild:9"]),
        "unknown events route by ids"
    );
    assert_eq!(
        topics(&p, "PRESENCE_UPDATE", None, None),
        deliver(&["global"]),
        "no ids: the global topic"
    );
}

#[test]
fn voice_filter_accepts_voice_events_only() {
    let p = defaults();
    let filter = |name: &str, guild: Option<&str>| {
        let v = p.filter_voice(&event(name, guild, Some("5")));
        assert_eq!(v.fallback, None);
        v.value
    };
    assert_eq!(
        filter("VOICE_STATE_UPDATE", Some("1")),
        VoiceDecision::Relay("1".into())
    );
    assert_eq!(
        filter("VOICE_SERVER_UPDATE", Some("2")),
        VoiceDecision::Relay("2".into())
    );
    assert_eq!(filter("MESSAGE_CREATE", Some("1")), VoiceDecision::Reject);
    assert_eq!(filter("TYPING_START", Some("1")), VoiceDecision::Reject);
    assert_eq!(
        filter("VOICE_STATE_UPDATE", None),
        VoiceDecision::Reject,
        "no guild to relay to"
    );
}
