//! Config parsing and validation on arbitrary text: never a panic, and an error names a key.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(nostalk::config::ConfigError::Invalid(issues)) = nostalk::Config::parse(text) {
        assert!(!issues.is_empty());
    }
});
