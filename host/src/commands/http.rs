//! The HTTP handlers: every step of the pipeline and its own error answer.
//!
//! Why the handler itself runs auth, validation and rate limiting (instead of
//! middleware): the steps' order is the contract (a refused token never costs a
//! component call, an invalid command never costs a token from the bucket), and one
//! straight function shows that order. Everything runs inside a `command` span carrying
//! the traceId, so each log record about the command can be found by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gateway_protocol::CommandKind;
use serde_json::Value;
use tracing::Instrument;

use super::body::{self, BodyError};
use super::outcomes::{Finished, Outcome, latency_ms, pending_json};
use super::queue::QueueFull;
use super::{Accepted, CommandPipeline};
use crate::api_error::{ApiError, new_trace_id};
use crate::auth::{Authenticator, Claims};
use crate::cluster::RemoteLimiter;
use crate::cluster::command_wire::{LimitAnswer, LimitRequest};
use crate::policy::types::{Command, FieldError, RateRequest};
use crate::policy::{LimitOutcome, Policies, Validation};

/// `Retry-After` when the queue is full or the validator is down.
const BUSY_RETRY_SECS: u64 = 1;

#[derive(Clone)]
struct Ctx {
    auth: Authenticator,
    policies: Arc<Policies>,
    pipeline: CommandPipeline,
}

/// The `/api/commands` routes.
pub fn router(auth: Authenticator, policies: Arc<Policies>, pipeline: CommandPipeline) -> Router {
    let limit = pipeline.settings().max_body_bytes;
    let ctx = Ctx {
        auth,
        policies,
        pipeline,
    };
    Router::new()
        .route("/api/commands/send-message", post(send_message))
        .route("/api/commands/add-reaction", post(add_reaction))
        .route("/api/commands/typing-start", post(typing_start))
        .route("/api/commands/{request_id}", get(status))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ctx)
}

type Body = Result<Bytes, BytesRejection>;

async fn send_message(s: State<Ctx>, h: HeaderMap, b: Body) -> Response {
    submit(s, CommandKind::SendMessage, h, b).await
}

async fn add_reaction(s: State<Ctx>, h: HeaderMap, b: Body) -> Response {
    submit(s, CommandKind::AddReaction, h, b).await
}

async fn typing_start(s: State<Ctx>, h: HeaderMap, b: Body) -> Response {
    submit(s, CommandKind::TypingStart, h, b).await
}

async fn submit(
    State(ctx): State<Ctx>,
    kind: CommandKind,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace_id = new_trace_id();
    let span = tracing::info_span!("command_request", trace_id = %trace_id, kind = kind.as_str());
    let answer = run(&ctx, kind, &headers, body, &trace_id)
        .instrument(span)
        .await;
    match answer {
        Ok(response) => response,
        Err(error) => {
            metrics::counter!("gateway_commands_total", "kind" => kind.as_str(), "outcome" => error.code)
                .increment(1);
            error.traced(&trace_id).into_response()
        }
    }
}

/// The pipeline up to the queue, then the wait for the outcome.
async fn run(
    ctx: &Ctx,
    kind: CommandKind,
    headers: &HeaderMap,
    body: Body,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let claims = authorize(&ctx.auth, headers, kind)?;
    let budget = ctx.pipeline.invalid_budget();
    budget
        .check(&claims.sub, Instant::now())
        .map_err(too_many_invalid)?;
    let checked = async {
        let command = read_body(kind, headers, body)?;
        validate(&ctx.policies, &claims.sub, command).await
    }
    .await;
    let command = checked.inspect_err(|e| {
        if is_invalid(e) {
            budget.charge(&claims.sub, Instant::now());
        }
    })?;
    rate_limit(ctx, &claims.sub, kind, &command).await?;
    let accepted = ctx
        .pipeline
        .submit(&claims.sub, trace_id, body::to_wire(command))
        .map_err(refused)?;
    tracing::debug!(event = "command.queued", request_id = %accepted.request_id, "command queued");
    Ok(await_outcome(ctx, kind, accepted, trace_id).await)
}

/// The caller's own fault, which spends its invalid-command budget.
fn is_invalid(error: &ApiError) -> bool {
    matches!(
        error.status,
        StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
    )
}

fn too_many_invalid(wait: Duration) -> ApiError {
    let wait_ms = (wait.as_millis() as u64).max(1);
    tracing::info!(
        retry_after_ms = wait_ms,
        "too many invalid commands; refusing unread"
    );
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_invalid",
        "too many invalid commands from this user; fix them and retry later",
    )
    .with("retryAfterMs", wait_ms)
    .retry_after(wait_ms.div_ceil(1000).max(1))
}

/// The queue's refusal as an answer: the user's share (429), the whole queue or a
/// shutdown (503).
fn refused(why: QueueFull) -> ApiError {
    match why {
        QueueFull::OwnerLimit { limit } => {
            tracing::info!(limit, "user's share of the command queue is full; refusing");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                format!("this user already has {limit} commands pending; wait for them to finish"),
            )
            .with("limit", limit)
            .retry_after(BUSY_RETRY_SECS)
        }
        QueueFull::Full => {
            tracing::warn!("command queue full; refusing");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the command queue is full; retry later",
            )
            .retry_after(BUSY_RETRY_SECS)
        }
        QueueFull::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the host is shutting down; retry on another instance or later",
        )
        .retry_after(BUSY_RETRY_SECS),
    }
}

fn authorize(
    auth: &Authenticator,
    headers: &HeaderMap,
    kind: CommandKind,
) -> Result<Claims, ApiError> {
    let claims = auth.authenticate(headers)?;
    if !claims.allows_command(kind.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token does not allow {}", kind.as_str()),
        ));
    }
    Ok(claims)
}

fn read_body(kind: CommandKind, headers: &HeaderMap, body: Body) -> Result<Command, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    body::parse(kind, &bytes).map_err(|e| match e {
        BodyError::Syntax(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
        }
        BodyError::Fields(fields) => {
            field_errors("invalid_body", "the body has invalid fields", fields)
        }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn field_errors(code: &'static str, message: &str, fields: Vec<FieldError>) -> ApiError {
    let list: Vec<Value> = fields
        .into_iter()
        .map(|f| serde_json::json!({ "field": f.field, "code": f.code, "message": f.message }))
        .collect();
    ApiError::new(StatusCode::BAD_REQUEST, code, message).with("fields", list)
}

fn unavailable(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "validator_unavailable",
        format!("the {what} cannot check commands right now; retry later"),
    )
    .retry_after(BUSY_RETRY_SECS)
}

async fn validate(
    policies: &Arc<Policies>,
    user: &str,
    command: Command,
) -> Result<Command, ApiError> {
    let verdict = policies.validate_async(user.to_string(), command).await;
    if let Some(failure) = &verdict.fallback {
        tracing::warn!(
            ?failure,
            answered_by = verdict.answered_by(),
            "command validator failed; failure policy applied"
        );
    }
    match verdict.value {
        Validation::Valid(normalized) => Ok(normalized),
        Validation::Invalid(fields) => Err(field_errors(
            "validation_failed",
            "the command breaks the validation rules",
            fields,
        )),
        Validation::Unavailable => Err(unavailable("command validator")),
    }
}

async fn rate_limit(
    ctx: &Ctx,
    user: &str,
    kind: CommandKind,
    command: &Command,
) -> Result<(), ApiError> {
    let channel_id = body::channel_of(command).to_string();
    let outcome = match ctx.pipeline.remote_limiter() {
        Some(remote) => remote_rate(remote, user, channel_id, kind).await?,
        None => local_rate(&ctx.policies, user, channel_id, kind).await,
    };
    match outcome {
        LimitOutcome::Allow { .. } => Ok(()),
        LimitOutcome::Deny { retry_after_ms } => {
            tracing::info!(retry_after_ms, "rate limited");
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many commands; slow down",
            )
            .with("retryAfterMs", retry_after_ms)
            .retry_after(retry_after_ms.div_ceil(1000).max(1)))
        }
    }
}

/// This host's limiter slot (single-host mode).
async fn local_rate(
    policies: &Arc<Policies>,
    user: &str,
    channel_id: String,
    kind: CommandKind,
) -> LimitOutcome {
    let request = RateRequest {
        user_id: user.to_string(),
        channel_id,
        kind: body::policy_kind(kind),
    };
    let verdict = policies.check_rate_async(request).await;
    if let Some(failure) = &verdict.fallback {
        tracing::warn!(
            ?failure,
            answered_by = verdict.answered_by(),
            "rate limiter failed; failure policy applied"
        );
    }
    verdict.value
}

/// The link holder's limiter slot (cluster mode): one bucket per user across hosts.
async fn remote_rate(
    remote: &RemoteLimiter,
    user: &str,
    channel_id: String,
    kind: CommandKind,
) -> Result<LimitOutcome, ApiError> {
    let request = LimitRequest {
        user_id: user.to_string(),
        channel_id,
        kind: kind.as_str().to_string(),
    };
    match remote.check(&request).await {
        Ok(LimitAnswer::Allow { remaining }) => Ok(LimitOutcome::Allow { remaining }),
        Ok(LimitAnswer::Deny { retry_after_ms }) => Ok(LimitOutcome::Deny { retry_after_ms }),
        Err(why) => {
            tracing::warn!(reason = %why, "the link holder's rate limiter did not answer; refusing");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "limiter_unavailable",
                format!("the rate limiter cannot check commands right now ({why}); retry later"),
            )
            .retry_after(BUSY_RETRY_SECS))
        }
    }
}

/// Waits up to `ack-wait-ms` for the outcome; 202 with the requestId past that.
async fn await_outcome(
    ctx: &Ctx,
    kind: CommandKind,
    accepted: Accepted,
    trace_id: &str,
) -> Response {
    let wait = ctx.pipeline.settings().ack_wait();
    match tokio::time::timeout(wait, accepted.outcome).await {
        Ok(Ok(finished)) => outcome_response(finished),
        _ => {
            let mut doc = pending_json(&accepted.request_id, trace_id, kind);
            doc["statusUrl"] = format!("/api/commands/{}", accepted.request_id).into();
            let location = [(
                header::LOCATION,
                format!("/api/commands/{}", accepted.request_id),
            )];
            (StatusCode::ACCEPTED, location, axum::Json(doc)).into_response()
        }
    }
}

/// 200 with the outcome document when delivered; the error shape otherwise.
fn outcome_response(finished: Finished) -> Response {
    let (status, code, message) = match &finished.outcome {
        Outcome::Delivered { .. } => {
            return (StatusCode::OK, axum::Json(finished.to_json())).into_response();
        }
        Outcome::Rejected { message, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected",
            format!("the upstream refused the command: {message}"),
        ),
        Outcome::Expired => (
            StatusCode::GATEWAY_TIMEOUT,
            "expired",
            "the command could not be delivered in time".to_string(),
        ),
        Outcome::Shutdown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutdown",
            "the host shut down before the command was delivered".to_string(),
        ),
    };
    let mut error = ApiError::new(status, code, message)
        .with("requestId", finished.request_id.clone())
        .with("outcome", finished.outcome.as_str())
        .with("attempts", finished.attempts)
        .with("latencyMs", latency_ms(finished.latency));
    if let Outcome::Rejected { code, .. } = &finished.outcome {
        error = error.with("upstreamCode", code.clone());
    }
    error.traced(&finished.trace_id).into_response()
}

/// `GET /api/commands/{requestId}`: the owner's view of one command.
async fn status(
    State(ctx): State<Ctx>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let claims = match ctx.auth.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match ctx.pipeline.status(&request_id, &claims.sub) {
        Some(doc) => axum::Json(doc).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no command with this requestId is known for this token (unknown, not yours, or expired from the store)",
        )
        .into_response(),
    }
}
