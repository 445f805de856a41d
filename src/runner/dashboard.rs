//! The operator dashboard (issue 11 §4), server-rendered by the agent-runner (no front-end build):
//!
//! - `GET /` → the sign-in page (or `303 /dashboard` when signed in); `POST /signin` with the form
//!   field `token` = `SELFHEAL_API_TOKEN` → `303 /dashboard` and the session cookie (401 and the
//!   page again for a wrong token); `POST /signout` → the cookie cleared, `303 /`.
//! - `GET /dashboard[?status=S]` (incidents), `/dashboard/runs` (fix runs and today's budget),
//!   `/dashboard/incidents/{id}` (what `selfheal show` prints, the ticket rendered);
//!   `POST /dashboard/incidents/{id}/resolve|ignore|reopen|label` (`label` = `actionable` |
//!   `not_actionable`) → `303` back to the incident's page. Signed out → `303 /` (GET) or 401.
//! - Guards, before any work: a credential-like query parameter → 400 (as the API:
//!   [`crate::security::secret_in_query`]); every POST same-origin ([`view::same_origin`]) → 403,
//!   body within [`MAX_FORM_BYTES`] → 413; every POST but the sign-in with the session's CSRF token
//!   ([`view::csrf_ok`]) → 403. Session and CSRF: see [`crate::dashboard`].
//! - Data: the JSON API's own functions ([`super::api`], [`super::gate_api`], [`super::label`],
//!   [`super::operator::api`]) and statements ([`crate::store::SELECT_SAMPLES`]); only what the
//!   API does not return is read here: the occurrences per hour (`ops_occ_1h`) and the tracker
//!   and PR links.
//! - Every answer: `Cache-Control: no-store`, `Referrer-Policy: same-origin` (no referrer to other
//!   sites; not `no-referrer`, under which a browser sends `Origin: null` with a form POST and the
//!   origin check could not tell), a
//!   `Content-Security-Policy` without scripts (`default-src 'none'`, inline styles only,
//!   `form-action 'self'`, `frame-ancestors 'none'`).

use serde::Deserialize;
use serde_json::{Value, json};
use worker::{Env, Method, Request, Response, console_error, console_log};

use crate::dashboard::{self as view, IncidentPage};
use crate::security;
use crate::store::SELECT_SAMPLES;
use crate::workers::{self, DB_BINDING, GlueError, sql_with};

/// Largest form body (sign-in, actions), bytes.
pub const MAX_FORM_BYTES: usize = 4 * 1024;
/// Samples shown on an incident's page.
const SAMPLES: i64 = 3;

/// Occurrences per hour of every incident since `?1` (ms), releases added up.
const SELECT_HOURLY: &str = "SELECT fingerprint, bucket, sum(n) AS n FROM ops_occ_1h WHERE bucket >= ?1 \
GROUP BY fingerprint, bucket";
/// Occurrences per hour and release of the incident with fingerprint `?1`, oldest first.
pub(super) const SELECT_INCIDENT_BUCKETS: &str =
    "SELECT bucket, release, n FROM ops_occ_1h WHERE fingerprint = ?1 ORDER BY bucket, release";
/// The tracker links of the incident `?1`'s tickets and the PR links of its runs.
const SELECT_LINKS: &str = "SELECT 'ticket' AS kind, id, external_url AS url FROM tickets WHERE incident_id = ?1 \
UNION ALL SELECT 'run', id, pr_url FROM fix_runs WHERE incident_id = ?1";

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the dashboard's (the hook in [`super`]'s `fetch` routes these here).
pub fn owns(path: &str) -> bool {
    matches!(path, "/" | "/signin" | "/signout" | "/dashboard") || path.starts_with("/dashboard/")
}

/// Serves one dashboard request (see the module doc); a D1 failure is a 500 page, logged.
pub async fn handle(env: &Env, req: &mut Request) -> worker::Result<Response> {
    match serve(env, req).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            console_error!("selfheal dashboard {}: {e}", req.path());
            html(500, &view::message_page("Error", "internal error", None))
        }
    }
}

fn html(status: u16, body: &str) -> worker::Result<Response> {
    let resp = Response::from_html(body)?.with_status(status);
    guard_headers(&resp)?;
    Ok(resp)
}

fn guard_headers(resp: &Response) -> worker::Result<()> {
    let h = resp.headers();
    h.set("cache-control", "no-store")?;
    h.set("referrer-policy", "same-origin")?;
    h.set("x-content-type-options", "nosniff")?;
    h.set("content-security-policy", CSP)?;
    Ok(())
}

/// `303 See Other` to `location` (a path of this site), with a `Set-Cookie` when given.
fn redirect(location: &str, cookie: Option<String>) -> worker::Result<Response> {
    let resp = Response::empty()?.with_status(303);
    guard_headers(&resp)?;
    resp.headers().set("location", location)?;
    if let Some(c) = cookie {
        resp.headers().set("set-cookie", &c)?;
    }
    Ok(resp)
}

/// The error text of one of the API's JSON error answers.
async fn api_error(mut resp: Response) -> String {
    resp.json::<Value>()
        .await
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {}", resp.status_code()))
}

async fn serve(env: &Env, req: &mut Request) -> Result<Response, GlueError> {
    let path = req.path();
    let url = req.url()?;
    if let Some(name) = url.query().and_then(security::secret_in_query) {
        console_log!(
            "selfheal dashboard {path}: refused a credential in the query string ({name})"
        );
        let msg = format!("credentials never go in a URL (query parameter {name:?})");
        return Ok(html(400, &view::message_page("Refused", &msg, None))?);
    }
    let Some(token) = workers::var(env, "SELFHEAL_API_TOKEN") else {
        let msg = "SELFHEAL_API_TOKEN is not configured";
        return Ok(html(503, &view::message_page("Unavailable", msg, None))?);
    };
    let secure = url.scheme() == "https";
    let now_ms = workers::now_ms();
    let now_secs = u64::try_from(now_ms / 1000).unwrap_or(0);
    let cookies = req.headers().get("cookie")?;
    let session = view::cookie(cookies.as_deref(), view::SESSION_COOKIE)
        .filter(|s| view::session_ok(&token, s, now_secs))
        .map(str::to_string);
    let csrf = session.as_deref().map(|s| view::csrf_token(&token, s));
    let method = req.method();

    if method == Method::Post {
        let headers = req.headers();
        let (site, origin) = (headers.get("sec-fetch-site")?, headers.get("origin")?);
        let own = url.origin().ascii_serialization();
        if !view::same_origin(site.as_deref(), origin.as_deref(), &own) {
            console_log!(
                "selfheal dashboard {path}: refused a cross-origin POST (Origin {origin:?}, Sec-Fetch-Site {site:?}, own origin {own})"
            );
            let msg = "cross-origin form refused";
            return Ok(html(403, &view::message_page("Refused", msg, None))?);
        }
        let body = match super::read_body(req, MAX_FORM_BYTES).await? {
            Ok(b) => b,
            Err(refused) => return Ok(refused),
        };
        if path == "/signin" {
            let given = view::form_field(&body, view::TOKEN_FIELD).unwrap_or_default();
            if !security::ct_eq(given.as_bytes(), token.as_bytes()) {
                console_log!("selfheal dashboard: sign-in refused (wrong token)");
                return Ok(html(401, &view::signin_page(Some("wrong token")))?);
            }
            let value = view::session_value(&token, now_secs + view::SESSION_SECS);
            return Ok(redirect(
                "/dashboard",
                Some(view::session_cookie(&value, secure)),
            )?);
        }
        let Some(session) = session else {
            return Ok(html(
                401,
                &view::signin_page(Some("signed out: sign in again")),
            )?);
        };
        if !view::csrf_ok(
            &token,
            &session,
            view::form_field(&body, view::CSRF_FIELD).as_deref(),
        ) {
            console_log!("selfheal dashboard {path}: refused a POST without its CSRF token");
            let msg = "missing or wrong CSRF token";
            return Ok(html(
                403,
                &view::message_page("Refused", msg, csrf.as_deref()),
            )?);
        }
        if path == "/signout" {
            return Ok(redirect("/", Some(view::cleared_cookie(secure)))?);
        }
        let csrf = view::csrf_token(&token, &session);
        return action(env, req, &path, &body, &csrf).await;
    }
    if method != Method::Get {
        return Ok(html(
            405,
            &view::message_page("Refused", "only GET and POST", None),
        )?);
    }
    let Some(csrf) = csrf else {
        return Ok(match path.as_str() {
            "/" => html(200, &view::signin_page(None))?,
            _ => redirect("/", None)?,
        });
    };
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] | ["", "signin" | "signout"] => Ok(redirect("/dashboard", None)?),
        ["", "dashboard"] => {
            let status = url
                .query_pairs()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v.into_owned());
            incidents(env, status.as_deref(), &csrf, now_ms).await
        }
        ["", "dashboard", "runs"] => {
            let runs = super::api(env, "/api/runs").await?.unwrap_or_default();
            let budget = super::api(env, "/api/budget").await?.unwrap_or_default();
            Ok(html(200, &view::runs_page(as_rows(&runs), &budget, &csrf))?)
        }
        ["", "dashboard", "incidents", id] => match id.parse::<i64>() {
            Ok(id) => incident(env, req, id, &csrf, now_ms).await,
            Err(_) => not_found(&csrf),
        },
        _ => not_found(&csrf),
    }
}

fn not_found(csrf: &str) -> Result<Response, GlueError> {
    Ok(html(
        404,
        &view::message_page("Not found", "no such page or incident", Some(csrf)),
    )?)
}

fn as_rows(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

#[derive(Deserialize)]
struct HourRow {
    fingerprint: String,
    bucket: i64,
    n: i64,
}

/// `GET /dashboard`: the incidents of `GET /api/incidents`, each with its chart; today's budget.
async fn incidents(
    env: &Env,
    status: Option<&str>,
    csrf: &str,
    now_ms: i64,
) -> Result<Response, GlueError> {
    let list = super::api(env, "/api/incidents").await?.unwrap_or_default();
    let budget = super::api(env, "/api/budget").await?.unwrap_or_default();
    let since = now_ms - (view::CHART_HOURS as i64) * 3_600_000;
    let db = env.d1(DB_BINDING)?;
    let hours: Vec<HourRow> =
        workers::query(&db, &sql_with(SELECT_HOURLY, vec![since.into()])).await?;
    let incidents = as_rows(&list);
    let hourly: Vec<Vec<i64>> = incidents
        .iter()
        .map(|i| {
            let rows: Vec<(i64, i64)> = hours
                .iter()
                .filter(|h| i["fingerprint"] == h.fingerprint.as_str())
                .map(|h| (h.bucket, h.n))
                .collect();
            view::hourly_counts(&rows, now_ms)
        })
        .collect();
    Ok(html(
        200,
        &view::incidents_page(incidents, &hourly, &budget, status, csrf),
    )?)
}

#[derive(Deserialize)]
struct BucketRow {
    bucket: i64,
    release: String,
    n: i64,
}

#[derive(Deserialize)]
struct LinkRow {
    kind: String,
    id: i64,
    url: Option<String>,
}

/// The rows of `all` whose `incident_id` is `id`, each with the `url_key` link of `links`.
fn of_incident(all: &Value, id: i64, links: &[LinkRow], kind: &str, url_key: &str) -> Vec<Value> {
    as_rows(all)
        .iter()
        .filter(|r| r["incident_id"] == id)
        .map(|r| {
            let mut r = r.clone();
            let url = links
                .iter()
                .find(|l| l.kind == kind && r["id"] == l.id)
                .and_then(|l| l.url.clone());
            r[url_key] = json!(url);
            r
        })
        .collect()
}

/// `GET /dashboard/incidents/{id}`: what `selfheal show` prints, the ticket rendered.
async fn incident(
    env: &Env,
    req: &Request,
    id: i64,
    csrf: &str,
    now_ms: i64,
) -> Result<Response, GlueError> {
    let list = super::api(env, "/api/incidents").await?.unwrap_or_default();
    let Some(incident) = as_rows(&list).iter().find(|i| i["id"] == id).cloned() else {
        return not_found(csrf);
    };
    let decisions = match super::gate_api(
        env,
        &format!("/api/incidents/{id}/decisions"),
        Method::Get,
        &[],
    )
    .await?
    {
        Some(mut r) if r.status_code() == 200 => r.json::<Value>().await?,
        _ => Value::Null,
    };
    // `req` is this GET: the operator API's history endpoint answers it as its own.
    let history =
        match super::operator::api(env, &format!("/api/incidents/{id}/history"), req, &[]).await? {
            Some(mut r) if r.status_code() == 200 => r.json::<Value>().await?,
            _ => Value::Null,
        };
    let tickets = super::api(env, "/api/tickets").await?.unwrap_or_default();
    let runs = super::api(env, "/api/runs").await?.unwrap_or_default();
    let fingerprint = incident["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let db = env.d1(DB_BINDING)?;
    let results = workers::batch(
        &db,
        &[
            sql_with(SELECT_LINKS, vec![id.into()]),
            sql_with(SELECT_INCIDENT_BUCKETS, vec![fingerprint.as_str().into()]),
            sql_with(
                SELECT_SAMPLES,
                vec![json!([fingerprint]).to_string().into(), SAMPLES.into()],
            ),
        ],
    )
    .await?;
    let get = |i: usize| {
        results
            .get(i)
            .ok_or_else(|| GlueError::Decode("missing batch result".into()))
    };
    let links: Vec<LinkRow> = workers::rows(get(0)?)?;
    let buckets: Vec<BucketRow> = workers::rows(get(1)?)?;
    let samples: Vec<Value> = workers::rows(get(2)?)?;
    let tickets = of_incident(&tickets, id, &links, "ticket", "external_url");
    let runs = of_incident(&runs, id, &links, "run", "pr_url");
    let rows: Vec<(i64, String, i64)> = buckets
        .into_iter()
        .map(|b| (b.bucket, b.release, b.n))
        .collect();
    let hourly: Vec<(i64, i64)> = rows.iter().map(|(b, _, n)| (*b, *n)).collect();
    let page = IncidentPage {
        incident: &incident,
        decisions: as_rows(&decisions["decisions"]),
        history: as_rows(&history["history"]),
        tickets: &tickets,
        runs: &runs,
        samples: &samples,
        daily: &view::daily_counts(&rows),
        hourly: &view::hourly_counts(&hourly, now_ms),
    };
    Ok(html(200, &view::incident_page(&page, csrf))?)
}

/// `POST /dashboard/incidents/{id}/{action}` (CSRF already checked): the API's own handler, then
/// `303` back to the incident (its answer's error on a page otherwise, with the API's status).
async fn action(
    env: &Env,
    req: &Request,
    path: &str,
    body: &[u8],
    csrf: &str,
) -> Result<Response, GlueError> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let ["", "dashboard", "incidents", id, action] = parts.as_slice() else {
        return not_found(csrf);
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found(csrf);
    };
    let answer = match *action {
        "label" => {
            let label = view::form_field(body, "label").unwrap_or_default();
            let db = env.d1(DB_BINDING)?;
            Some(super::label(&db, id, json!({ "label": label }).to_string().as_bytes()).await?)
        }
        a if view::ACTIONS.contains(&a) => {
            // `req` is this POST: the operator API handles it as `POST /api/incidents/{id}/{a}`.
            let until_escalating =
                view::form_field(body, "until_escalating").as_deref() == Some("1");
            let api_body = json!({ "until_escalating": until_escalating }).to_string();
            super::operator::api(
                env,
                &format!("/api/incidents/{id}/{a}"),
                req,
                api_body.as_bytes(),
            )
            .await?
        }
        _ => None,
    };
    match answer {
        Some(r) if r.status_code() == 200 => {
            console_log!("selfheal dashboard: incident {id} {action} by the operator");
            Ok(redirect(&format!("/dashboard/incidents/{id}"), None)?)
        }
        Some(r) => {
            let status = r.status_code();
            let msg = api_error(r).await;
            Ok(html(
                status,
                &view::message_page("Refused", &msg, Some(csrf)),
            )?)
        }
        None => not_found(csrf),
    }
}
