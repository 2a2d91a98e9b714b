"""A redacting `event-router` for gateway-host, written in Python (componentize-py).

Why it exists: it is the Python example of the component platform, built and hot-loaded by
the test suite, and a router operators actually ask for: it routes every event exactly like
the default Rust router and, on top, rewrites message content so that text matching a
pattern (by default e-mail addresses) never reaches an SSE subscriber.

Routing (same as `components/event-router`):
  * `guild:<guildId>` when the event has a guild id,
  * `channel:<channelId>` when it has a channel id,
  * `voice:<guildId>` for `VOICE_STATE_UPDATE` / `VOICE_SERVER_UPDATE` in a guild,
  * `global` when none of these apply (or drop, with `unrouted = "drop"`).

Redaction: for the events named in `redact-events`, every match of `redact-pattern` in the
payload's `content` string (and in each embed's `title` and `description`) is replaced by
`redact-replacement`, and the rewritten payload is delivered instead of the original. A
payload that is not a JSON object cannot be checked, so it is dropped rather than
delivered unredacted (a redacting router must never leak by failing open).

Configuration (`init`), all optional; an unknown key or a bad value is refused:
  * `redact-pattern`: a Python regular expression (default: e-mail addresses); empty turns
    redaction off.
  * `redact-replacement`: the text put in place of each match (default `[redacted]`).
  * `redact-events`: comma-separated event names to redact (default
    `MESSAGE_CREATE,MESSAGE_UPDATE`).
  * `drop-events`: comma-separated event names never delivered.
  * `unrouted`: `global` (default) or `drop`.
"""

import json
import re
from typing import List, Optional, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.types import Delivery, Event, Route, Route_Deliver, Route_Drop

DEFAULT_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
DEFAULT_REPLACEMENT = "[redacted]"
DEFAULT_REDACT_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE")
VOICE_EVENTS = ("VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE")


class Settings:
    """What `init` accepted; replaced as a whole so a refused config changes nothing."""

    def __init__(self) -> None:
        self.pattern: Optional[re.Pattern] = re.compile(DEFAULT_PATTERN)
        self.replacement = DEFAULT_REPLACEMENT
        self.redact_events = frozenset(DEFAULT_REDACT_EVENTS)
        self.drop_events: frozenset = frozenset()
        self.drop_unrouted = False


SETTINGS = Settings()


def names(value: str) -> frozenset:
    """A comma-separated list of event names."""
    return frozenset(n.strip() for n in value.split(",") if n.strip())


def parse_config(config: List[Tuple[str, str]]) -> Settings:
    """The settings for `config`; raises `ValueError` naming the bad key."""
    s = Settings()
    for key, value in config:
        if key == "redact-pattern":
            if value == "":
                s.pattern = None
                continue
            try:
                s.pattern = re.compile(value)
            except re.error as e:
                raise ValueError(f"redact-pattern: not a valid regular expression: {e}")
        elif key == "redact-replacement":
            s.replacement = value
        elif key == "redact-events":
            s.redact_events = names(value)
        elif key == "drop-events":
            s.drop_events = names(value)
        elif key == "unrouted":
            if value not in ("global", "drop"):
                raise ValueError(f"unrouted: expected global or drop, got {value!r}")
            s.drop_unrouted = value == "drop"
        else:
            raise ValueError(f"unknown configuration key {key!r}")
    return s


def topics_for(event: Event) -> List[str]:
    meta = event.meta
    topics = []
    if meta.guild_id is not None:
        topics.append(f"guild:{meta.guild_id}")
    if meta.channel_id is not None:
        topics.append(f"channel:{meta.channel_id}")
    if meta.guild_id is not None and meta.name in VOICE_EVENTS:
        topics.append(f"voice:{meta.guild_id}")
    return topics


def redact_text(value, s: Settings):
    """`value` with every match replaced, and whether anything was."""
    if not isinstance(value, str) or s.pattern is None:
        return value, False
    redacted, n = s.pattern.subn(s.replacement, value)
    return redacted, n > 0


def redact_payload(payload: str, s: Settings) -> Tuple[bool, Optional[str]]:
    """(deliverable, replacement payload or None to keep the original)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return False, None
    if not isinstance(message, dict):
        return False, None
    changed = False
    message["content"], hit = redact_text(message.get("content"), s)
    changed |= hit
    if message["content"] is None:
        del message["content"]
    embeds = message.get("embeds")
    if isinstance(embeds, list):
        for embed in embeds:
            if isinstance(embed, dict):
                for field in ("title", "description"):
                    if field in embed:
                        embed[field], hit = redact_text(embed[field], s)
                        changed |= hit
    if not changed:
        return True, None
    return True, json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class WitWorld(wit_world.WitWorld):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global SETTINGS
        try:
            SETTINGS = parse_config(config)
        except ValueError as e:
            raise Err(str(e))

    def route(self, event: Event) -> Route:
        s = SETTINGS
        name = event.meta.name
        if name in s.drop_events:
            return Route_Drop()
        topics = topics_for(event)
        if not topics:
            if s.drop_unrouted:
                return Route_Drop()
            topics = ["global"]
        payload = None
        if name in s.redact_events and s.pattern is not None:
            deliverable, payload = redact_payload(event.payload, s)
            if not deliverable:
                log.log(
                    log.Level.WARN,
                    f"dropping {name} seq {event.meta.seq}: payload is not a JSON object, cannot redact",
                )
                return Route_Drop()
        return Route_Deliver(Delivery(topics=topics, payload=payload))
