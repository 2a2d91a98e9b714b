// A community-rules `command-validator` for gateway-host, written in JavaScript
// (componentize-js). Why it exists: it is the JavaScript example of the component platform,
// built and hot-loaded by the test suite, and a rule set a community server actually wants on
// top of the default validator's shape checks:
//
// * everything the default (Rust) validator checks: snowflake ids, content of 1..=2000
//   characters that is not blank, a nonce of 1..=25 characters, a unicode or `name:id` emoji
//   (`<:name:id>` and `<a:name:id>` normalised to `name:id`);
// * content is normalised: surrounding whitespace is trimmed before it is queued;
// * `@everyone` / `@here` are refused with code `mass_mention` (unless allowed by config);
// * words from `blocked-words` are refused with code `blocked_word` (case-insensitive,
//   whole words).
//
// Every error is reported, not only the first, with the field in the client's spelling.
//
// Configuration (`init`), all optional; an unknown key or a bad value is refused:
// * `max-content-length` (default 2000), `max-nonce-length` (default 25): positive integers;
// * `allow-mass-mentions`: `true` or `false` (default);
// * `blocked-words`: comma-separated words (default none).
//
// WIT mapping used by componentize-js: a `result<T, E>` export returns `T` or throws `E`;
// variants are `{ tag, val }`; records use camelCase fields; `option<T>` is `T | undefined`.

import { log } from "gateway:policy/log@1.0.0";

const DEFAULTS = Object.freeze({
  maxContentLength: 2000,
  maxNonceLength: 25,
  allowMassMentions: false,
  blockedWords: Object.freeze([]),
});

let settings = DEFAULTS;

function positiveInteger(key, value) {
  const trimmed = value.trim();
  if (!/^[0-9]+$/.test(trimmed) || Number(trimmed) <= 0 || !Number.isSafeInteger(Number(trimmed))) {
    throw `${key}: expected a positive integer, got ${JSON.stringify(value)}`;
  }
  return Number(trimmed);
}

/** `init(config)`: replaces the settings as a whole, or throws the refusal (a string). */
export function init(config) {
  const s = { ...DEFAULTS };
  for (const [key, value] of config) {
    switch (key) {
      case "max-content-length":
        s.maxContentLength = positiveInteger(key, value);
        break;
      case "max-nonce-length":
        s.maxNonceLength = positiveInteger(key, value);
        break;
      case "allow-mass-mentions":
        if (value !== "true" && value !== "false") {
          throw `allow-mass-mentions: expected true or false, got ${JSON.stringify(value)}`;
        }
        s.allowMassMentions = value === "true";
        break;
      case "blocked-words":
        s.blockedWords = value
          .split(",")
          .map((w) => w.trim().toLowerCase())
          .filter((w) => w.length > 0);
        break;
      default:
        throw `unknown configuration key ${JSON.stringify(key)}`;
    }
  }
  settings = Object.freeze(s);
  if (s.blockedWords.length > 0) {
    log("debug", `blocking ${s.blockedWords.length} word(s)`);
  }
}

function fieldError(field, code, message) {
  return { field, code, message };
}

/** A Discord snowflake: a non-zero unsigned 64-bit integer in decimal. */
function isSnowflake(s) {
  if (!/^[0-9]{1,20}$/.test(s)) return false;
  const v = BigInt(s);
  return v > 0n && v <= 0xffffffffffffffffn;
}

function checkSnowflake(field, value, errors) {
  if (!isSnowflake(value)) {
    errors.push(
      fieldError(
        field,
        "invalid_snowflake",
        `${field} must be a snowflake id (a non-zero 64-bit integer in decimal)`,
      ),
    );
  }
}

/** Length in characters (code points), as the default validator counts. */
function chars(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** An ASCII letter, digit or underscore, or a non-ASCII letter that has an upper and a lower case. */
function isWordChar(c) {
  return /[A-Za-z0-9_]/.test(c) || (c.codePointAt(0) > 0x7f && c.toLowerCase() !== c.toUpperCase());
}

/** The lower-cased words of `text` (runs of word characters). */
function wordsOf(text) {
  const words = new Set();
  let word = "";
  for (const c of text.toLowerCase()) {
    if (isWordChar(c)) {
      word += c;
    } else if (word) {
      words.add(word);
      word = "";
    }
  }
  if (word) words.add(word);
  return words;
}

function checkContent(raw, s, errors) {
  const n = chars(raw);
  if (n === 0) {
    errors.push(fieldError("content", "empty", "content must not be empty"));
    return raw;
  }
  const content = raw.trim();
  if (content.length === 0) {
    errors.push(fieldError("content", "blank", "content must contain more than whitespace"));
    return raw;
  }
  const m = chars(content);
  if (m > s.maxContentLength) {
    errors.push(
      fieldError(
        "content",
        "too_long",
        `content has ${m} characters, at most ${s.maxContentLength} are allowed`,
      ),
    );
  }
  if (!s.allowMassMentions && /(^|[^\w])@(everyone|here)\b/.test(content)) {
    errors.push(
      fieldError("content", "mass_mention", "@everyone and @here are not allowed here"),
    );
  }
  // Splitting into words is the costliest step for an interpreter (a test per character):
  // skip it when no word is blocked (the default).
  if (s.blockedWords.length > 0) {
    const words = wordsOf(content);
    if (s.blockedWords.some((w) => words.has(w))) {
      errors.push(fieldError("content", "blocked_word", "content contains a blocked word"));
    }
  }
  return content;
}

function isEmojiPart(cp) {
  return (
    cp === 0x00a9 ||
    cp === 0x00ae ||
    cp === 0x200d ||
    cp === 0x20e3 ||
    cp === 0xfe0f ||
    (cp >= 0x203c && cp <= 0x3299) ||
    (cp >= 0x1f000 && cp <= 0x1faff) ||
    (cp >= 0xe0020 && cp <= 0xe007f)
  );
}

function isPictographic(cp) {
  return (
    cp === 0x00a9 ||
    cp === 0x00ae ||
    (cp >= 0x203c && cp <= 0x3299) ||
    (cp >= 0x1f000 && cp <= 0x1faff)
  );
}

function isUnicodeEmoji(s) {
  const cps = Array.from(s, (c) => c.codePointAt(0));
  if (cps.length === 0 || cps.length > 16) return false;
  const first = s[0];
  if (/^[0-9#*]$/.test(first)) {
    const rest = s.slice(1);
    return rest === "\u20e3" || rest === "\ufe0f\u20e3";
  }
  return cps.every(isEmojiPart) && cps.some(isPictographic);
}

function isCustomEmoji(s) {
  const i = s.indexOf(":");
  if (i < 0) return false;
  const name = s.slice(0, i);
  const id = s.slice(i + 1);
  return /^[A-Za-z0-9_]{2,32}$/.test(name) && isSnowflake(id);
}

function normalizeEmoji(emoji) {
  const trimmed = emoji.trim();
  if (trimmed.startsWith("<") && trimmed.endsWith(">") && trimmed.length >= 2) {
    const inner = trimmed.slice(1, -1);
    if (inner.startsWith("a:")) return inner.slice(2);
    if (inner.startsWith(":")) return inner.slice(1);
    return inner;
  }
  return trimmed;
}

function validateSend(m, s) {
  const errors = [];
  checkSnowflake("channelId", m.channelId, errors);
  const content = checkContent(m.content, s, errors);
  if (m.nonce !== undefined) {
    const n = chars(m.nonce);
    if (n === 0 || n > s.maxNonceLength) {
      errors.push(
        fieldError("nonce", "invalid_nonce", `nonce must have 1..=${s.maxNonceLength} characters`),
      );
    }
  }
  if (errors.length > 0) throw errors;
  return { tag: "send-message", val: { channelId: m.channelId, content, nonce: m.nonce } };
}

function validateReaction(r) {
  const errors = [];
  checkSnowflake("channelId", r.channelId, errors);
  checkSnowflake("messageId", r.messageId, errors);
  const emoji = normalizeEmoji(r.emoji);
  if (!isUnicodeEmoji(emoji) && !isCustomEmoji(emoji)) {
    errors.push(
      fieldError(
        "emoji",
        "invalid_emoji",
        "emoji must be a unicode emoji or a custom emoji as name:id",
      ),
    );
  }
  if (errors.length > 0) throw errors;
  return { tag: "add-reaction", val: { channelId: r.channelId, messageId: r.messageId, emoji } };
}

function validateTyping(t) {
  const errors = [];
  checkSnowflake("channelId", t.channelId, errors);
  if (errors.length > 0) throw errors;
  return { tag: "typing-start", val: { channelId: t.channelId } };
}

/**
 * `validate(userId, command)`: returns the normalised command or throws every field error.
 *
 * componentize-js lowers *any* exception thrown by a `result`-returning export as its `err`
 * case: a bug (a `TypeError`, say) would reach the client as "invalid, with no reason".
 * Such an exception is therefore logged and reported as one `validator_error`.
 */
export function validate(userId, command) {
  try {
    return validateCommand(userId, command);
  } catch (e) {
    if (Array.isArray(e)) throw e;
    const reason = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    log("error", `validate threw ${reason}`);
    throw [fieldError("command", "validator_error", `the validator failed: ${reason}`)];
  }
}

function validateCommand(_userId, command) {
  switch (command.tag) {
    case "send-message":
      return validateSend(command.val, settings);
    case "add-reaction":
      return validateReaction(command.val);
    case "typing-start":
      return validateTyping(command.val);
    default:
      throw [fieldError("kind", "unknown_command", `unknown command ${String(command.tag)}`)];
  }
}
