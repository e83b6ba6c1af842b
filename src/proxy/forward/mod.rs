//! Forwarding one request, as a short sequence of named phases, each in a file named for what
//! it does and each taking the request's [`Exchange`] and the one handle it needs:
//!
//! `decide` → `uncloak` → `answer_block` | (`learn`) `clean_request` → `send` → (`learn`)
//! `clean_response` → (`websocket` | `rewrite_page`) → `record`.
//!
//! The Exchange is made once by `decide`; the later phases read it and write into it what they
//! did; `record` writes the receipt, the metrics and the decision log from the finished
//! Exchange when its response body ends. Bodies stream both ways; nothing is collected whole.

mod clean_request;
mod clean_response;
mod decide;
pub mod learn;
mod record;
mod rewrite_page;
mod send;
mod uncloak;
mod websocket;

pub use record::record;

use crate::base::{empty, Body};
use crate::exchange::Exchange;
use crate::ops::auth::Who;
use crate::policy::overlay::{Click, Overlay};
use crate::policy::passes::{self, Passes};
use crate::policy::{Policy, Verdict};
use crate::proxy::service::ClientBody;
use crate::proxy::state::Shared;
use crate::respond::blocked;
use crate::rewrite::{self, Removals};
use clean_request::Cleaned;
use http::{Request, Response, Uri};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub async fn forward(
    shared: &Arc<Shared>,
    req: Request<ClientBody>,
    uri: Uri,
    peer: SocketAddr,
    who: Option<Arc<Who>>,
) -> Response<Body> {
    let policy = shared.policy.load_full();
    // A shared gateway names no client next to what was browsed.
    let client = shared.config.receipt.per_person.then_some(peer);
    let (uri, redeemed) = decide::take_pass(uri, &shared.passes);
    if redeemed {
        // A click in a widget's placeholder frame: that client may load the script once.
        if let Some(script) = passes::widget_script(&uri.to_string()) {
            shared.passes.grant(peer.ip(), &script);
            return blocked::widget_clicked();
        }
    }
    let overlay = shared.overlay(who.as_deref(), peer.ip());
    let click = Click { passes: &shared.passes, redeemed, client: peer.ip() };
    let mut ex =
        match decide::decide(&req, &uri, client, &policy, &overlay, Some(click), Some((&shared.frames, peer.ip()))) {
            Ok(ex) => ex,
            Err(failure) => return failure.answer(),
        };
    if shared.config.upstream.uncloak {
        uncloak::uncloak(&mut ex, &policy, &overlay, &shared.dialer).await;
    }
    // The signed-in user's own receipt, which their receipt pages show.
    let mine = shared.own_receipt(who.as_deref(), peer.ip());
    if shared.auth.as_ref().is_some_and(|a| a.log_users) {
        ex.user = who;
        ex.group = overlay.group.as_ref().map(|g| g.name.clone());
    }
    let (resp, removals) = exchange(shared, &policy, overlay, req, uri, &mut ex, peer).await;
    record::finish(resp, ex, record::Books::of(shared, mine.as_ref()), removals)
}

/// The phases between the decision and the record.
async fn exchange(
    shared: &Shared,
    policy: &Arc<Policy>,
    overlay: Overlay,
    req: Request<ClientBody>,
    uri: Uri,
    ex: &mut Exchange,
    peer: SocketAddr,
) -> (Response<Body>, Option<Arc<Mutex<Removals>>>) {
    if ex.decision.verdict == Verdict::Block {
        return (answer_block(ex, policy, &shared.passes), None);
    }
    shared.learner.request(ex, &uri, req.headers());
    let out = match clean_request::clean_request(req, uri, ex, policy, shared.config.rewrite.enabled) {
        Cleaned::Send(out) => out,
        Cleaned::Answer(redirect) => return (redirect, None),
    };
    let mut resp = match send::send(&shared.upstream, out.request, ex).await {
        Ok(resp) => resp,
        Err(failure) => return (failure.answer(), None),
    };
    let server_upgrade = websocket::upgrade_of(&mut resp);
    let (mut parts, body) = resp.into_parts();
    shared.learner.response(ex, &parts.headers);
    clean_response::clean_response(&mut parts, ex, policy);
    if let Some(server_upgrade) = server_upgrade {
        let idle = shared.timeouts.tunnel_idle;
        websocket::splice(out.client_upgrade, server_upgrade, &shared.tasks, idle, shared.metrics.clone());
        return (Response::from_parts(parts, empty()), None);
    }
    // A trusted site's page (out.rewrite is None for it) reaches the browser as its origin sent it.
    match out.rewrite {
        Some(client) if rewrite_page::wanted(&out.method, &parts) => {
            let gzip = rewrite_page::gzip_out(client, shared.config.rewrite.encoding, peer.ip().is_loopback());
            let judge = rewrite::Judge { policy: policy.clone(), overlay };
            // Boxed: only pages take this branch, and its future is large.
            let (resp, removals) = Box::pin(rewrite_page::rewrite_page(parts, body, ex, judge, gzip)).await;
            (resp, Some(removals))
        }
        _ => (Response::from_parts(parts, body), None),
    }
}

/// A blocked request's answer, shaped for its type so the page does not break: a redirector
/// sends the browser on to its destination, a blocked navigation gets the page with "Open
/// anyway", a social widget its placeholder.
fn answer_block(ex: &Exchange, policy: &Policy, passes: &Passes) -> Response<Body> {
    blocked::respond(ex, passes, policy.click_to_load(&ex.decision))
}
