//! Throughput of the HTML rewriter on the real pages in ../shared/data/pages that are
//! real-sized (100 KB to 1 MB): nostalk's rewriter with all handlers and the embedded lists,
//! against lol_html with no handlers, lol_html with nostalk's selectors and no-op handlers (the
//! floor the selector set sets), and a plain copy, in the same run. The pages are
//! fed in 16 KB chunks, as the proxy feeds them.
//!
//! Run: `cargo bench --bench rewrite` (skips with a message when ../shared is absent).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::HeaderMap;
use nostalk::policy::Policy;
use std::hint::black_box;
use std::sync::Arc;

const CHUNK: usize = 16 * 1024;

// The allocator the nostalk binary ships with (src/main.rs), for baselines and nostalk alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pages() -> Option<Vec<(String, Vec<u8>)>> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pages");
    if !dir.is_dir() {
        eprintln!("SKIPPED: ../shared/data/pages is not beside the repository");
        return None;
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.extension().is_some_and(|x| x == "html") {
            let b = std::fs::read(&p).ok()?;
            if (100 * 1024..=1024 * 1024).contains(&b.len()) {
                v.push((p.file_name()?.to_string_lossy().into_owned(), b));
            }
        }
    }
    v.sort();
    Some(v)
}

fn bench(c: &mut Criterion) {
    let Some(pages) = pages() else { return };
    let total: usize = pages.iter().map(|p| p.1.len()).sum();
    eprintln!("{} real pages of 100 KB to 1 MB, {} KB in all", pages.len(), total / 1024);
    let policy = Arc::new(Policy::build(&nostalk::Config::default(), &[]).unwrap());

    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(20);
    g.bench_function("plain copy (baseline)", |b| {
        b.iter(|| {
            for (_, page) in &pages {
                let mut out = Vec::with_capacity(CHUNK);
                for chunk in page.chunks(CHUNK) {
                    out.extend_from_slice(chunk);
                }
                black_box(out);
            }
        })
    });
    g.bench_function("lol_html, no handlers (baseline)", |b| {
        b.iter(|| {
            for (_, page) in &pages {
                black_box(lol_html_pass(page, lol_html::Settings::new()));
            }
        })
    });
    // What any element handler costs: lol_html must then parse every tag to match selectors.
    g.bench_function("lol_html, one no-op img[src] handler (reference)", |b| {
        b.iter(|| {
            for (_, page) in &pages {
                let settings = lol_html::Settings::new()
                    .append_element_content_handler(lol_html::element!("img[src]", |_el| Ok(())));
                black_box(lol_html_pass(page, settings));
            }
        })
    });
    // The floor under nostalk's rewriter: lol_html with the same selectors, handlers doing nothing.
    g.bench_function("lol_html, nostalk's selectors with no-op handlers (floor)", |b| {
        b.iter(|| {
            for (_, page) in &pages {
                black_box(lol_html_pass(page, nostalk::rewrite::handlers::noop_settings()));
            }
        })
    });
    g.bench_function("nostalk rewriter, all handlers", |b| {
        b.iter(|| {
            for (_, page) in &pages {
                black_box(nostalk_pass(page, &policy));
            }
        })
    });
    g.finish();

    // The cost of a page's set-up: a 1 KB page (the load harness's), where setting up the
    // rewriter, not parsing, is most of the work.
    let small = small_page();
    let mut g = c.benchmark_group("rewrite 1 KB page");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lol_html, no handlers (baseline)", |b| {
        b.iter(|| black_box(lol_html_pass(&small, lol_html::Settings::new())))
    });
    g.bench_function("nostalk rewriter, all handlers", |b| b.iter(|| black_box(nostalk_pass(&small, &policy))));
    g.finish();
}

/// One page through lol_html with `settings`, in CHUNK pieces; the output's length.
fn lol_html_pass<H: lol_html::HandlerTypes>(page: &[u8], settings: lol_html::Settings<'_, '_, H>) -> usize {
    let mut n = 0usize;
    let mut rw = lol_html::HtmlRewriter::new(settings, |c: &[u8]| n += black_box(c).len());
    for chunk in page.chunks(CHUNK) {
        let _ = rw.write(chunk);
    }
    let _ = rw.end();
    n
}

/// One page through nostalk's rewriter, output handed on chunk by chunk as the proxy does;
/// the output's length.
fn nostalk_pass(page: &[u8], policy: &Arc<Policy>) -> usize {
    let mut n = 0usize;
    let mut headers = HeaderMap::new();
    let found =
        nostalk::rewrite::rewrite_with(page, policy.clone(), "news.example", &mut headers, |c| n += black_box(c).len());
    black_box(found);
    n
}

/// The 1 KB HTML page that benches/load serves.
fn small_page() -> Vec<u8> {
    let mut p = b"<!doctype html><html><head><title>Small</title></head><body><h1>Hello</h1><p>".to_vec();
    p.extend(std::iter::repeat_n(b'x', 850));
    p.extend_from_slice(b"</p></body></html>\n");
    p.truncate(1024);
    p
}

criterion_group!(benches, bench);
criterion_main!(benches);
