//! Command line: `softswitch [serve|check-config] [--config FILE]`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

const AFTER_HELP: &str = "\
Configuration:
  Without --config, softswitch.toml in the working directory is read when present,
  otherwise built-in defaults are used (SIP on 0.0.0.0:5060, HTTP on 0.0.0.0:8080,
  SQLite store at data/softswitch.db).

  Every key can be overridden by an environment variable
  SOFTSWITCH_<SECTION>__<KEY> (upper case, double underscore between parts), e.g.
    SOFTSWITCH_SIP__LISTEN=127.0.0.1:5070
    SOFTSWITCH_CALLS__RING_TIMEOUT_S=10
    SOFTSWITCH_PUSH__APNS__URL=http://127.0.0.1:9001
    SOFTSWITCH_TRUNK__0__ADDRESS='sip:10.0.0.1:5080;transport=tcp'
  Values that read as TOML numbers, booleans or lists are taken as such, anything
  else as a string; lists use TOML syntax: SOFTSWITCH_TRUNK__0__PREFIXES='[\"49\", \"\"]'.
  Trunks are addressed by index in file order; index N (one past the last) adds one.

Start-up prints one line per listener (e.g. `sip udp 0.0.0.0:5060`, `http 0.0.0.0:8080`).
SIGINT/SIGTERM end live calls cleanly and exit 0.";

/// SIP/RTP softswitch with an HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "softswitch", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./softswitch.toml when present, else built-in defaults.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// What to do; without a command the switch is served.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Sub-commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the switch: SIP, media relay and HTTP, until SIGINT/SIGTERM (the default).
    Serve,
    /// Load and validate the configuration (file and environment), print "ok" and exit;
    /// on error print the file, key and problem and exit non-zero.
    CheckConfig,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments, or `--help`/`--version` (whose text is the "error").
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The configuration did not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Cli {
    /// The command to run; no command means `serve`.
    pub fn command(&self) -> Command {
        self.command.unwrap_or(Command::Serve)
    }

    /// The `--config` file, if one was given.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Loads the configuration this invocation names, with environment overrides.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config_path())
    }
}

/// Parses the process arguments; on `--help`, `--version` or bad arguments clap prints
/// and exits (0 for help/version, 2 for usage errors).
pub fn parse() -> Cli {
    Cli::parse()
}

/// Parses explicit arguments (the first is the program name) without exiting.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Ok(Cli::try_parse_from(args)?)
}

/// `check-config`: the text to print on success ("ok").
pub fn check_config(path: Option<&Path>) -> Result<&'static str, CliError> {
    Config::load(path)?;
    Ok("ok")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn no_arguments_means_serve() {
        let cli = try_parse_from(["softswitch"]).unwrap();
        assert_eq!(cli.command(), Command::Serve);
        assert_eq!(cli.config_path(), None);
    }

    #[test]
    fn serve_with_config() {
        let cli = try_parse_from(["softswitch", "serve", "--config", "x.toml"]).unwrap();
        assert_eq!(cli.command(), Command::Serve);
        assert_eq!(cli.config_path(), Some(Path::new("x.toml")));
        // --config before the command and the short form work too.
        let cli = try_parse_from(["softswitch", "-c", "y.toml", "serve"]).unwrap();
        assert_eq!(cli.config_path(), Some(Path::new("y.toml")));
        let cli = try_parse_from(["softswitch", "--config", "z.toml"]).unwrap();
        assert_eq!(cli.command(), Command::Serve);
        assert_eq!(cli.config_path(), Some(Path::new("z.toml")));
    }

    #[test]
    fn check_config_command() {
        let cli = try_parse_from(["softswitch", "check-config", "--config", "a.toml"]).unwrap();
        assert_eq!(cli.command(), Command::CheckConfig);
        assert_eq!(cli.config_path(), Some(Path::new("a.toml")));
    }

    #[test]
    fn check_config_reports_errors() {
        let dir = std::env::temp_dir().join(format!("softswitch-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[calls]\nring_timeout_s = 10\n").unwrap();
        assert_eq!(check_config(Some(&good)).unwrap(), "ok");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[calls]\nring_timeout = 10\n").unwrap();
        let e = check_config(Some(&bad)).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml: key calls.ring_timeout: unknown key"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_arguments_are_errors() {
        assert!(try_parse_from(["softswitch", "serv"]).is_err());
        assert!(try_parse_from(["softswitch", "serve", "--bogus"]).is_err());
    }

    #[test]
    fn help_documents_every_command_and_option() {
        <Cli as CommandFactory>::command().debug_assert();
        let help = <Cli as CommandFactory>::command()
            .render_long_help()
            .to_string();
        for word in [
            "serve",
            "check-config",
            "--config",
            "--help",
            "--version",
            "SOFTSWITCH_SIP__LISTEN",
        ] {
            assert!(help.contains(word), "{word} missing from:\n{help}");
        }
        let version = try_parse_from(["softswitch", "--version"]).unwrap_err();
        match version {
            CliError::Args(e) => {
                assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
                assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")));
            }
            other => panic!("{other:?}"),
        }
    }
}
