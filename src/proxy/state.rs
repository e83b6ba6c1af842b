//! The per-process state the server builds once and every connection shares: the config it
//! started with, the policy (swapped whole on reload), the CA, the upstream client, the ops
//! state (access, auth, metrics, the receipt, the person's choices, passes, subscriptions), and
//! the connection table and shutdown signal. Only proxy/ reads it: it hands each phase, each
//! page and each control the narrow handle it needs.

use crate::{ops, policy, proxy, receipt, tls, Config, Policy};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What every connection shares: the config it started with, the policy (swapped whole on
/// reload), the CA, the upstream client, and the ops state.
pub struct Shared {
    pub config: Config,
    pub policy: Arc<ArcSwap<Policy>>,
    /// The config the policy was last built from: the start's, or the last reload's.
    pub policy_config: Arc<ArcSwap<Config>>,
    /// `[[groups]]`, as the config last read (start or reload) has them.
    pub groups: ArcSwap<ops::groups::Groups>,
    pub ca: Option<Arc<tls::CertificateAuthority>>,
    pub dialer: proxy::dial::Dialer,
    pub upstream: Arc<proxy::upstream::Upstream>,
    pub listen: SocketAddr,
    pub access: ops::access::Access,
    /// Proxy authentication and groups (`[auth]`); None when the config asks for none.
    pub auth: Option<Arc<ops::auth::Auth>>,
    pub metrics: Arc<ops::metrics::Metrics>,
    pub receipt: Arc<receipt::Receipt>,
    /// The tables of the config file in force, so a reload of a file cut short is refused.
    pub config_tables: std::sync::Mutex<Option<std::collections::BTreeSet<String>>>,
    /// The live receipt streams open now (`[receipt] max_watchers`).
    pub watchers: Arc<std::sync::atomic::AtomicUsize>,
    /// Each signed-in user's own receipt (`[auth]`).
    pub user_receipts: receipt::PerUser,
    /// The person's choices kept across restarts (down-votes, shopping switches, trusted
    /// sites), published as the snapshot the decision reads.
    pub choices: Arc<ops::choices::Choices>,
    /// Learned trackers: what third parties that try to identify the browser did, kept in
    /// the choices when one is learned.
    pub learner: proxy::forward::learn::Learner,
    /// One-time passes: loads the person let through with a click ("Open anyway", a social
    /// widget's placeholder).
    pub passes: policy::passes::Passes,
    /// The top page of each client's open cross-site frames: party inside a frame.
    pub frames: policy::frames::Frames,
    /// The clients that fetched the PAC file (so the status page can say what a PAC setting
    /// does when nostalk is down); only where client addresses are kept.
    pub pac_clients: PacClients,
    pub lists: Arc<policy::subscribe::Subscriptions>,
    /// The `[server]` timeouts, parsed once.
    pub timeouts: proxy::limits::Timeouts,
    /// Every open client connection, for the connection limit.
    pub conns: Arc<proxy::limits::ConnTable>,
    /// The secret the proxy's own pages put in their forms; a control without it is refused.
    pub page_token: String,
    /// Set to true when the server begins to shut down; connections close gracefully.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The connection tasks, waited for when draining.
    pub tasks: tokio_util::task::TaskTracker,
    pub ready: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The receipt of the one who asked, besides the whole one: a signed-in user's (`[auth]`),
    /// or, without `[auth]` and with `[receipt] per_person`, the device's own (by its address),
    /// so each device of a household reads only its own sites. None on a shared gateway.
    pub fn own_receipt(
        &self,
        who: Option<&crate::ops::auth::Who>,
        ip: std::net::IpAddr,
    ) -> Option<Arc<receipt::Receipt>> {
        match who {
            Some(w) => Some(self.user_receipts.of(&w.user)),
            None if self.auth.is_none() && self.config.receipt.per_person => {
                Some(self.user_receipts.of(&device_key(ip)))
            }
            None => None,
        }
    }
}

impl Shared {
    /// The overlays one request is decided with: its user's group, the household's choices,
    /// and the person's own choices ([`Shared::person_scope`]). Every path (forward, CONNECT,
    /// transparent) takes its overlay from here.
    pub fn overlay(&self, who: Option<&crate::ops::auth::Who>, ip: std::net::IpAddr) -> crate::policy::Overlay {
        let group = self.groups.load().of(who.map(|w| w.user.as_str()), ip);
        let overlay = crate::policy::Overlay::new(group, self.choices.snapshot());
        match self.person_scope(who, ip) {
            Some(scope) => overlay.with_device(self.choices.device(&scope)),
            None => overlay,
        }
    }

    /// The key a person's own choices are kept under ([`person_scope`]).
    pub fn person_scope(&self, who: Option<&crate::ops::auth::Who>, ip: std::net::IpAddr) -> Option<String> {
        person_scope(self.auth.is_some(), self.config.receipt.per_person, who.map(|w| w.user.as_str()), ip)
    }

    /// Whether each device of a household keeps choices of its own (by its address).
    pub fn per_device(&self) -> bool {
        self.auth.is_none() && self.config.receipt.per_person
    }
}

/// The key a person's own choices are kept under: with `[auth]`, the signed-in user's name
/// (`user NAME`), so their choices follow them to every replica sharing the store; on a
/// household proxy (`[receipt] per_person`, without `[auth]`), the device's address; None on a
/// shared gateway without sign-in.
pub fn person_scope(auth: bool, per_person: bool, user: Option<&str>, ip: std::net::IpAddr) -> Option<String> {
    match (auth, user) {
        (true, Some(user)) => Some(format!("{USER_SCOPE_PREFIX}{user}")),
        (true, None) => None,
        (false, _) => per_person.then(|| crate::ops::access::unmap(ip).to_string()),
    }
}

/// What a signed-in user's choices are kept under, before their name (names never contain a
/// space, and an address never starts with a letter and a space).
pub const USER_SCOPE_PREFIX: &str = "user ";

/// The key of a device's own receipt: its address (users' names never contain a space).
pub fn device_key(ip: std::net::IpAddr) -> String {
    format!("{DEVICE_KEY_PREFIX}{}", crate::ops::access::unmap(ip))
}

/// What a device's receipt key starts with.
pub const DEVICE_KEY_PREFIX: &str = "device ";

/// The addresses that fetched the PAC file, at most [`PacClients::MAX`] (the first ones kept).
#[derive(Default)]
pub struct PacClients(std::sync::Mutex<std::collections::HashSet<std::net::IpAddr>>);

impl PacClients {
    pub const MAX: usize = 1024;

    pub fn saw(&self, ip: std::net::IpAddr) {
        let mut set = crate::base::lock(&self.0);
        if set.len() < Self::MAX {
            set.insert(crate::ops::access::unmap(ip));
        }
    }

    pub fn has(&self, ip: std::net::IpAddr) -> bool {
        crate::base::lock(&self.0).contains(&crate::ops::access::unmap(ip))
    }
}
