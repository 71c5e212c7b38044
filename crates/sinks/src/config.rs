//! `[sinks]`, and the duration form every section of the configuration uses.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[sinks]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinksConfig {
    /// `[sinks.stdout]`.
    pub stdout: StdoutSinkConfig,
    /// `[sinks.mqtt]`.
    pub mqtt: Option<crate::mqtt::MqttConfig>,
    /// `[[sinks.webhook]]`.
    pub webhook: Vec<crate::webhook::WebhookConfig>,
}

/// `[sinks.stdout]`: every committed event as one JSON line on standard output.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdoutSinkConfig {
    /// On or off.
    pub enabled: bool,
}

/// A duration as the configuration writes it (`30s`, `5m`, `90d`, `1h 30m`), with an error that says
/// how to write one.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"90d\""
        ))
    })
}
