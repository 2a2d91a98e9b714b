use super::*;

#[test]
fn event_round_trips_with_raw_payload() {
    let text = r#"{"v":1,"op":"event","seq":7,"traceId":"t-1","t":"MESSAGE_CREATE","d":{"id":"1","content":"hi"},"ts":1700000000000}"#;
    let UpstreamFrame::Event(ev) = UpstreamFrame::decode(text).expect("decodes") else {
        panic!("not an event");
    };
    assert_eq!(ev.seq, 7);
    assert_eq!(ev.d.get(), r#"{"id":"1","content":"hi"}"#);
    let again = UpstreamFrame::Event(ev).encode();
    assert_eq!(again, text);
}

#[test]
fn command_uses_kind_and_body() {
    let cmd = HostFrame::Command(Command {
        request_id: "r1".into(),
        trace_id: "t1".into(),
        body: CommandBody::TypingStart(TypingStart {
            channel_id: "42".into(),
        }),
    });
    let text = cmd.encode();
    assert_eq!(
        text,
        r#"{"v":1,"op":"command","requestId":"r1","traceId":"t1","kind":"typing-start","body":{"channelId":"42"}}"#
    );
    let HostFrame::Command(back) = HostFrame::decode(&text).expect("decodes") else {
        panic!("not a command");
    };
    assert_eq!(back.body.kind(), CommandKind::TypingStart);
}

#[test]
fn unknown_op_is_distinguished_from_malformed() {
    let err = UpstreamFrame::decode(r#"{"v":1,"op":"gossip","x":1}"#).unwrap_err();
    assert!(err.is_unknown_op());
    let err = UpstreamFrame::decode(r#"{"v":1,"op":"event","traceId":"x"}"#).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)));
    let err = UpstreamFrame::decode("not json").unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)));
    let err = UpstreamFrame::decode(r#"{"v":2,"op":"event"}"#).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(2)));
}

#[test]
fn ack_failure_carries_retryable_from_code() {
    let ack = Ack::failure("r", ErrorCode::RateLimited, "slow down");
    let text = UpstreamFrame::Ack(ack).encode();
    assert!(text.contains(r#""code":"rate-limited""#));
    assert!(text.contains(r#""retryable":true"#));
    let unknown = r#"{"v":1,"op":"ack","requestId":"r","ok":false,"error":{"code":"new-thing","message":"m","retryable":false}}"#;
    let UpstreamFrame::Ack(ack) = UpstreamFrame::decode(unknown).expect("decodes") else {
        panic!("not an ack");
    };
    assert_eq!(ack.error.map(|e| e.code), Some(ErrorCode::Unknown));
}

#[test]
fn resume_without_session_is_a_fresh_start() {
    let text = HostFrame::Resume(Resume::default()).encode();
    assert_eq!(text, r#"{"v":1,"op":"resume","lastSeq":0}"#);
}
