//! Configuration: a TOML file, `ALARM_CENTER_*` environment variables and flags, over embedded defaults.
//! Every key has a default; `validate` says exactly what is wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use alarm_center_ingest::config::duration_map;
pub use alarm_center_ingest::config::{
    DeviceConfig, IngestConfig, ServerConfig, StoreConfig, SupervisionConfig,
};
pub use alarm_center_sinks::{SinksConfig, StdoutSinkConfig};
use serde::Deserialize;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "ALARM_CENTER_";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Listener and connection limits.
    pub server: ServerConfig,
    /// Online/offline supervision.
    pub supervision: SupervisionConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Outputs.
    pub sinks: SinksConfig,
    /// The HTTP API.
    pub api: alarm_center_api::ApiConfig,
    /// Known devices.
    pub devices: Vec<DeviceConfig>,
    /// `[auto-clear]`: a synthetic `stop` for an alarm whose stop has not come after this long, by event
    /// code (`*` for every code), e.g. `VideoMotion = "2m"`.
    #[serde(deserialize_with = "duration_map")]
    pub auto_clear: BTreeMap<String, Duration>,
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (shown in the message, not chained: an error chain would print it twice).
        cause: std::io::Error,
    },
    /// TOML syntax or a wrong key/type.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or "environment".
        origin: String,
        /// What is wrong and where.
        message: String,
    },
    /// Values that parse but do not make sense together.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Turns `ALARM_CENTER_SERVER__MAX_CONNECTIONS=5` into the key path `server.max-connections`.
/// `__` separates tables; `_` inside a name becomes `-`.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest.is_empty() {
        return None;
    }
    Some(
        rest.split("__")
            .map(|part| part.to_ascii_lowercase().replace('_', "-"))
            .collect(),
    )
}

/// A value from the environment: TOML if it parses as a TOML value (numbers, booleans), else a string.
fn env_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

/// The value at a dotted key path of `table`.
fn get_path<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Replaces the value at a dotted key path of `table` (the path exists: it was just inserted).
fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        match node.get_mut(*part) {
            Some(toml::Value::Table(inner)) => node = inner,
            _ => return,
        }
    }
    node.insert(parts[parts.len() - 1].to_owned(), value);
}

impl Config {
    /// The sections ingest reads.
    pub fn ingest(&self) -> IngestConfig {
        IngestConfig {
            server: self.server.clone(),
            supervision: self.supervision.clone(),
            store: self.store.clone(),
            devices: self.devices.clone(),
            auto_clear: self.auto_clear.clone(),
            sinks: alarm_center_sinks::enabled_names(&self.sinks),
        }
    }

    /// Reads `file` (if any), applies `ALARM_CENTER_*` variables from `env`, and validates.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.to_owned(),
                    cause,
                })?;
                let table = text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_owned()),
        };
        let mut from_env = Vec::new();
        let mut env_paths: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(path) = env_path(&name) else {
                continue;
            };
            // Variables the CLI reads itself (ALARM_CENTER_CONFIG, ALARM_CENTER_LOG) are not keys.
            if matches!(path.as_slice(), [one] if one == "config" || one == "log") {
                continue;
            }
            let mut node = &mut table;
            for part in &path[..path.len() - 1] {
                let entry = node
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return Err(ConfigError::Parse {
                        origin: "environment".into(),
                        message: format!("{name}: `{part}` is not a table"),
                    });
                };
                node = inner;
            }
            node.insert(path[path.len() - 1].clone(), env_value(&value));
            from_env.push(name);
            env_paths.push((path.join("."), value));
        }
        let origin = if from_env.is_empty() {
            origin
        } else {
            format!("{origin} + environment ({})", from_env.join(", "))
        };
        // An environment value that looks like a number or boolean (a password `12345678`) but belongs
        // to a text key is taken as text: where deserialising fails at a key set from the environment
        // with a value that is not text, that value is made text and deserialising starts again (at most
        // once per variable).
        let config: Config = loop {
            match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
                Ok(config) => break config,
                Err(e) => {
                    let path = e.path().to_string();
                    let retry = env_paths.iter().find(|(p, _)| *p == path).filter(|_| {
                        !matches!(get_path(&table, &path), Some(toml::Value::String(_)))
                    });
                    match retry {
                        Some((path, value)) => {
                            set_path(&mut table, path, toml::Value::String(value.clone()))
                        }
                        None => {
                            let message = e.into_inner().to_string();
                            return Err(ConfigError::Parse { origin, message });
                        }
                    }
                }
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work, listing every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.ingest().validate();
        if let Some(mqtt) = &self.sinks.mqtt {
            problems.extend(mqtt.validate());
        }
        problems.extend(self.api.validate());
        let mut hook_names = std::collections::HashSet::new();
        for (i, hook) in self.sinks.webhook.iter().enumerate() {
            let at = format!("sinks.webhook[{i}] ({})", hook.name);
            problems.extend(hook.validate().into_iter().map(|p| format!("{at}: {p}")));
            if !hook_names.insert(hook.name.as_str()) {
                problems.push(format!("{at}: name used twice"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:15002".parse().unwrap());
        assert_eq!(config.store.data_dir, PathBuf::from("./data"));
        assert_eq!(config.server.max_new_devices_per_ip_per_minute, 100);
        assert_eq!(config.server.max_new_devices_per_minute, 1000);
        assert_eq!(
            config.server.device_expiry,
            Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn environment_overrides_any_key() {
        let config = Config::load(
            None,
            env(&[
                ("ALARM_CENTER_SERVER__MAX_CONNECTIONS", "5"),
                ("ALARM_CENTER_SERVER__REPLY_TO_REQUESTS", "true"),
                ("ALARM_CENTER_SUPERVISION__GRACE", "5s"),
                ("ALARM_CENTER_STORE__DATA_DIR", "/tmp/x"),
                ("ALARM_CENTER_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.max_connections, 5);
        assert!(config.server.reply_to_requests);
        assert_eq!(config.supervision.grace, Duration::from_secs(5));
        assert_eq!(config.store.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn device_expiry_is_never_or_at_least_a_second() {
        let key = "ALARM_CENTER_SERVER__DEVICE_EXPIRY";
        let never = Config::load(None, env(&[(key, "0s")])).unwrap();
        assert!(never.server.device_expiry.is_zero());
        let err = Config::load(None, env(&[(key, "500ms")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.device-expiry"), "{err}");
    }

    #[test]
    fn the_page_size_of_new_stores_is_16_kib_or_any_that_sqlite_accepts() {
        let key = "ALARM_CENTER_STORE__PAGE_SIZE";
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.store.page_size, 16 * 1024);
        let config = Config::load(None, env(&[(key, "4096")])).unwrap();
        assert_eq!(config.store.page_size, 4096);
        for wrong in ["4000", "256", "131072"] {
            let err = Config::load(None, env(&[(key, wrong)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("store.page-size"), "{wrong}: {err}");
        }
    }

    #[test]
    fn numeric_looking_text_from_the_environment_stays_text() {
        let config = Config::load(
            None,
            env(&[
                ("ALARM_CENTER_SINKS__MQTT__USERNAME", "4711"),
                ("ALARM_CENTER_SINKS__MQTT__PASSWORD", "12345678"),
                ("ALARM_CENTER_SERVER__MAX_CONNECTIONS", "9"),
            ]),
        )
        .unwrap();
        let mqtt = config.sinks.mqtt.unwrap();
        assert_eq!(mqtt.password.as_deref(), Some("12345678"));
        assert_eq!(mqtt.username.as_deref(), Some("4711"));
        assert_eq!(config.server.max_connections, 9);
    }

    #[test]
    fn errors_say_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:15002\"\nmax-conections = 3\n",
        )
        .unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("max-conections"), "{err}");
        std::fs::write(&file, "[supervision]\ngrace = \"soon\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("not a duration"), "{err}");
        std::fs::write(&file, "[[devices]]\nid = \"a\"\n[[devices]]\nid = \"a\"\nserial = \"x\"\ntimezone = \"Mars/Olympus\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("give at least one of serial"), "{err}");
        assert!(err.contains("used twice"), "{err}");
        assert!(err.contains("Mars/Olympus"), "{err}");
        let err = Config::load(None, env(&[("ALARM_CENTER_SERVER__MAX_FRAME", "\"big\"")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("environment"), "{err}");
    }

    #[test]
    fn discovery_bounds_come_from_the_environment() {
        let env = [
            ("ALARM_CENTER_SINKS__MQTT__DISCOVERY_MAX_DEVICES", "7"),
            (
                "ALARM_CENTER_SINKS__MQTT__DISCOVERY_MAX_ENTITIES_PER_DEVICE",
                "9",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config = Config::load(None, env).unwrap();
        let mqtt = config.sinks.mqtt.unwrap();
        assert_eq!(
            (
                mqtt.discovery_max_devices,
                mqtt.discovery_max_entities_per_device
            ),
            (7, 9)
        );
    }
}
