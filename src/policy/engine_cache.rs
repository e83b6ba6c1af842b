//! The compiled-engine cache: an adblock engine built from large lists (EasyList and
//! EasyPrivacy: a hundred thousand rules, most of the start-up time and the peak of its
//! memory) is written beside the list cache in adblock's own serialized form, and read back on
//! the next start instead of parsing the lists again. The file is named for a digest of
//! everything the engine is built from (each list's name, kind and text, and this build's
//! engine format), so a changed list or a new nostalk never reads a stale engine; files of
//! older digests are removed when a new one is written. Engines of the embedded lists alone are
//! not cached: they build in a few milliseconds. Any failure (no directory, a truncated file)
//! falls back to building, never to an error.

use adblock::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when what goes into an engine changes in nostalk (parse options, debug mode).
const FORMAT: &str = "nostalk-engine-1 adblock-0.13 network-only debug";

/// The largest engine read back (EasyList's is 5 MB).
const MAX_ENGINE_BYTES: usize = 256 * 1024 * 1024;

/// One class engine's cache file: its directory, its class (`block`, `ad`) and digest.
pub struct CacheFile {
    dir: PathBuf,
    class: &'static str,
    digest: String,
}

impl CacheFile {
    /// The cache file for an engine of `class` built from `parts` (each list's name, kind
    /// and text, in order).
    pub fn new<'a>(dir: &Path, class: &'static str, parts: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Self {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        for (name, kind, text) in parts {
            for field in [name, kind, text] {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        let digest: String = h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect();
        CacheFile { dir: dir.to_path_buf(), class, digest }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("engine-{}-{}.dat.gz", self.class, self.digest))
    }

    /// The engine this file holds, when it holds a sound one.
    pub fn load(&self) -> Option<Engine> {
        let bytes = super::gz_file::read(&self.path(), MAX_ENGINE_BYTES).ok()?;
        let mut engine = Engine::default();
        match engine.deserialize(&bytes) {
            Ok(()) => Some(engine),
            Err(e) => {
                tracing::warn!(file = %self.path().display(), error = ?e, "a cached engine could not be read; building it again");
                None
            }
        }
    }

    /// Write `engine` (atomically: a reader sees the old file or the whole new one), and
    /// remove this class's files of other digests.
    pub fn store(&self, engine: &Engine) {
        let path = self.path();
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| super::gz_file::write(&path, &engine.serialize(), super::gz_file::Level::Engine));
        if let Err(e) = written {
            tracing::debug!(file = %path.display(), error = %e, "the compiled engine is not cached");
            return;
        }
        let prefix = format!("engine-{}-", self.class);
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Older digests, and the uncompressed files of earlier versions.
            if name.starts_with(&prefix) && (name.ends_with(".dat") || name.ends_with(".dat.gz")) && e.path() != path {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
