//! Secret values: the MQTT passwords of `[broker]` and `[upstream]`
//! (`password_file` or `password_env`) and a function's `env_file`. Each
//! value goes into a [`Secret`] and is never echoed, not even in an error.
//!
//! Files read: `password_file` and `env_file` (regular files of at most
//! `files::MAX_SECRET_FILE`, UTF-8). Environment read: `password_env`'s
//! variable. An `env_file` readable by every user is logged as a warning.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use super::Resolver;
use crate::config::files::{read_capped, MAX_SECRET_FILE};
use crate::config::plan::{is_identifier, Secret};
use crate::config::{ConfigError, Location};

impl Resolver<'_> {
    /// Reads an MQTT password from its file or environment variable.
    pub(super) fn password(
        &mut self,
        file: &Option<Spanned<String>>,
        env: &Option<Spanned<String>>,
    ) -> Option<Secret> {
        match (file, env) {
            (Some(file), Some(_)) => {
                self.fail(file.span(), "set password_file or password_env, not both");
                None
            }
            (Some(file), None) => match read_secret_file(&self.path(file.get_ref())) {
                Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())),
                Err(e) => {
                    self.fail(file.span(), format!("cannot read password file: {e}"));
                    None
                }
            },
            (None, Some(var)) => match std::env::var(var.get_ref()) {
                Ok(value) => Some(Secret::new(value)),
                Err(_) => {
                    self.fail(
                        var.span(),
                        format!("environment variable {} is not set", var.get_ref()),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// Reads `env_file`: `KEY=VALUE` lines, blank lines and `#` comments.
    /// Problems inside it are reported at its own file:line.
    pub(super) fn env_file(
        &mut self,
        file: &Spanned<String>,
        inline: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Secret> {
        let path = self.path(file.get_ref());
        let text = match read_secret_file(&path) {
            Ok(text) => text,
            Err(e) => {
                self.fail(file.span(), format!("cannot read env_file: {e}"));
                return BTreeMap::new();
            }
        };
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o004 != 0 {
                log::warn!(target: "ledge::config", "env_file {} is readable by every user; it holds secrets (chmod 640)", path.display());
            }
        }
        let mut values = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let location = Location {
                file: path.clone(),
                line: number + 1,
                column: 1,
            };
            let problem = match line.split_once('=') {
                Some((key, _)) if !is_identifier(key.trim(), "") => {
                    Some(format!("`{}` is not a valid env key", key.trim()))
                }
                Some((key, _)) if inline.contains_key(key.trim()) => Some(format!(
                    "`{}` is also set in the function's env; set it in one place",
                    key.trim()
                )),
                Some((key, value)) => {
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    values.insert(key.trim().to_owned(), Secret::new(value.to_owned()));
                    None
                }
                // The line is not shown: it may be a secret missing its key.
                None => Some("expected KEY=VALUE".to_owned()),
            };
            if let Some(message) = problem {
                self.errors.push(ConfigError {
                    location: Some(location),
                    file: path.clone(),
                    message,
                });
            }
        }
        values
    }
}

/// A secret file's text. Its content is never shown, not even in errors.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, MAX_SECRET_FILE).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use crate::config::resolve::plan;

    #[test]
    fn the_password_is_read_from_the_environment_and_never_shown() {
        std::env::set_var("LEDGE_TEST_PW_7731", "hunter2");
        let plan =
            plan("[broker]\nusername = \"u\"\npassword_env = \"LEDGE_TEST_PW_7731\"\n").unwrap();
        let password = plan.broker.password.clone().unwrap();
        assert_eq!(password.expose(), "hunter2");
        assert!(!format!("{:?}", plan.broker).contains("hunter2"));
        assert_eq!(password.to_string(), "***");
    }

    #[test]
    fn a_missing_password_variable_is_located() {
        let err = plan("[broker]\npassword_env = \"LEDGE_TEST_UNSET_91\"\n").unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:2:16:") && err.contains("not set"),
            "{err}"
        );
    }
}
