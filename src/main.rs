//! The command line: run, check, explain, ca, lists, shop. Each command parses its arguments
//! and calls the library; nothing else lives here.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use nostalk::config::{Config, ConfigError};
use nostalk::policy::{self, subscribe::Subscriptions, Policy};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "nostalk",
    version,
    about = "A web proxy that takes the surveillance out and lets ads through de-identified"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default config unless --config is given).
    Run {
        /// The TOML config file (see config/default.toml); the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen here instead of `[server] listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate a config file: each error with its key and line; exit 2 when invalid.
    Check {
        /// The TOML config file to check.
        #[arg(long)]
        config: PathBuf,
    },
    /// The decision for one request (or, with URL `-`, one per line from stdin).
    Explain {
        /// The request's URL, or `-` to read `URL [PAGE_URL [TYPE]]` lines from stdin.
        url: String,
        /// Decide with this config's lists and policy; the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The page the request is made from.
        #[arg(long)]
        page: Option<String>,
        /// The request type: document, sub_frame, script, image, stylesheet, xmlhttprequest, ping, media, font, websocket, other.
        #[arg(long = "type")]
        request_type: Option<String>,
        /// Print a JSON object (decision, rule, list, site, party, type) instead of text.
        #[arg(long)]
        json: bool,
        /// Decide for this signed-in user (`[auth]`): their group and their own choices.
        #[arg(long)]
        user: Option<String>,
        /// Decide for a client at this address: its network's group, and on a household
        /// proxy the device's own choices.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
    },
    /// The local certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Each list with its rule count, age and state.
    Lists {
        /// The config whose lists to show; the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ask the running proxy at --proxy to download its subscribed lists now, and say
        /// what each got.
        #[arg(long)]
        refresh: bool,
        /// The running proxy's address (with --refresh).
        #[arg(long, default_value = "127.0.0.1:8877")]
        proxy: String,
    },
    /// Switch a site to shopping mode on a running proxy (its tracking cookies and affiliate
    /// parameters get through) for a while; --minutes 0 switches it off.
    Shop {
        /// The site (its registrable domain, e.g. shop.example; a host name is reduced to it).
        site: String,
        /// For how long; 0 switches shopping off.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// The running proxy's address.
        #[arg(long, default_value = "127.0.0.1:8877")]
        proxy: String,
    },
    /// Ad sources you down-voted: list them, down-vote one, or restore one. A running proxy
    /// sees the change within seconds (the choices store, `[receipt] store`).
    Ads {
        #[command(subcommand)]
        command: Option<AdsCommand>,
        /// The config whose store to use; the default store when absent.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Learned trackers: third parties no list names that nostalk saw trying to identify the
    /// browser on several sites. List them with the sites, or forget one for good (it is not a
    /// tracker). A running proxy sees the change within seconds.
    Learned {
        #[command(subcommand)]
        command: Option<LearnedCommand>,
        /// The config whose store to use; the default store when absent.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Start nostalk with your session (a systemd user unit on Linux, a launchd agent on
    /// macOS), stop doing so, or say whether it does.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Add a user to the proxy's users file, or change their password (asked for twice on a
    /// terminal, else read as one line from stdin). A running proxy sees it within seconds.
    Passwd {
        /// The user name.
        user: String,
        /// The users file; `[auth] users` of --config when absent.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The config whose `[auth] users` file to change.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Write the unit for this binary and enable it (started now and at each login).
    Install {
        /// The config the service runs with; the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write the unit only, and print the commands that would enable it.
        #[arg(long)]
        no_enable: bool,
        /// Write a launchd agent (macOS) or a systemd user unit (Linux) whatever this system is.
        #[arg(long, value_parser = ["systemd", "launchd"])]
        manager: Option<String>,
    },
    /// Stop and disable the service, and remove its unit.
    Uninstall {
        #[arg(long, value_parser = ["systemd", "launchd"])]
        manager: Option<String>,
    },
    /// Whether the service is installed and running.
    Status {
        #[arg(long, value_parser = ["systemd", "launchd"])]
        manager: Option<String>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA (if there is none) and say where it is.
    Init {
        /// Where the CA lives; the user's data directory (~/.local/share/nostalk/ca) when absent.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the CA certificate (PEM) on stdout.
    Export {
        /// Where the CA lives; the user's data directory (~/.local/share/nostalk/ca) when absent.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p).with_context(|| format!("config {}", p.display())),
        None => Ok(Config::embedded()),
    }
}

/// Logs go to stderr through a writer thread that batches lines into few writes, so a busy
/// proxy's request threads never wait on the terminal or the journal; no line is dropped
/// (a full queue makes the logger wait). Colours only when stderr is a terminal. The guard
/// flushes what is queued when it is dropped, at exit.
fn init_logs(format: nostalk::config::LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "nostalk=info".into());
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("nostalk-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if format == nostalk::config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

// mimalloc: per-thread free lists make the many small allocations of a request (headers,
// frames, TLS records) cheaper than glibc's malloc under a multi-threaded runtime (intercepted
// HTTPS 1.16x -> 1.30x the no-op hudsucker proxy in benches/load; see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switches mimalloc's arena eager commit off. Eagerly committed arenas are not purged, which
/// left 30 MB more resident with 1,000 open connections than glibc did; off, memory is what it
/// was with glibc. Runs from `.init_array`, before Rust's runtime makes its first allocation
/// (and so before mimalloc makes its first arena): an option set in `main` would come too late
/// for that arena.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static ALLOCATOR_OPTIONS: extern "C" fn() = {
    /// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e` (libmimalloc-sys names no
    /// constant for it).
    const MI_OPTION_ARENA_EAGER_COMMIT: std::os::raw::c_int = 4;
    extern "C" fn set() {
        // SAFETY: setting an option is a store into mimalloc's option table; it has no
        // preconditions and may come before mimalloc is initialised.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    set
};

fn main() {
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nostalk: {}", error_text(&e));
            1
        }
    };
    std::process::exit(code);
}

/// An error with its causes, each said once: a cause whose words the message already holds
/// (an OS error a library quoted in its own message) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run { config, listen } => run(config.as_deref(), listen),
        Command::Check { config } => Ok(check(&config)),
        Command::Explain { url, config, page, request_type, json, user, client } => {
            let asker = Asker { user: user.as_deref(), client };
            explain(&url, config.as_deref(), page.as_deref(), request_type.as_deref(), json, asker)
        }
        Command::Ca { command } => ca(command),
        Command::Service { command } => service(command),
        Command::Lists { refresh: true, proxy, .. } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(refresh_lists(&proxy))?;
            Ok(0)
        }
        Command::Lists { config, .. } => lists(config.as_deref()),
        Command::Passwd { user, file, config } => passwd(&user, file, config.as_deref()),
        Command::Ads { command, config } => ads(command, config.as_deref()),
        Command::Learned { command, config } => learned(command, config.as_deref()),
        Command::Shop { site, minutes, proxy } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(shop(&proxy, &site, minutes))?;
            Ok(0)
        }
    }
}

fn run(config: Option<&Path>, listen: Option<String>) -> Result<i32> {
    let mut cfg = load_config(config)?;
    if let Some(l) = listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            bail!("--listen `{l}` is not an address like 127.0.0.1:8877");
        }
        cfg.server.listen = l;
    }
    let _logs = init_logs(cfg.server.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // Signal handlers first: a SIGTERM at any point after start drains and exits 0.
        let stop = nostalk::ops::signals::shutdown();
        let mut server = nostalk::Server::bind(cfg).await?;
        if let Some(path) = config {
            server = server.reload_from(path);
        }
        server.run(stop).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// `check`: 0 when the file is valid and its lists build, 2 with every problem said.
fn check(config: &Path) -> i32 {
    match Config::load(config) {
        Ok(cfg) => {
            let mut errors = 0;
            for f in nostalk::ops::preflight::check(&cfg) {
                let what = if f.error { "" } else { "warning: " };
                eprintln!("{}: {what}{}", config.display(), f.message);
                errors += usize::from(f.error);
            }
            // The lists are built only when every file they name was found.
            if errors == 0 {
                if let Err(e) = Policy::build(&cfg, &[]) {
                    eprintln!("{}: {e}", config.display());
                    errors += 1;
                }
            }
            if errors > 0 {
                return 2;
            }
            println!("{}: valid", config.display());
            0
        }
        Err(ConfigError::Invalid(issues)) => {
            for i in issues {
                eprintln!("{}: {i}", config.display());
            }
            2
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

/// Whom `explain` decides for (`--user`, `--client`).
struct Asker<'a> {
    user: Option<&'a str>,
    client: Option<std::net::IpAddr>,
}

fn explain(
    url: &str,
    config: Option<&Path>,
    page: Option<&str>,
    request_type: Option<&str>,
    json: bool,
    asker: Asker<'_>,
) -> Result<i32> {
    let cfg = load_config(config)?;
    let subs = Subscriptions::new(&cfg);
    let policy = Policy::build(&cfg, &subs.loaded())?;
    if url == "-" {
        explain_lines(&policy)?;
        return Ok(0);
    }
    // The person's choices (a down-voted ad source, a site trusted from the page), when the
    // store exists; explain never creates a SQLite file. The overlays are the running proxy's
    // (Shared::overlay): the group of the user or the client's network, the household's (or
    // team's) choices, and the asker's own.
    let store = cfg.store_path();
    let choices = (store.exists() || nostalk::ops::choices::is_postgres(&store))
        .then(|| nostalk::ops::choices::Choices::open(&store, cfg.receipt.downvotes_to_block).ok())
        .flatten();
    let ip = asker.client.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let group = nostalk::ops::groups::Groups::new(&cfg).of(asker.user, ip);
    let scope = match (asker.user, asker.client) {
        (None, None) => None,
        _ => nostalk::proxy::state::person_scope(cfg.auth.users.is_some(), cfg.receipt.per_person, asker.user, ip),
    };
    let group_name = group.as_ref().map(|g| g.name.clone());
    let mut overlay = policy::Overlay::new(group, choices.as_ref().map(|c| c.snapshot()).unwrap_or_default());
    if let (Some(c), Some(scope)) = (&choices, &scope) {
        overlay = overlay.with_device(c.device(scope));
    }
    let e = policy::explain(&policy, url, page, request_type, &overlay).map_err(anyhow::Error::msg)?;
    let own = scope.as_deref().filter(|_| choices.is_some());
    if json {
        let mut v = serde_json::to_value(&e)?;
        if asker.user.is_some() || asker.client.is_some() {
            v["group"] = serde_json::json!(group_name);
            v["own_choices"] = serde_json::json!(own);
        }
        println!("{v}");
    } else {
        println!("{}  {}", e.decision.as_str(), e.url);
        println!("  rule:  {}", e.rule.as_deref().unwrap_or("(none)"));
        println!("  list:  {}", e.list.as_deref().unwrap_or("(none)"));
        println!("  site:  {} ({} party, {})", e.site, e.party, e.request_type);
        if asker.user.is_some() || asker.client.is_some() {
            println!("  group: {}", group_name.as_deref().unwrap_or("(none)"));
            println!("  own choices: {}", own.unwrap_or("(none)"));
        }
    }
    Ok(0)
}

/// `explain -`: `URL [PAGE [TYPE]]` per line on stdin, a JSON object per line out.
fn explain_lines(policy: &Policy) -> Result<()> {
    use std::io::Write;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        let mut parts = line.split_ascii_whitespace();
        let Some(u) = parts.next() else { continue };
        let (p, t) = (parts.next(), parts.next());
        let obj = match policy::explain(policy, u, p, t, &Default::default()) {
            Ok(e) => serde_json::to_value(&e)?,
            Err(msg) => serde_json::json!({ "url": u, "error": msg }),
        };
        writeln!(out, "{obj}")?;
    }
    Ok(())
}

fn service(command: ServiceCommand) -> Result<i32> {
    use nostalk::ops::service::{self as svc, Manager};
    let pick = |m: &Option<String>| match m.as_deref() {
        Some("launchd") => Some(Manager::Launchd),
        Some(_) => Some(Manager::Systemd),
        None => Manager::here(),
    };
    let unit_of = |m: Manager| -> Result<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| anyhow!("HOME is not set"))?;
        let config_home = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
        Ok(m.unit_path(&home, config_home.as_deref()))
    };
    let none_here = "this system has neither systemd nor launchd that nostalk knows: start `nostalk run` \
                     with your session by your system's own means (a login item, a startup task)";
    match command {
        ServiceCommand::Install { config, no_enable, manager } => {
            let Some(m) = pick(&manager) else { bail!("{none_here}") };
            let exe = std::env::current_exe()?;
            let config = config.map(|c| std::path::absolute(&c)).transpose()?;
            if let Some(c) = &config {
                if let Err(e) = Config::load(c) {
                    bail!("{}: {e}", c.display());
                }
            }
            let said = svc::install(m, &unit_of(m)?, &exe, config.as_deref(), !no_enable).map_err(|e| anyhow!(e))?;
            print!("{said}");
            Ok(0)
        }
        ServiceCommand::Uninstall { manager } => {
            let Some(m) = pick(&manager) else { bail!("{none_here}") };
            print!("{}", svc::uninstall(m, &unit_of(m)?, Manager::here() == Some(m)).map_err(|e| anyhow!(e))?);
            Ok(0)
        }
        ServiceCommand::Status { manager } => {
            let Some(m) = pick(&manager) else { bail!("{none_here}") };
            print!("{}", svc::status(m, &unit_of(m)?));
            Ok(0)
        }
    }
}

fn ca(command: CaCommand) -> Result<i32> {
    match command {
        CaCommand::Init { dir } => {
            let dir = dir.unwrap_or_else(nostalk::config::default_ca_dir);
            let path = nostalk::tls::CertificateAuthority::init(&dir)?;
            println!("{}", path.display());
            eprintln!("Trust this certificate in your browser or system to let nostalk look inside HTTPS.");
        }
        CaCommand::Export { dir } => {
            let dir = dir.unwrap_or_else(nostalk::config::default_ca_dir);
            let path = dir.join(nostalk::tls::CA_CERT_FILE);
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("no CA at {} (run `nostalk ca init` first)", path.display()))?;
            print!("{pem}");
        }
    }
    Ok(0)
}

fn lists(config: Option<&Path>) -> Result<i32> {
    let cfg = load_config(config)?;
    let subs = Subscriptions::new(&cfg);
    let policy = Policy::build(&cfg, &subs.loaded())?;
    println!("{:<24} {:>8}  {:<10} STATE", "LIST", "RULES", "AGE");
    for s in &policy.sources {
        let (age, state) = match &s.origin {
            // Subscriptions are listed below, with their download state.
            policy::lists::Origin::Url(_) => continue,
            policy::lists::Origin::Embedded => ("built in".to_string(), format!("in force ({})", s.kind.as_str())),
            policy::lists::Origin::Path(p) => (file_age(p), format!("in force ({}, {})", s.kind.as_str(), p.display())),
        };
        println!("{:<24} {:>8}  {:<10} {}", s.name, s.rules, age, state);
    }
    for s in subs.summaries() {
        let age = s.age.map(human_age).unwrap_or_else(|| "-".into());
        println!("{:<24} {:>8}  {:<10} {} <{}>", s.name, s.rules, age, s.state, s.url);
    }
    Ok(0)
}

fn file_age(p: &Path) -> String {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(human_age)
        .unwrap_or_else(|| "-".into())
}

fn human_age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// One HTTP/1.1 exchange with the proxy's own pages; returns the status line and the body.
async fn ask_proxy(proxy: &str, method: &str, path: &str, body: &str) -> Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy).await.with_context(|| format!("no proxy at {proxy}"))?;
    let token =
        std::env::var("NOSTALK_ADMIN_TOKEN").map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {proxy}\r\n{token}content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let status = resp.lines().next().unwrap_or("").to_string();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The token of the proxy's own page, which its controls take, fetched as a browser on that
/// page would have it.
async fn page_token(proxy: &str) -> Result<String> {
    let (status, page) = ask_proxy(proxy, "GET", "/", "").await?;
    let marker = "name=\"token\" value=\"";
    let Some(token) = page.split_once(marker).and_then(|(_, rest)| rest.split('"').next()) else {
        bail!("the proxy did not offer its controls ({status}); is this machine in [admin] allow (and NOSTALK_ADMIN_TOKEN set, when [admin] token is)?");
    };
    Ok(token.to_string())
}

async fn refresh_lists(proxy: &str) -> Result<()> {
    let token = page_token(proxy).await?;
    let (status, resp) = ask_proxy(proxy, "POST", "/lists/refresh", &format!("token={token}")).await?;
    if !status.contains(" 200 ") {
        bail!("the proxy answered: {status}: {}", resp.trim());
    }
    print!("{resp}");
    Ok(())
}

#[derive(Subcommand)]
enum AdsCommand {
    /// One more down-vote for an ad source (a host; its site is what is voted on).
    Down { host: String },
    /// Forget an ad source's down-votes: its ads are shown de-identified again.
    Restore { host: String },
}

#[derive(Subcommand)]
enum LearnedCommand {
    /// Forget a learned tracker (a host; its site is what is forgotten) and never learn it again.
    Forget { host: String },
}

/// The choices store of `config` (the default store when absent), as the running proxy has it.
fn open_store(config: Option<&Path>) -> Result<nostalk::ops::choices::Choices> {
    let cfg = load_config(config)?;
    nostalk::ops::choices::Choices::open(&cfg.store_path(), cfg.receipt.downvotes_to_block).map_err(anyhow::Error::msg)
}

/// `nostalk learned [forget HOST]`.
fn learned(command: Option<LearnedCommand>, config: Option<&Path>) -> Result<i32> {
    let choices = open_store(config)?;
    match command {
        None => {
            let learned = choices.learned();
            if learned.is_empty() {
                println!("no tracker learned yet ({})", choices.path().display());
            }
            for (source, sites) in learned {
                println!("{source}  learned: tried to identify you on {sites}");
            }
        }
        Some(LearnedCommand::Forget { host }) => {
            let source = nostalk::policy::site::site_of(&host.to_ascii_lowercase());
            choices.not_a_tracker(&source).map_err(anyhow::Error::msg)?;
            println!("{source}: forgotten; it will not be learned again");
        }
    }
    Ok(0)
}

/// `nostalk ads [down|restore HOST]`.
fn ads(command: Option<AdsCommand>, config: Option<&Path>) -> Result<i32> {
    let choices = open_store(config)?;
    let threshold = choices.threshold();
    match command {
        None => {
            let snap = choices.snapshot();
            if snap.downvotes.is_empty() {
                println!("no ad source is down-voted ({})", choices.path().display());
            }
            let mut rows: Vec<_> = snap.downvotes.iter().collect();
            rows.sort();
            for (source, votes) in rows {
                let state = if *votes >= threshold { "blocked (down-voted)" } else { "shown, de-identified" };
                println!("{source}  {votes} down-vote(s)  {state}");
            }
        }
        Some(AdsCommand::Down { host }) => {
            let source = nostalk::policy::site::site_of(&host.to_ascii_lowercase());
            let votes = choices.downvote(&source).map_err(anyhow::Error::msg)?;
            let state = if votes >= threshold {
                "its ads are now blocked (down-voted)".to_string()
            } else {
                format!("blocked at {threshold}")
            };
            println!("{source}: {votes} down-vote(s); {state}");
        }
        Some(AdsCommand::Restore { host }) => {
            let source = nostalk::policy::site::site_of(&host.to_ascii_lowercase());
            choices.restore(&source).map_err(anyhow::Error::msg)?;
            println!("{source}: restored; its ads are shown de-identified again");
        }
    }
    Ok(0)
}

async fn shop(proxy: &str, site: &str, minutes: u64) -> Result<()> {
    let token = page_token(proxy).await?;
    let body = format!(
        "site={}&minutes={minutes}&token={token}",
        url::form_urlencoded::byte_serialize(site.as_bytes()).collect::<String>()
    );
    let (status, resp) = ask_proxy(proxy, "POST", "/shopping", &body).await?;
    if !status.contains(" 303 ") {
        bail!("the proxy answered: {status}");
    }
    println!("{}", resp.trim());
    Ok(())
}

/// `nostalk passwd USER`: the password asked for (twice, on a terminal) or read from stdin,
/// hashed with argon2id into the users file.
fn passwd(user: &str, file: Option<PathBuf>, config: Option<&Path>) -> Result<i32> {
    let path = match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => load_config(Some(c))?
            .auth
            .users
            .with_context(|| format!("{} has no [auth] users file; give one with --file", c.display()))?,
        (None, None) => anyhow::bail!("say which users file to change: --file PATH or --config PATH"),
    };
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(format!("password for {user}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ; nothing was changed");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    nostalk::ops::auth::set_password(&path, user, &password).map_err(anyhow::Error::msg)?;
    println!("{user} can now sign in ({})", path.display());
    Ok(0)
}
