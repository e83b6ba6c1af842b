//! Starting nostalk with the person's session, so a laptop is never left unprotected because
//! nostalk was not started after a reboot: `nostalk service install` writes and enables a
//! systemd user unit on Linux (`~/.config/systemd/user/nostalk.service`) or a launchd agent on
//! macOS (`~/Library/LaunchAgents/org.nostalk.proxy.plist`); `uninstall` disables and removes
//! it, `status` says whether it is installed and running. Elsewhere the steps are printed.
//! The unit runs the binary that installed it, with the config given (or the embedded
//! default), restarted if it stops. A system-wide service is deploy/systemd's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which service manager a unit is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// This system's, if it has one nostalk knows.
    pub fn here() -> Option<Manager> {
        if cfg!(target_os = "macos") {
            Some(Manager::Launchd)
        } else if cfg!(target_os = "linux") {
            Some(Manager::Systemd)
        } else {
            None
        }
    }

    /// Where the person's unit goes, under `home` (and `config_home`, XDG's, for systemd).
    pub fn unit_path(self, home: &Path, config_home: Option<&Path>) -> PathBuf {
        match self {
            Manager::Systemd => config_home
                .map(Path::to_path_buf)
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user/nostalk.service"),
            Manager::Launchd => home.join("Library/LaunchAgents/org.nostalk.proxy.plist"),
        }
    }

    /// The unit's text: `exe run [--config CONFIG]`, restarted when it stops.
    pub fn unit_text(self, exe: &Path, config: Option<&Path>) -> String {
        match self {
            Manager::Systemd => {
                let mut cmd = format!("{} run", systemd_quote(&exe.display().to_string()));
                if let Some(c) = config {
                    cmd.push_str(&format!(" --config {}", systemd_quote(&c.display().to_string())));
                }
                format!(
                    "# Written by `nostalk service install`; `nostalk service uninstall` removes it.\n\
                     [Unit]\n\
                     Description=nostalk privacy proxy (this session's)\n\
                     Documentation=https://github.com/nostalk/nostalk\n\
                     After=network-online.target\n\n\
                     [Service]\n\
                     ExecStart={cmd}\n\
                     Restart=always\n\
                     RestartSec=2\n\
                     NoNewPrivileges=yes\n\n\
                     [Install]\n\
                     WantedBy=default.target\n"
                )
            }
            Manager::Launchd => {
                let mut args = vec![exe.display().to_string(), "run".to_string()];
                if let Some(c) = config {
                    args.push("--config".into());
                    args.push(c.display().to_string());
                }
                let args: String =
                    args.iter().map(|a| format!("    <string>{}</string>\n", crate::respond::html_escape(a))).collect();
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
                     <plist version=\"1.0\">\n<dict>\n\
                     \x20 <key>Label</key>\n  <string>org.nostalk.proxy</string>\n\
                     \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
                     \x20 <key>RunAtLoad</key>\n  <true/>\n\
                     \x20 <key>KeepAlive</key>\n  <true/>\n\
                     </dict>\n</plist>\n"
                )
            }
        }
    }

    /// The commands that enable and start the written unit (and those that stop and disable it).
    fn enable(self, unit: &Path) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Manager::Systemd => vec![
                s(&["systemctl", "--user", "daemon-reload"]),
                s(&["systemctl", "--user", "enable", "--now", "nostalk.service"]),
            ],
            Manager::Launchd => vec![s(&["launchctl", "load", "-w", &unit.display().to_string()])],
        }
    }

    fn disable(self, unit: &Path) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Manager::Systemd => vec![s(&["systemctl", "--user", "disable", "--now", "nostalk.service"])],
            Manager::Launchd => vec![s(&["launchctl", "unload", "-w", &unit.display().to_string()])],
        }
    }
}

/// A systemd `ExecStart=` word: quoted when it holds a space, quote or backslash.
fn systemd_quote(word: &str) -> String {
    if word.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        word.to_string()
    }
}

/// Write the unit and, unless `enable` is false, enable and start it. Returns what to tell the
/// person.
pub fn install(m: Manager, unit: &Path, exe: &Path, config: Option<&Path>, enable: bool) -> Result<String, String> {
    if let Some(dir) = unit.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    }
    std::fs::write(unit, m.unit_text(exe, config)).map_err(|e| format!("could not write {}: {e}", unit.display()))?;
    let mut said = format!("wrote {}\n", unit.display());
    if enable {
        said.push_str(&run_all(&m.enable(unit))?);
        said.push_str("nostalk now starts with your session; check it with `nostalk service status`.\n");
    } else {
        let steps: Vec<String> = m.enable(unit).iter().map(|c| c.join(" ")).collect();
        said.push_str(&format!("to start it now and at each login: {}\n", steps.join(" && ")));
    }
    Ok(said)
}

/// Stop, disable and remove the unit.
pub fn uninstall(m: Manager, unit: &Path, enabled: bool) -> Result<String, String> {
    if !unit.exists() {
        return Ok(format!("no service installed ({} does not exist)\n", unit.display()));
    }
    let mut said = String::new();
    if enabled {
        // A unit that was never enabled fails to disable: that is no reason to keep it.
        said.push_str(&run_all(&m.disable(unit)).unwrap_or_else(|e| format!("{e}\n")));
    }
    std::fs::remove_file(unit).map_err(|e| format!("could not remove {}: {e}", unit.display()))?;
    said.push_str(&format!("removed {}\n", unit.display()));
    Ok(said)
}

/// Whether the unit is installed, and what the manager says of it.
pub fn status(m: Manager, unit: &Path) -> String {
    if !unit.exists() {
        return format!(
            "not installed: nostalk does not start with your session (`nostalk service install` does that; {} would be written)\n",
            unit.display()
        );
    }
    let asked = match m {
        Manager::Systemd => Command::new("systemctl").args(["--user", "is-active", "nostalk.service"]).output(),
        Manager::Launchd => Command::new("launchctl").args(["list", "org.nostalk.proxy"]).output(),
    };
    let state = match asked {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().lines().next().unwrap_or("").to_string(),
        Err(e) => format!("the service manager could not be asked: {e}"),
    };
    format!("installed: {}\nstate: {state}\n", unit.display())
}

fn run_all(commands: &[Vec<String>]) -> Result<String, String> {
    let mut said = String::new();
    for c in commands {
        let out =
            Command::new(&c[0]).args(&c[1..]).output().map_err(|e| format!("could not run `{}`: {e}", c.join(" ")))?;
        if !out.status.success() {
            return Err(format!("`{}` failed: {}", c.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        said.push_str(&format!("ran `{}`\n", c.join(" ")));
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_run_this_binary_with_its_config_quoted_where_needed() {
        let unit = Manager::Systemd.unit_text(Path::new("/opt/my tools/nostalk"), Some(Path::new("/etc/n.toml")));
        assert!(unit.contains("ExecStart=\"/opt/my tools/nostalk\" run --config /etc/n.toml\n"), "{unit}");
        assert!(unit.contains("WantedBy=default.target"));
        let plist = Manager::Launchd.unit_text(Path::new("/usr/local/bin/nostalk"), None);
        assert!(plist.contains("<string>/usr/local/bin/nostalk</string>\n    <string>run</string>"), "{plist}");
        assert_eq!(
            Manager::Systemd.unit_path(Path::new("/home/a"), None),
            Path::new("/home/a/.config/systemd/user/nostalk.service")
        );
    }
}
