//! `[sinks.mqtt]`: the sink's configuration and its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The system CA bundle used for TLS when no `ca-file` is given.
pub(super) const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `[sinks.mqtt]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttConfig {
    /// On or off (on when the section is present).
    pub enabled: bool,
    /// Broker: `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883, TLS).
    pub url: String,
    /// MQTT client id.
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password (prefer `ALARM_CENTER_SINKS__MQTT__PASSWORD`).
    pub password: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (TLS); default: the system bundle.
    pub ca_file: Option<PathBuf>,
    /// First level of every topic.
    pub topic_root: String,
    /// Publish Home Assistant discovery.
    pub discovery: bool,
    /// Home Assistant discovery prefix (its status topic is `<prefix>/status`).
    pub discovery_prefix: String,
    /// Most entities (channel and code) announced per device; the events of the others are still
    /// published on their topics, without a discovery config.
    pub discovery_max_entities_per_device: usize,
    /// Most devices announced; the events of the others are still published on their topics, without
    /// discovery configs.
    pub discovery_max_devices: usize,
    /// MQTT keep-alive.
    #[serde(deserialize_with = "crate::config::duration")]
    pub keep_alive: Duration,
    /// Most unacknowledged messages in flight.
    pub max_inflight: u16,
    /// Rules.
    pub rules: crate::sinks::rules::RulesConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "alarm-center".into(),
            username: None,
            password: None,
            ca_file: None,
            topic_root: "alarm-center".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            discovery_max_entities_per_device: 256,
            discovery_max_devices: 5000,
            keep_alive: Duration::from_secs(30),
            max_inflight: 100,
            rules: crate::sinks::rules::RulesConfig::default(),
        }
    }
}

impl MqttConfig {
    /// (TLS, host, port) from the URL.
    pub fn endpoint(&self) -> Result<(bool, String, u16), String> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "sinks.mqtt.url {:?} must start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("sinks.mqtt.url: bad port {p:?}"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err("sinks.mqtt.url has no host".into());
        }
        Ok((tls, host.to_owned(), port))
    }

    /// Problems with this configuration.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.endpoint() {
            Err(e) => problems.push(e),
            Ok((true, _, _)) => {
                let ca = self.ca_file.clone().unwrap_or_else(|| SYSTEM_CA.into());
                if !ca.exists() {
                    problems.push(format!(
                        "sinks.mqtt: TLS needs a CA file; {} does not exist (set ca-file)",
                        ca.display()
                    ));
                }
            }
            Ok(_) => {}
        }
        if self.topic_root.is_empty() || self.topic_root.contains(['#', '+']) {
            problems.push("sinks.mqtt.topic-root must be non-empty without # or +".into());
        }
        if self.max_inflight == 0 {
            problems.push("sinks.mqtt.max-inflight must be at least 1".into());
        }
        if self.discovery_max_entities_per_device == 0 {
            problems.push(
                "sinks.mqtt.discovery-max-entities-per-device must be at least 1 (discovery = false turns discovery off)"
                    .into(),
            );
        }
        if self.discovery_max_devices == 0 {
            problems.push(
                "sinks.mqtt.discovery-max-devices must be at least 1 (discovery = false turns discovery off)"
                    .into(),
            );
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push("sinks.mqtt.password needs a username".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::MqttConfig;

    #[test]
    fn discovery_bounds_have_defaults_and_must_be_positive() {
        let config: MqttConfig = toml::from_str("").unwrap();
        assert_eq!(config.discovery_max_entities_per_device, 256);
        assert_eq!(config.discovery_max_devices, 5000);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let config: MqttConfig =
            toml::from_str("discovery-max-entities-per-device = 0\ndiscovery-max-devices = 0")
                .unwrap();
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("discovery-max-entities-per-device"));
        assert!(problems[1].contains("discovery-max-devices"));
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
        let config = crate::Config::load(None, env).unwrap();
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
