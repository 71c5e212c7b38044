//! `[sinks.mqtt]`: the sink's configuration and its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (1883, or 8883 with TLS, when the URL gives none).
    pub port: u16,
    /// User and password given in the URL.
    pub credentials: Option<(String, String)>,
}

/// The platform's root certificates (`rustls-native-certs`: on Linux the distribution's bundle, or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), for TLS to a broker when no `ca-file` is given.
pub(super) fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_owned(), |e| e.to_string());
        return Err(format!(
            "cannot load this system's root certificates ({why}); install them (ca-certificates) or set ca-file"
        ));
    }
    Ok(roots)
}

/// Largest `max-message`, in bytes (MQTT's own limit on a packet is 256 MiB).
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// `[sinks.mqtt]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttConfig {
    /// On or off (on when the section is present).
    pub enabled: bool,
    /// Broker: `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883, TLS); an IPv6 address in
    /// brackets (`mqtt://[::1]:1883`); `mqtt://user:password@host` when `username` is not set.
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
    /// Largest payload published, in bytes: an event whose JSON is larger is published without its
    /// data (see `bounds::event_payload`); any other larger message is not published.
    pub max_message: usize,
    /// Rules.
    pub rules: crate::rules::RulesConfig,
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
            max_message: 256 * 1024,
            rules: crate::rules::RulesConfig::default(),
        }
    }
}

impl MqttConfig {
    /// Where the broker is, parsed from the URL (by the `url` crate: IPv6 in brackets, percent-encoded
    /// credentials).
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("sinks.mqtt.url {:?}: {why}", self.url);
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "mqtts" => true,
            "mqtt" => false,
            _ => return Err(bad("must start with mqtt:// or mqtts://")),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("has no host")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("takes no path, query or fragment"));
        }
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|t| t.into_owned())
                .map_err(|_| bad("credentials are not UTF-8"))
        };
        let credentials = match url.username() {
            "" => None,
            user => Some((decode(user)?, decode(url.password().unwrap_or(""))?)),
        };
        Ok(Endpoint {
            tls,
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            credentials,
        })
    }

    /// Problems with this configuration.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.endpoint() {
            Err(e) => problems.push(e),
            Ok(endpoint) if endpoint.tls => match &self.ca_file {
                Some(ca) if !ca.exists() => problems.push(format!(
                    "sinks.mqtt.ca-file {} does not exist",
                    ca.display()
                )),
                Some(_) => {}
                None => {
                    if let Err(e) = system_roots() {
                        problems.push(format!("sinks.mqtt: TLS without ca-file: {e}"));
                    }
                }
            },
            Ok(_) => {}
        }
        if self.topic_root.is_empty() || self.topic_root.contains(['#', '+']) {
            problems.push("sinks.mqtt.topic-root must be non-empty without # or +".into());
        }
        if self.max_inflight == 0 {
            problems.push("sinks.mqtt.max-inflight must be at least 1".into());
        }
        if !(super::bounds::MIN_MESSAGE..=MAX_MESSAGE).contains(&self.max_message) {
            problems.push(format!(
                "sinks.mqtt.max-message = {} must be between {} and {MAX_MESSAGE} bytes",
                self.max_message,
                super::bounds::MIN_MESSAGE
            ));
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
    use super::{Endpoint, MqttConfig};

    fn endpoint(url: &str) -> Result<Endpoint, String> {
        MqttConfig {
            url: url.into(),
            ..MqttConfig::default()
        }
        .endpoint()
    }

    #[test]
    fn broker_urls_are_parsed_as_urls() {
        let at = |tls, host: &str, port, credentials: Option<(&str, &str)>| Endpoint {
            tls,
            host: host.into(),
            port,
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
        };
        assert_eq!(
            endpoint("mqtt://broker"),
            Ok(at(false, "broker", 1883, None))
        );
        assert_eq!(
            endpoint("mqtts://broker/"),
            Ok(at(true, "broker", 8883, None))
        );
        assert_eq!(
            endpoint("mqtt://10.0.0.2:1884"),
            Ok(at(false, "10.0.0.2", 1884, None))
        );
        // Rejected before: the brackets were taken for part of the host name.
        assert_eq!(
            endpoint("mqtt://[::1]:1883"),
            Ok(at(false, "::1", 1883, None))
        );
        assert_eq!(
            endpoint("mqtt://ha:p%40ss%3Aword@broker.lan"),
            Ok(at(false, "broker.lan", 1883, Some(("ha", "p@ss:word"))))
        );
        for bad in [
            "broker:1883",
            "http://broker",
            "mqtt://",
            "mqtt://broker:99999",
            "mqtt://broker/topic",
            "mqtt://broker?x=1",
        ] {
            assert!(endpoint(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tls_without_a_ca_file_uses_the_platform_roots_and_a_missing_ca_file_is_named() {
        let config: MqttConfig = toml::from_str("url = \"mqtts://broker\"").unwrap();
        // This machine has its distribution's bundle (the tests run where ca-certificates is installed).
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let config: MqttConfig =
            toml::from_str("url = \"mqtts://broker\"\nca-file = \"/nonexistent/ca.pem\"").unwrap();
        assert!(config.validate()[0].contains("/nonexistent/ca.pem"));
    }

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
    fn max_message_has_a_default_and_bounds() {
        let config: MqttConfig = toml::from_str("").unwrap();
        assert_eq!(config.max_message, 256 * 1024);
        for (text, ok) in [
            ("max-message = 16384", true),
            ("max-message = 16383", false),
            ("max-message = 134217728", true),
            ("max-message = 134217729", false),
        ] {
            let config: MqttConfig = toml::from_str(text).unwrap();
            assert_eq!(
                config.validate().is_empty(),
                ok,
                "{text}: {:?}",
                config.validate()
            );
        }
    }
}
