//! `hearth service install | uninstall`: a systemd user unit (Linux) or a launchd agent (macOS, untested
//! here) so `hearth serve` — or the web dashboard — starts at login.

use crate::dash::write_atomic;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Write the unit and enable it.
    Install(InstallArgs),
    /// Disable and remove the unit.
    Uninstall(TargetArgs),
}

#[derive(Args)]
pub struct TargetArgs {
    /// Start the web dashboard (`hearth dash --web`) instead of `hearth serve`.
    #[arg(long)]
    pub dashboard: bool,
    /// Only write or remove the file; do not call systemctl/launchctl.
    #[arg(long)]
    pub no_enable: bool,
}

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Extra arguments for the command (e.g. `--addr 127.0.0.1:7070`).
    #[arg(last = true)]
    pub extra: Vec<String>,
}

pub fn run(cmd: ServiceCommand) -> Result<()> {
    match cmd {
        ServiceCommand::Install(args) => install(&args),
        ServiceCommand::Uninstall(target) => uninstall(&target),
    }
}

fn service_name(t: &TargetArgs) -> &'static str {
    if t.dashboard { "hearth-dash" } else { "hearth-serve" }
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")
}

/// Where the unit file goes.
fn unit_path(t: &TargetArgs) -> Result<PathBuf> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join(format!("Library/LaunchAgents/dev.hearth.{}.plist", service_name(t))));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).map_or_else(|| home().map(|h| h.join(".config")), Ok)?;
    Ok(config.join(format!("systemd/user/{}.service", service_name(t))))
}

fn command_line(args: &InstallArgs) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the hearth binary")?;
    let mut cmd = vec![exe.to_string_lossy().into_owned()];
    if args.target.dashboard {
        cmd.extend(["dash".into(), "--web".into()]);
    } else {
        cmd.push("serve".into());
    }
    cmd.extend(args.extra.iter().cloned());
    Ok(cmd)
}

/// systemd quoting: every argument double-quoted, with `\` and `"` escaped and `%` doubled.
pub fn systemd_unit(description: &str, cmd: &[String]) -> String {
    let exec: Vec<String> = cmd.iter().map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%"))).collect();
    format!("[Unit]\nDescription={description}\nAfter=network.target\n\n[Service]\nType=simple\nExecStart={}\nRestart=on-failure\nRestartSec=3\n\n[Install]\nWantedBy=default.target\n", exec.join(" "))
}

pub fn launchd_plist(label: &str, cmd: &[String]) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let args: String = cmd.iter().map(|a| format!("    <string>{}</string>\n", esc(a))).collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>{}</string>\n  <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n  <key>RunAtLoad</key>\n  <true/>\n  <key>KeepAlive</key>\n  <true/>\n</dict>\n</plist>\n", esc(label))
}

fn install(args: &InstallArgs) -> Result<()> {
    let path = unit_path(&args.target)?;
    let cmd = command_line(args)?;
    let name = service_name(&args.target);
    let text = if cfg!(target_os = "macos") { launchd_plist(&format!("dev.hearth.{name}"), &cmd) } else { systemd_unit(&format!("hearth: {}", cmd[1..].join(" ")), &cmd) };
    write_atomic(&path, text.as_bytes())?;
    println!("wrote {}", path.display());
    if !args.target.no_enable {
        enable(&path, name, true);
    }
    Ok(())
}

fn uninstall(t: &TargetArgs) -> Result<()> {
    let path = unit_path(t)?;
    if !path.exists() {
        bail!("{} is not installed (no {})", service_name(t), path.display());
    }
    if !t.no_enable {
        enable(&path, service_name(t), false);
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    println!("removed {}", path.display());
    Ok(())
}

/// Enables or disables through the service manager; a missing or failing manager is reported with the
/// command to run by hand, not an error (the unit file itself is in place).
fn enable(path: &Path, name: &str, on: bool) {
    let (program, args): (&str, Vec<String>) = if cfg!(target_os = "macos") {
        ("launchctl", vec![if on { "load" } else { "unload" }.into(), "-w".into(), path.to_string_lossy().into_owned()])
    } else if on {
        ("systemctl", vec!["--user".into(), "enable".into(), "--now".into(), format!("{name}.service")])
    } else {
        ("systemctl", vec!["--user".into(), "disable".into(), "--now".into(), format!("{name}.service")])
    };
    let ok = Command::new(program).args(&args).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        eprintln!("note: `{program} {}` did not succeed here; run it yourself in your login session", args.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_files_quote_their_arguments() {
        let unit = systemd_unit("d", &["/opt/my hearth/hearth".into(), "serve".into(), "100%".into()]);
        assert!(unit.contains("ExecStart=\"/opt/my hearth/hearth\" \"serve\" \"100%%\"\n"), "{unit}");
        assert!(unit.contains("WantedBy=default.target"));
        let plist = launchd_plist("dev.hearth.x", &["/a&b".into()]);
        assert!(plist.contains("<string>/a&amp;b</string>") && plist.contains("<key>RunAtLoad</key>"));
    }
}
