//! The controls of the receipt page, which change the person's choices or the lists: `POST
//! /shopping` (the per-site shopping switch), `POST /trust`, `POST /ads/down` and
//! `/ads/restore` (kept in the choices store, whose new snapshot the next decision reads),
//! `POST /learned/forget` (a learned tracker is not one: the operators') and `POST
//! /lists/refresh` (download the subscribed lists now).
//!
//! A control is for `[admin] allow` clients, who change the household's choices; on a household
//! proxy (`[receipt] per_person`, no `[auth]`) every other device may use the shopping, trust and
//! down-vote controls for itself alone (its own choices, kept under its address). Refreshing
//! the lists stays the operators'. A control must come from the proxy's own page: it
//! carries the token the page put in its form and is sent same-origin (`Sec-Fetch-Site`,
//! `Origin`), so a page on another site cannot flip a switch through the proxy, even with a form
//! or a `text/plain` fetch a browser sends without preflight. And it must come from that page
//! at the top of its tab (`Sec-Fetch-Dest: document`): the pages refuse to be framed, and a form
//! sent from inside a frame is refused too, so no site can put a control under a person's click.

use crate::base::Body;
use crate::ops::choices::{Choices, Scope, ShoppingRefused};
use crate::policy::site;
use crate::proxy::service::ClientBody;
use crate::proxy::state::Shared;
use crate::respond::failure::Failure;
use crate::respond::pages::{back_to, text};
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Whether `path` is one of the controls.
pub fn is_control(path: &str) -> bool {
    matches!(path, "/shopping" | "/lists/refresh" | "/trust" | "/ads/down" | "/ads/restore" | "/learned/forget")
}

/// A POST to one of the controls ([`is_control`]).
pub async fn serve(
    shared: &Shared,
    req: Request<ClientBody>,
    admin: bool,
    ip: std::net::IpAddr,
    own: Option<&str>,
) -> Result<Response<Body>, Failure> {
    let path = req.uri().path().to_string();
    let token = shared.access.admin_address(ip);
    let scope = match (admin, own) {
        (true, _) => Scope::Household,
        (false, Some(d)) if path != "/lists/refresh" && path != "/learned/forget" => Scope::Device(d),
        (false, _) if path == "/lists/refresh" => {
            return Err(Failure::ForOperators { what: "Refreshing the lists", ip, token })
        }
        (false, _) if path == "/learned/forget" => {
            return Err(Failure::ForOperators { what: "Forgetting a learned tracker", ip, token })
        }
        (false, _) => return Err(Failure::ForOperators { what: "This control", ip, token }),
    };
    let form = control_form(&shared.page_token, req).await?;
    let choices = &shared.choices;
    match path.as_str() {
        "/shopping" => shopping(choices, scope, &form).await,
        "/trust" => trust(choices, scope, &form).await,
        "/ads/down" | "/ads/restore" => ad_vote(choices, scope, &form, path == "/ads/down").await,
        "/learned/forget" => not_a_tracker(choices, &form).await,
        _ => Ok(refresh_lists(shared).await),
    }
}

/// A control must come from the proxy's own page at the top of its tab: a browser says where a
/// request came from (`Sec-Fetch-Site`, and `Origin` on a POST) and what it loads
/// (`Sec-Fetch-Dest`), and anything but a same-origin top-level form, or a request the person
/// typed or sent from a shell (no such headers, or `none`), is refused.
fn same_origin(headers: &http::HeaderMap) -> Result<(), &'static str> {
    if let Some(dest) = headers.get("sec-fetch-dest") {
        if dest != "document" {
            return Err("The proxy's controls work only on its own page, open in a tab of its own.");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !(site == "same-origin" || site == "none") {
            return Err("A page on another site cannot use the proxy's controls.");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Err("A page on another origin cannot use the proxy's controls.");
        }
    }
    Ok(())
}

/// The form of a control request, once it is known to come from the proxy's own page: sent
/// same-origin, read within 4 KB, carrying the page's token.
async fn control_form(token: &str, req: Request<ClientBody>) -> Result<bytes::Bytes, Failure> {
    same_origin(req.headers()).map_err(Failure::ControlRefused)?;
    let Ok(collected) = http_body_util::Limited::new(req.into_body(), 4096).collect().await else {
        return Err(Failure::BadRequest("The form could not be read.".into()));
    };
    let form = collected.to_bytes();
    let token_ok = url::form_urlencoded::parse(&form).any(|(k, v)| k == "token" && v.as_bytes() == token.as_bytes());
    if !token_ok {
        return Err(Failure::ControlRefused(
            "This control works only from the proxy's own page (its token is missing or stale).",
        ));
    }
    Ok(form)
}

/// Download every subscribed list now, swap in the policy when one changed, and
/// say what each list got.
async fn refresh_lists(shared: &Shared) -> Response<Body> {
    use crate::policy::subscribe::{self, Outcome};
    let max_bytes = shared.policy_config.load().max_list_bytes();
    let (mut report, mut changed) = (String::new(), false);
    for (i, summary) in shared.lists.summaries().into_iter().enumerate() {
        let outcome = shared.lists.refresh(&*shared.upstream, max_bytes, i).await;
        changed |= outcome == Outcome::Updated;
        let said = match outcome {
            Outcome::Updated => "updated".to_string(),
            Outcome::NotModified => "up to date".to_string(),
            Outcome::Failed(why) => format!("failed ({why}); the copy in force stays"),
        };
        let _ = writeln!(report, "{}: {said}", summary.name);
    }
    if shared.lists.is_empty() {
        report.push_str("no subscribed lists\n");
    }
    if changed {
        let (config, lists, policy) = (shared.policy_config.load_full(), shared.lists.clone(), shared.policy.clone());
        // The engines are built off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || subscribe::rebuild(&config, &lists, &policy)).await;
    }
    text(StatusCode::OK, "text/plain; charset=utf-8", report)
}

/// A change to the choices store, made on the blocking pool (SQLite writes to disk).
async fn keep<T: Send + 'static>(
    choices: &Arc<Choices>,
    scope: Scope<'_>,
    change: impl FnOnce(&Choices, Scope<'_>) -> Result<T, String> + Send + 'static,
) -> Result<T, Failure> {
    let choices = choices.clone();
    let device = match scope {
        Scope::Household => None,
        Scope::Device(d) => Some(d.to_string()),
    };
    let done = tokio::task::spawn_blocking(move || {
        let scope = device.as_deref().map_or(Scope::Household, Scope::Device);
        change(&choices, scope)
    })
    .await;
    done.unwrap_or_else(|e| Err(e.to_string())).map_err(Failure::NotKept)
}

/// A form field's value, trimmed and lowercase; None when absent or empty.
fn form_value(form: &[u8], key: &str) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// The site a control names, as its registrable domain.
fn site_field(form: &[u8]) -> Result<String, Failure> {
    let name = form_value(form, "site").ok_or(Failure::BadRequest("Say which site: site=example.com".into()))?;
    Ok(site::site_of(&name))
}

/// `site=example.com&minutes=30` (minutes=0 switches it off).
async fn shopping(choices: &Arc<Choices>, scope: Scope<'_>, form: &[u8]) -> Result<Response<Body>, Failure> {
    let s = site_field(form)?;
    let minutes: u64 = form_value(form, "minutes").and_then(|m| m.parse().ok()).unwrap_or(60);
    let duration = Duration::from_secs(minutes.min(7 * 24 * 60) * 60);
    let set = keep(choices, scope, {
        let s = s.clone();
        move |c, scope| Ok(c.set_shopping_in(scope, &s, duration))
    });
    match set.await? {
        Err(ShoppingRefused::Full) => {
            return Err(Failure::TooMany("Too many sites are in shopping mode; switch one off first."))
        }
        Err(ShoppingRefused::NotKept(e)) => {
            tracing::warn!(error = %e, "the shopping switch is on, but could not be kept for the next start")
        }
        Ok(()) => {}
    }
    tracing::info!(site = %s, minutes, household = scope == Scope::Household, "shopping switch set");
    Ok(back_to(&s, format!("{s}: shopping for {minutes} minutes{}\n", for_whom(scope))))
}

/// `site=example.com&trust=1` (0 stops trusting it).
async fn trust(choices: &Arc<Choices>, scope: Scope<'_>, form: &[u8]) -> Result<Response<Body>, Failure> {
    let s = site_field(form)?;
    let on = form_value(form, "trust").as_deref() != Some("0");
    keep(choices, scope, {
        let s = s.clone();
        move |c, scope| c.set_trusted_in(scope, &s, on)
    })
    .await?;
    tracing::info!(site = %s, trusted = on, household = scope == Scope::Household, "trusted site set from the page");
    let whom = for_whom(scope);
    let said = if on { format!("{s}: trusted{whom}\n") } else { format!("{s}: no longer trusted{whom}\n") };
    Ok(back_to(&s, said))
}

/// `source=ads.example&site=news.example`: one more down-vote, or (restore) none.
async fn ad_vote(choices: &Arc<Choices>, scope: Scope<'_>, form: &[u8], down: bool) -> Result<Response<Body>, Failure> {
    let source = form_value(form, "source")
        .map(|h| site::site_of(&h))
        .ok_or(Failure::BadRequest("Say which ad source: source=ads.example".into()))?;
    let page = form_value(form, "site").unwrap_or_default();
    keep(choices, scope, {
        let source = source.clone();
        move |c, scope| if down { c.downvote_in(scope, &source).map(|_| ()) } else { c.restore_in(scope, &source) }
    })
    .await?;
    tracing::info!(source = %source, down, household = scope == Scope::Household, "ad source vote");
    Ok(back_to(&page, format!("{source}: {}{}\n", if down { "down-voted" } else { "restored" }, for_whom(scope))))
}

/// `source=tracker.example&site=news.example`: the household says a learned tracker is not one;
/// it is forgotten and never learned again.
async fn not_a_tracker(choices: &Arc<Choices>, form: &[u8]) -> Result<Response<Body>, Failure> {
    let source = form_value(form, "source")
        .map(|h| site::site_of(&h))
        .ok_or(Failure::BadRequest("Say which tracker: source=tracker.example".into()))?;
    let page = form_value(form, "site").unwrap_or_default();
    keep(choices, Scope::Household, {
        let source = source.clone();
        move |c, _| c.not_a_tracker(&source)
    })
    .await?;
    tracing::info!(source = %source, "a learned tracker forgotten: not a tracker");
    Ok(back_to(&page, format!("{source}: not a tracker; it will not be learned again\n")))
}

/// Whom a change is for, as the answer says it.
fn for_whom(scope: Scope<'_>) -> &'static str {
    match scope {
        Scope::Household => "",
        Scope::Device(_) => " (for this device)",
    }
}
