//! TOML config loading with errors that name the file, the line and the problem.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A config file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or does not fit the config's fields.
    #[error("invalid config {path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    /// A value parsed but is not acceptable.
    #[error("invalid config {path}: {message}")]
    Value { path: PathBuf, message: String },
}

/// Reads and parses a TOML config file into `T` (unknown fields are the type's business:
/// blackbox's configs deny them).
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse_config(path, &text)
}

/// Parses TOML `text` that came from `path`.
pub fn parse_config<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
        message: e.message().to_string(),
    })
}

/// Resolves a path from a config file against the file's directory (absolute paths stay).
pub fn relative_to(config: &Path, p: &Path) -> PathBuf {
    if p.is_relative() {
        let base = config.parent().filter(|b| !b.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // `data_dir = "."` is the config's directory itself, not `dir/.`.
        let rest: PathBuf = p.components().filter(|c| *c != std::path::Component::CurDir).collect();
        if rest.as_os_str().is_empty() {
            base.to_path_buf()
        } else {
            base.join(rest)
        }
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        port: u16,
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_config::<Cfg>(Path::new("a.toml"), "\nport = 1\nbogus = 2\n").unwrap_err().to_string();
        assert!(e.starts_with("invalid config a.toml line 3: unknown field `bogus`"), "{e}");
        let e = load_config::<Cfg>(Path::new("/nonexistent/x.toml")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read config /nonexistent/x.toml"), "{e}");
        assert_eq!(relative_to(Path::new("/a/b.toml"), Path::new("d")), PathBuf::from("/a/d"));
    }
}
