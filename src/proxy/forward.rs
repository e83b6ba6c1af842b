//! Forwarding one request: decide once, answer a block here, otherwise clean the request, send
//! it upstream through the pooled client, clean the response, and hand HTML to the streaming
//! rewriter. Bodies stream both ways; nothing is collected whole. WebSocket upgrades are
//! forwarded and then spliced.

use crate::hygiene::{self, Context};
use crate::policy::{party, site, Explanation, RequestInfo, RequestType, Verdict};
use crate::proxy::limits::{self, Tracked};
use crate::proxy::{headers, upstream};
use crate::respond::{self, blocked};
use crate::{empty, rewrite, Body, Shared};
use http::{header, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{debug, info};

pub async fn forward(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    uri: Uri,
    peer: SocketAddr,
    id: u64,
) -> Response<Body> {
    let policy = shared.policy.load_full();
    let Some(host) = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()) else {
        return respond::error_page(StatusCode::BAD_REQUEST, "Bad Request", "the request names no host");
    };
    let span = tracing::Span::current();
    span.record("host", host.as_str());
    let url = uri.to_string();
    let request_type = RequestType::classify(req.headers(), uri.path());
    let page_host = party::page_host(req.headers(), &host, request_type);
    let info = RequestInfo {
        url: &url,
        host: &host,
        page_host: Some(&page_host),
        request_type,
        method: req.method().as_str(),
    };
    let decision = policy.decide(&info);
    span.record("verdict", decision.verdict.as_str());
    // A shared gateway names no client next to what was browsed.
    let client = shared.config.receipt.per_person.then_some(peer);
    log_decision(&info, &decision, client);
    let page_site = site::site_of(&page_host);
    shared.receipt.record(Some(&page_site), &host, &decision, request_type);

    if decision.verdict == Verdict::Block {
        shared.metrics.inc(&shared.metrics.blocked);
        return blocked::respond(request_type, &url, &decision);
    }
    match decision.verdict {
        Verdict::Ad => shared.metrics.inc(&shared.metrics.ads),
        _ => shared.metrics.inc(&shared.metrics.allowed),
    }

    let own_site = site::site_of(&host);
    let trusted = decision.is_trusted();
    let ctx = Context {
        decision: &decision,
        policy: &policy,
        request_type,
        host: &host,
        page_host: &page_host,
        third_party: page_site != own_site,
        shopping: shared.shopping.is_shopping(&page_site),
        trusted,
    };

    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let clean_uri = hygiene::request::clean(&mut parts.headers, &uri, &ctx);
    if let Some(clean) = &clean_uri {
        // A navigation to a decorated URL is sent to the clean one, so the address bar and
        // the history hold no identifier.
        if request_type == RequestType::Document && parts.method == http::Method::GET {
            debug!(to = %clean, "redirecting a navigation to its clean URL");
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            if let Ok(v) = header::HeaderValue::from_str(&clean.to_string()) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            return resp;
        }
    }
    // Documents and frames, and requests that say nothing of what they are for (curl, old
    // clients): their HTML is rewritten. A fetch or script that asks for HTML is left alone.
    let client_wants_html = request_type.is_document() || request_type == RequestType::Other;
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::EXPECT);
    let rewrite_on = shared.config.rewrite.enabled && client_wants_html;
    let client_gzip = rewrite_on && rewrite::limit_accept_encoding(&mut parts.headers);
    parts.uri = clean_uri.unwrap_or(uri);
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    let body: Body = if upgrade { empty() } else { body.map_err(Into::into).boxed_unsync() };
    let up_req = Request::from_parts(parts, body);

    let timeout = shared.upstream.response_timeout;
    let mut resp = match tokio::time::timeout(timeout, shared.upstream.request(up_req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let (status, reason) = upstream::classify_error(&*e);
            info!(host = %host, error = %reason, status = status.as_u16(), "upstream failed");
            shared.metrics.inc(&shared.metrics.upstream_errors);
            return respond::error_page(
                status,
                status.canonical_reason().unwrap_or("Bad Gateway"),
                &format!("{host}: {reason}"),
            );
        }
        Err(_) => {
            info!(host = %host, after = ?timeout, "upstream timed out");
            shared.metrics.inc(&shared.metrics.upstream_errors);
            return respond::error_page(
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway Timeout",
                &format!("{host} did not answer within {} s", timeout.as_secs()),
            );
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            // A WebSocket left silent (no frames, not even pings) is closed like a tunnel.
            let idle = shared.timeouts.tunnel_idle;
            shared.tasks.spawn(async move {
                match (client_upgrade.await, server_upgrade.await) {
                    (Ok(c), Ok(s)) => {
                        let (mut c, mut s) = (TokioIo::new(c), Tracked::untabled(TokioIo::new(s)));
                        if let Err(e) = limits::tunnel(&mut c, &mut s, idle).await {
                            debug!(error = %e, "websocket ended");
                        }
                    }
                    (c, s) => debug!(client = c.is_ok(), server = s.is_ok(), "upgrade did not complete"),
                }
            });
        }
        let (mut parts, _) = resp.into_parts();
        hygiene::response::clean(&mut parts.headers, &ctx);
        return Response::from_parts(parts, empty());
    }

    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    hygiene::response::clean(&mut parts.headers, &ctx);
    let body: Body = body.map_err(Into::into).boxed_unsync();
    if rewrite_on && rewrite::is_rewritable(&method, parts.status, &parts.headers) {
        let page = rewrite::Page {
            policy: policy.clone(),
            page_host: host.clone(),
            page_site,
            shared: shared.clone(),
            client_loopback: peer.ip().is_loopback(),
            client_gzip,
            request_id: id,
        };
        return rewrite::rewrite_response(parts, body, page).await;
    }
    Response::from_parts(parts, body)
}

/// The decision's log line. At INFO, what nostalk did (a block, an ad de-identified): the
/// decision, rule, list, site and host, never the path, query or credentials, which are a
/// person's browsing in detail; at DEBUG, every request with its full URL. Its fields (site by
/// the PSL, copies of rule and list) are only worked out when someone reads them.
fn log_decision(info: &RequestInfo<'_>, decision: &crate::policy::Decision, client: Option<SocketAddr>) {
    let level_on = if decision.verdict == Verdict::Allow {
        tracing::enabled!(tracing::Level::DEBUG)
    } else {
        tracing::enabled!(tracing::Level::INFO)
    };
    if !level_on {
        return;
    }
    let explanation = Explanation::new(info, decision);
    let rule = explanation.rule.as_deref().unwrap_or("");
    let list = explanation.list.as_deref().unwrap_or("");
    if decision.verdict == Verdict::Allow {
        debug!(url = %info.url, decision = "allow", rule, list, site = %explanation.site, party = explanation.party, r#type = info.request_type.as_str(), "decision");
    } else {
        info!(
            client = client.map(tracing::field::display),
            host = info.host,
            decision = decision.verdict.as_str(),
            rule,
            list,
            site = %explanation.site,
            party = explanation.party,
            r#type = info.request_type.as_str(),
            "decision"
        );
        debug!(url = %info.url, "decided URL");
    }
}
