//! The request-head path: arbitrary bytes sent on a client connection to a running proxy (its
//! HTTP/1 parsing, routing, own pages, CONNECT, decisions). Every destination is refused by
//! destination filtering, so nothing leaves the machine. Never a panic; the proxy answers
//! or closes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Running {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn proxy() -> &'static Running {
    static R: OnceLock<Running> = OnceLock::new();
    R.get_or_init(|| {
        // libFuzzer's main is C's: a write to a socket the proxy closed would end the fuzzer
        // with SIGPIPE instead of returning EPIPE, as it does in a Rust program.
        // SAFETY: setting a signal's disposition to ignore has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("nostalk-fuzz-{}", std::process::id()));
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhandshake_timeout = \"1s\"\n[ca]\ndir = {:?}\n[upstream]\ndeny = [\"0.0.0.0/0\", \"::/0\"]\nresolve = [\"news.test:80:127.0.0.1:9\", \"news.test:443:127.0.0.1:9\"]\n",
            dir.join("ca").display().to_string()
        );
        let cfg = nostalk::Config::parse(&toml).expect("fuzz config");
        let server = rt.block_on(nostalk::Server::bind(cfg)).expect("bind");
        let addr = server.local_addr();
        rt.spawn(server.run(std::future::pending()));
        Running { rt, addr }
    })
}

fuzz_target!(|data: &[u8]| {
    let r = proxy();
    r.rt.block_on(async {
        let Ok(mut s) = tokio::net::TcpStream::connect(r.addr).await else { return };
        let _ = s.write_all(data).await;
        let _ = s.shutdown().await;
        let mut buf = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
});
