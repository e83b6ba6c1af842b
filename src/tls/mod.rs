//! TLS: the local certificate authority (create, load, export), per-host leaf certificates
//! minted with rcgen and cached, and the rustls configurations for both sides: the server side
//! that intercepted clients see (ALPN h2 and http/1.1) and the upstream side (webpki roots plus
//! `[upstream] extra_roots`).
//!
//! All leaves share one key pair made at start-up, as mitmproxy does: minting a leaf is then one
//! signature, not a key generation. The CA's distinguished name is fixed, so a CA read back from
//! disk is rebuilt from its key alone.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CA_CERT_FILE: &str = "nostalk-ca.pem";
pub const CA_KEY_FILE: &str = "nostalk-ca.key";
const CA_COMMON_NAME: &str = "nostalk local CA";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{path}: no usable PEM certificate in it")]
    BadPem { path: PathBuf },
    #[error("{path} can be read by other users (mode {mode:o}); the CA key must be yours alone. Fix it with: chmod 600 {path}")]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{path} can be read by its group (mode {mode:o}), which is not this process's own; the CA key must be yours alone. Fix it with: chmod 600 {path}")]
    KeyShared { path: PathBuf, mode: u32 },
    #[error("{path} can be written by other users (mode {mode:o}): anyone could put a CA key of theirs in it. Fix it with: chmod 700 {path}")]
    DirExposed { path: PathBuf, mode: u32 },
    #[error("no certificate is made for `{0}`: not a host name")]
    BadName(String),
}

/// The CA key must be its owner's alone: no one else may read or write it, and no one else may
/// write its directory. Its group may read it only when that group is this process's own
/// (its group or a supplementary one): that is how Kubernetes (fsGroup, deploy/kubernetes) and
/// a service's dedicated group hand a secret to a non-root process; a key readable by some
/// other group (`users`, say) is refused.
#[cfg(unix)]
fn check_private(dir: &Path, key_path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir_meta = std::fs::metadata(dir).map_err(io_err(dir))?;
    let dir_mode = dir_meta.permissions().mode() & 0o777;
    if dir_mode & 0o002 != 0 {
        return Err(TlsError::DirExposed { path: dir.to_owned(), mode: dir_mode });
    }
    let meta = std::fs::metadata(key_path).map_err(io_err(key_path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 || mode & 0o020 != 0 {
        return Err(TlsError::KeyExposed { path: key_path.to_owned(), mode });
    }
    if mode & 0o040 != 0 && !own_group(meta.gid()) {
        return Err(TlsError::KeyShared { path: key_path.to_owned(), mode });
    }
    Ok(())
}

/// Whether `gid` is this process's group or one of its supplementary groups.
#[cfg(unix)]
fn own_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions; getgroups writes at most `groups.len()` entries
    // into the buffer we own and returns how many it wrote.
    unsafe {
        if libc::getegid() == gid {
            return true;
        }
        let mut groups = [0 as libc::gid_t; 256];
        let n = libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr());
        n > 0 && groups[..n as usize].contains(&gid)
    }
}

/// Whether a leaf may be minted for `name`: an address, or a DNS name of letters, digits,
/// hyphens and dots; never a wildcard, an empty name or one with an empty label.
pub fn is_mintable_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
        })
}

/// Create `dir` (and its parents) readable by this user alone.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io_err(dir))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

/// The process's crypto provider: ring, for rustls, tokio-rustls and rcgen alike.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "nostalk");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// The local CA: its certificate (PEM and DER) and what signs leaves.
pub struct CertificateAuthority {
    pub dir: PathBuf,
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_key_der: Vec<u8>,
    cache: quick_cache::sync::Cache<String, Arc<rustls::ServerConfig>>,
}

impl CertificateAuthority {
    /// Create a CA in `dir` (key file mode 0600). Fails if one exists already.
    pub fn init(dir: &Path) -> Result<PathBuf, TlsError> {
        create_private_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            return Ok(cert_path);
        }
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        params.not_before = time_now() - DAY;
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        Ok(cert_path)
    }

    /// Load the CA in `dir`, creating it first when there is none. Returns whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(CertificateAuthority, bool), TlsError> {
        let created = !dir.join(CA_KEY_FILE).exists();
        if created {
            Self::init(dir)?;
        }
        Ok((Self::load(dir)?, created))
    }

    pub fn load(dir: &Path) -> Result<CertificateAuthority, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        #[cfg(unix)]
        check_private(dir, &key_path)?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| TlsError::BadPem { path: cert_path.clone() })?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::new(ca_params(), key);
        let leaf_key = KeyPair::generate()?;
        let leaf_key_der = leaf_key.serialize_der();
        Ok(CertificateAuthority {
            dir: dir.to_owned(),
            cert_pem,
            cert_der,
            issuer,
            leaf_key,
            leaf_key_der,
            cache: quick_cache::sync::Cache::new(1024),
        })
    }

    /// A server config for `host`, minted on first use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        if !is_mintable_name(host) {
            return Err(TlsError::BadName(host.to_string()));
        }
        let host = host.to_ascii_lowercase();
        if let Some(cfg) = self.cache.get(&host) {
            return Ok(cfg);
        }
        let leaf = self.mint(&host)?;
        let key =
            PrivateKeyDer::try_from(self.leaf_key_der.clone()).map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.cert_der.clone()], key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        self.cache.insert(host, cfg.clone());
        Ok(cfg)
    }

    fn mint(&self, host: &str) -> Result<CertificateDer<'static>, TlsError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_string().try_into()?),
        }];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        // Browsers cap leaf lifetimes; a day back and a year forward keeps clocks happy.
        let now = time_now();
        params.not_before = now - DAY;
        params.not_after = now + 365 * DAY;
        let cert = params.signed_by(&self.leaf_key, &self.issuer)?;
        Ok(cert.der().clone())
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

/// The rustls client config for upstream connections: webpki roots plus `extra_roots`,
/// ALPN h2 and http/1.1.
pub fn upstream_client_config(extra_roots: &[PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_roots {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&bytes).flatten() {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(TlsError::BadPem { path: path.clone() });
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_with_private_key_mode_and_mints_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, created) = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let a = ca.server_config("news.test").unwrap();
        let b = ca.server_config("NEWS.test").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "leaf configs are cached per host");
        let (_, created_again) = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(!created_again);
        assert!(ca.server_config("*.test").is_err(), "no wildcard leaves");
        assert!(ca.server_config("").is_err(), "no empty names");
        assert!(ca.server_config("a..test").is_err());
        assert!(ca.server_config("127.0.0.1").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_ca_directory_is_private_whatever_the_umask_and_an_exposed_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("deep").join("ca");
        // SAFETY: umask only sets this process's file-creation mask; restored below.
        let old = unsafe { libc::umask(0) };
        let made = CertificateAuthority::init(&ca_dir);
        unsafe { libc::umask(old) };
        made.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir.join(CA_CERT_FILE)), 0o600);
        std::fs::set_permissions(ca_dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let Err(e) = CertificateAuthority::load(&ca_dir) else { panic!("an exposed key must be refused") };
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(ca_dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o660)).unwrap();
        assert!(CertificateAuthority::load(&ca_dir).is_err(), "a key its group may write is refused");
        // Readable by its group, the process's own: how a Kubernetes Secret (fsGroup) reaches a
        // non-root process.
        std::fs::set_permissions(ca_dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(CertificateAuthority::load(&ca_dir).is_ok());
        // A directory anyone may write is refused, whatever the key's mode.
        std::fs::set_permissions(ca_dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let Err(e) = CertificateAuthority::load(&ca_dir) else {
            panic!("a directory others may write must be refused")
        };
        assert!(e.to_string().contains("chmod 700"), "{e}");
        std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Readable by a group that is not this process's (needs the right to give it away).
        let key = std::ffi::CString::new(ca_dir.join(CA_KEY_FILE).to_str().unwrap()).unwrap();
        std::fs::set_permissions(ca_dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o640)).unwrap();
        // SAFETY: chown(2) on a path we made; uid -1 leaves the owner as it is.
        if unsafe { libc::chown(key.as_ptr(), u32::MAX, 4242) } == 0 && !own_group(4242) {
            let Err(e) = CertificateAuthority::load(&ca_dir) else { panic!("a key another group may read") };
            assert!(e.to_string().contains("not this process's own"), "{e}");
        } else {
            eprintln!("SKIPPED: cannot give the key to another group here");
        }
    }
}
