//! The view's routes: the page, its JSON API (see `docs/ui-api.md`) and
//! the live stream. Every handler reads or writes through [`Env`] alone.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Shared;
use super::access::Refused;
use super::assets;
use crate::env::{
    AgentId, Direction, EnvError, EventFilter, MAX_PAGE, TaskQuery, TaskRef, TaskState,
};

type S = State<Arc<Shared>>;

/// The page size when a request names none.
const DEFAULT_PAGE: u32 = 100;

/// The routes, behind the access check.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(|| async { assets::script() }))
        .route("/app.css", get(|| async { assets::style() }))
        .route("/api/overview", get(overview))
        .route("/api/agents", get(agents))
        .route("/api/agents/{id}", get(agent))
        .route("/api/leases", get(leases))
        .route("/api/tasks", get(tasks))
        .route("/api/tasks/{id}", get(task))
        .route("/api/tasks/{id}/retry", post(retry))
        .route("/api/tasks/{id}/cancel", post(cancel))
        .route("/api/signals", get(signals))
        .route("/api/learnings", get(learnings))
        .route("/api/values", get(values))
        .route("/api/events", get(events))
        .route("/api/stream", get(stream))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such page".into()) })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// A refusal or failure, answered as `{"error": "..."}`.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<EnvError> for ApiError {
    fn from(e: EnvError) -> Self {
        let status = match &e {
            EnvError::NotFound(_) => StatusCode::NOT_FOUND,
            EnvError::InvalidArgument(_) | EnvError::TooLarge { .. } => StatusCode::BAD_REQUEST,
            EnvError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

async fn guard(State(s): S, req: Request, next: Next) -> Response {
    let query_token = (req.uri().path() == "/")
        .then(|| query_param(req.uri().query(), "token"))
        .flatten();
    let mut res = match s
        .access
        .check(req.method(), req.headers(), query_token.as_deref())
    {
        Ok(()) => next.run(req).await,
        Err(Refused(status, why)) => ApiError(status, why).into_response(),
    };
    // No other site may frame the page (a framed page could be clicked
    // into an operator action), guess types, or learn its URL.
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// The page; opened with `?token=`, it keeps the token in a cookie and
/// sends the browser to the bare address.
async fn page(State(s): S, req: Request) -> Response {
    let token = query_param(req.uri().query(), "token");
    if let Some(cookie) = token.and_then(|t| s.access.cookie_for(&t)) {
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    assets::page()
}

async fn overview(State(s): S) -> ApiResult {
    Ok(Json(s.live.overview().await?))
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<u32>,
    state: Option<String>,
    queue: Option<String>,
    prefix: Option<String>,
}

impl Page {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }

    fn task_state(&self) -> Result<Option<TaskState>, ApiError> {
        self.state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                TaskState::parse(s).ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown task state {s:?}: one of blocked, ready, claimed, done, dead, cancelled"
                        ),
                    )
                })
            })
            .transpose()
    }
}

fn bad(what: &str, value: &str) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        format!("{what} must be a whole number, not {value:?}"),
    )
}

/// `next`: the cursor of the following page, when this one is full.
fn next<T>(rows: &[T], limit: u32, cursor: impl Fn(&T) -> Value) -> Value {
    match rows.last() {
        Some(last) if rows.len() as u32 >= limit => cursor(last),
        _ => Value::Null,
    }
}

/// The states an agent can be in.
const AGENT_STATES: [&str; 6] = ["running", "exited", "failed", "crashed", "stopped", "lost"];

async fn agents(State(s): S, Query(p): Query<Page>) -> ApiResult {
    let limit = p.limit();
    let state = p.state.as_deref().filter(|s| !s.is_empty());
    if let Some(st) = state.filter(|st| !AGENT_STATES.contains(st)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown agent state {st:?}: one of {}",
                AGENT_STATES.join(", ")
            ),
        ));
    }
    let rows = s
        .env
        .agents_page(state, p.after.as_deref().unwrap_or(""), limit)
        .await?;
    let next = next(&rows, limit, |a| json!(a.id));
    Ok(Json(json!({ "agents": rows, "next": next })))
}

async fn agent(State(s): S, Path(id): Path<String>) -> ApiResult {
    let agent = s.env.get_agent(&id).await?;
    let leases = s.env.holdings_page("", Some(&id), None, MAX_PAGE).await?;
    let tasks = s
        .env
        .tasks_page(&TaskQuery {
            claimed_by: Some(id),
            limit: MAX_PAGE,
            ..TaskQuery::default()
        })
        .await?;
    Ok(Json(
        json!({ "agent": agent, "leases": leases, "tasks": tasks }),
    ))
}

async fn leases(State(s): S, Query(p): Query<Page>) -> ApiResult {
    let limit = p.limit();
    // The cursor is "RESOURCE\nLEASE": resources hold no control characters.
    let after = match p.after.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => {
            let (res, lease) = a.rsplit_once('\n').ok_or_else(|| bad("after", a))?;
            Some((res, lease.parse::<u64>().map_err(|_| bad("after", a))?))
        }
        None => None,
    };
    let prefix = p.prefix.as_deref().unwrap_or("");
    let holdings = s.env.holdings_page(prefix, None, after, limit).await?;
    let waiters = s.env.waiters(MAX_PAGE).await?;
    let next = next(&holdings, limit, |h| {
        json!(format!("{}\n{}", h.resource, h.lease))
    });
    Ok(Json(
        json!({ "holdings": holdings, "waiters": waiters, "next": next }),
    ))
}

async fn tasks(State(s): S, Query(p): Query<Page>) -> ApiResult {
    let limit = p.limit();
    let after = match p.after.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a.parse().map_err(|_| bad("after", a))?,
        None => 0,
    };
    let rows = s
        .env
        .tasks_page(&TaskQuery {
            queue: p.queue.clone().filter(|q| !q.is_empty()),
            state: p.task_state()?,
            claimed_by: None,
            after,
            limit,
        })
        .await?;
    let next = next(&rows, limit, |t| json!(t.id));
    Ok(Json(json!({ "tasks": rows, "next": next })))
}

fn task_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| bad("a task id", id))
}

async fn task(State(s): S, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    let task = s.env.get_task(id).await?;
    let links = s.env.task_links(id).await?;
    let story = s.env.task_story(id).await?;
    let refs = |v: &[TaskRef]| json!(v);
    Ok(Json(json!({
        "task": task,
        "depends_on": refs(&links.depends_on),
        "dependents": refs(&links.dependents),
        "story": story.events,
        "story_cut_short": story.cut_short,
    })))
}

fn operator_action(s: &Shared) -> Result<AgentId, ApiError> {
    if !s.actions {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "operator actions are off: start the view with --actions to allow retry and cancel"
                .into(),
        ));
    }
    Ok(AgentId::operator())
}

/// An action's refusal because of the task's state is a conflict.
fn action_error(e: EnvError) -> ApiError {
    match e {
        EnvError::InvalidArgument(why) => ApiError(StatusCode::CONFLICT, why),
        e => e.into(),
    }
}

async fn retry(State(s): S, Path(id): Path<String>) -> ApiResult {
    let who = operator_action(&s)?;
    let task = s
        .env
        .retry_task(&who, task_id(&id)?)
        .await
        .map_err(action_error)?;
    Ok(Json(json!({ "task": task })))
}

async fn cancel(State(s): S, Path(id): Path<String>) -> ApiResult {
    let who = operator_action(&s)?;
    let task = s
        .env
        .cancel_task(&who, task_id(&id)?)
        .await
        .map_err(action_error)?;
    Ok(Json(json!({ "task": task })))
}

async fn signals(State(s): S, Query(p): Query<Page>) -> ApiResult {
    let rows = s
        .env
        .strongest(p.prefix.as_deref().unwrap_or(""), p.limit())
        .await?;
    Ok(Json(json!({ "now": s.env.now_ms(), "signals": rows })))
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
    limit: Option<u32>,
}

async fn learnings(State(s): S, Query(p): Query<Search>) -> ApiResult {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rows = match p.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => s.env.search_learnings(q, limit).await?,
        None => s.env.recent_learnings(None, limit).await?,
    };
    Ok(Json(json!({ "learnings": rows })))
}

async fn values(State(s): S, Query(p): Query<Page>) -> ApiResult {
    let limit = p.limit();
    let rows = s
        .env
        .values_page(
            p.prefix.as_deref().unwrap_or(""),
            p.after.as_deref().unwrap_or(""),
            limit,
        )
        .await?;
    let next = next(&rows, limit, |v| json!(v.key));
    Ok(Json(json!({ "values": rows, "next": next })))
}

#[derive(Deserialize)]
struct Events {
    before: Option<String>,
    after: Option<String>,
    kind: Option<String>,
    agent: Option<String>,
    subject: Option<String>,
    limit: Option<u32>,
}

async fn events(State(s): S, Query(q): Query<Events>) -> ApiResult {
    let seq = |name: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
        v.as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().map_err(|_| bad(name, v)))
            .transpose()
    };
    let (cursor, direction) = match (seq("before", &q.before)?, seq("after", &q.after)?) {
        (Some(_), Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give before or after, not both".into(),
            ));
        }
        (_, Some(after)) => (after, Direction::Forward),
        (before, None) => (before.unwrap_or(0), Direction::Back),
    };
    let filter = EventFilter {
        kinds: q.kind.iter().filter(|k| !k.is_empty()).cloned().collect(),
        subject_prefix: q.subject.clone().unwrap_or_default(),
        agent: q.agent.clone().filter(|a| !a.is_empty()),
    };
    let page = s
        .env
        .events_page(cursor, direction, &filter, q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(Json(json!(page)))
}

/// The live stream: every frame the shared tail broadcasts, and `resync`
/// when this page fell too far behind. Ends when the server stops.
async fn stream(State(s): S) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.live.subscribe();
    let stop = s.stop.clone();
    let frames = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        let event = tokio::select! {
            r = rx.recv() => match r {
                Ok(frame) => SseEvent::default().event(frame.event).data(&frame.data),
                Err(RecvError::Lagged(_)) => SseEvent::default().event("resync").data("{}"),
                Err(RecvError::Closed) => return None,
            },
            _ = stop.wait_for(|s| *s) => return None,
        };
        Some((Ok(event), (rx, stop)))
    });
    Sse::new(frames).keep_alive(KeepAlive::default())
}
