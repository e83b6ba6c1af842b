//! A no-op MITM proxy on hudsucker: no handlers, no decisions. The load harness in
//! benches/load/ measures nostalk against it. Usage:
//! `hudsucker-noop PORT CA_CERT_PEM CA_KEY_PEM UPSTREAM_CA_PEM`

use hudsucker::{certificate_authority::RcgenAuthority, rcgen, rustls, Proxy};
use std::net::SocketAddr;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: hudsucker-noop PORT CA_CERT_PEM CA_KEY_PEM UPSTREAM_CA_PEM");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("a port number");
    let ca_cert = std::fs::read_to_string(&args[2]).expect("CA certificate");
    let ca_key = std::fs::read_to_string(&args[3]).expect("CA key");
    let key = rcgen::KeyPair::from_pem(&ca_key).expect("CA key parses");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, key).expect("CA certificate parses");
    let ca = RcgenAuthority::new(issuer, 1000, rustls::crypto::ring::default_provider());

    // Upstream: the origin's CA, as nostalk is given it through extra_roots.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&args[4]).expect("upstream CA");
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("upstream CA parses")).expect("upstream CA is a root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();

    let proxy = Proxy::builder()
        .with_addr(SocketAddr::from(([127, 0, 0, 1], port)))
        .with_ca(ca)
        .with_http_connector(https)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .build()
        .expect("proxy builds");
    eprintln!("hudsucker-noop listening on 127.0.0.1:{port}");
    if let Err(e) = proxy.start().await {
        eprintln!("hudsucker-noop: {e}");
    }
}
