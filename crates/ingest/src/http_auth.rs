//! Optional credentials for HTTP-mode devices: Basic (RFC 7617) and Digest (RFC 7616, MD5 and SHA-256,
//! with their `-sess` variants, `qop=auth`), checked against `[server] http-username/http-password` or a
//! `[[devices]]` entry's own.
//!
//! Digest nonces are stateless: `<seconds since the Unix epoch, 16 hex digits><first 16 bytes of
//! SHA-256(secret ‖ seconds), 32 hex digits>`, valid for [`NONCE_LIFETIME_S`]; an older one gets a new
//! challenge with `stale=true`. Nonce counts are not tracked (a replayed request within the lifetime is
//! accepted: it can only repeat an event already delivered).

use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Realm announced in challenges.
pub(crate) const REALM: &str = "alarm-center";

/// How long a Digest nonce stays valid, seconds.
pub(crate) const NONCE_LIFETIME_S: u64 = 300;

/// A user name and password a device must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Why a request was not authenticated; `stale` asks for a new challenge marked `stale=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    /// What the device sent, for the log (never a password or a digest response).
    pub(crate) reason: String,
    pub(crate) stale: bool,
}

impl Denied {
    /// Refused for `reason` (not for a stale nonce).
    fn because(reason: String) -> Denied {
        Denied {
            reason,
            stale: false,
        }
    }
}

/// Checks `Authorization` header values; makes challenges.
#[derive(Debug)]
pub(crate) struct Authenticator {
    secret: [u8; 32],
}

fn hex(bytes: &[u8]) -> String {
    alarm_center_proto::record::hex(bytes)
}

/// The Digest hash named by `algorithm` (without `-sess`), as lower-case hex.
fn digest_hex(algorithm: &str, text: &str) -> String {
    if algorithm.eq_ignore_ascii_case("SHA-256") {
        hex(&Sha256::digest(text.as_bytes()))
    } else {
        hex(&Md5::digest(text.as_bytes()))
    }
}

/// Splits `a=b, c="d, e"` into pairs (quoted values unescaped).
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            v.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

impl Authenticator {
    /// An authenticator with a random nonce secret.
    pub(crate) fn new() -> Authenticator {
        Authenticator {
            secret: rand::random(),
        }
    }

    fn nonce_mac(&self, seconds: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(seconds.to_be_bytes());
        hex(&h.finalize()[..16])
    }

    /// A fresh nonce for `now_s` (seconds since the Unix epoch).
    fn nonce(&self, now_s: u64) -> String {
        format!("{now_s:016x}{}", self.nonce_mac(now_s))
    }

    /// `Ok(true)` for a nonce we made that is still fresh, `Ok(false)` for one of ours that expired.
    fn check_nonce(&self, nonce: &str, now_s: u64) -> Result<bool, String> {
        let (Some(time), Some(mac)) = (nonce.get(..16), nonce.get(16..)) else {
            return Err("unknown nonce".into());
        };
        let seconds = u64::from_str_radix(time, 16).map_err(|_| "unknown nonce".to_owned())?;
        if !bool::from(mac.as_bytes().ct_eq(self.nonce_mac(seconds).as_bytes())) {
            return Err("unknown nonce".into());
        }
        Ok(now_s.saturating_sub(seconds) <= NONCE_LIFETIME_S && seconds <= now_s + 5)
    }

    /// `WWW-Authenticate` values offered with a 401: Digest SHA-256, Digest MD5, then Basic.
    pub(crate) fn challenges(&self, now_s: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now_s);
        let stale = if stale { ", stale=true" } else { "" };
        let mut out: Vec<String> = ["SHA-256", "MD5"]
            .iter()
            .map(|algorithm| {
                format!(
                    "Digest realm=\"{REALM}\", qop=\"auth\", algorithm={algorithm}, nonce=\"{nonce}\"{stale}"
                )
            })
            .collect();
        out.push(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""));
        out
    }

    /// Checks the `Authorization` value of a `method` request for `uri` against `expected`.
    pub(crate) fn check(
        &self,
        expected: &Credentials,
        authorization: Option<&str>,
        method: &str,
        uri: &str,
        now_s: u64,
    ) -> Result<(), Denied> {
        let Some(value) = authorization.map(str::trim) else {
            return Err(Denied::because("no Authorization header".into()));
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("Basic") {
            return check_basic(expected, rest);
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(Denied::because(format!("unsupported scheme {scheme:?}")));
        }
        self.check_digest(expected, rest, method, uri, now_s)
    }

    /// Checks Digest parameters `rest` (RFC 7616: MD5, SHA-256, their `-sess` forms, qop `auth` or
    /// none) of a `method` request for `uri`; a right answer with an expired nonce is `stale`.
    fn check_digest(
        &self,
        expected: &Credentials,
        rest: &str,
        method: &str,
        uri: &str,
        now_s: u64,
    ) -> Result<(), Denied> {
        let params = auth_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let user = get("username").unwrap_or("");
        let (Some(nonce), Some(response), Some(digest_uri)) =
            (get("nonce"), get("response"), get("uri"))
        else {
            return Err(Denied::because(format!(
                "Digest for user {user:?} lacks nonce, uri or response"
            )));
        };
        if get("realm") != Some(REALM) {
            return Err(Denied::because(format!(
                "Digest realm {:?} is not {REALM:?}",
                get("realm")
            )));
        }
        if digest_uri != uri {
            return Err(Denied::because(format!(
                "Digest uri {digest_uri:?} is not the request's {uri:?}"
            )));
        }
        let algorithm = get("algorithm").unwrap_or("MD5");
        let fresh = self
            .check_nonce(nonce, now_s)
            .map_err(|e| Denied::because(format!("Digest for user {user:?}: {e}")))?;
        let request = DigestRequest {
            algorithm,
            nonce,
            cnonce: get("cnonce").unwrap_or(""),
            nc: get("nc").unwrap_or(""),
            qop: get("qop"),
            method,
            uri: digest_uri,
        };
        let wanted = request
            .expected_response(expected)
            .map_err(Denied::because)?;
        let user_ok = user.as_bytes().ct_eq(expected.username.as_bytes());
        let response_ok = response
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(wanted.as_bytes());
        if !bool::from(user_ok & response_ok) {
            return Err(Denied::because(format!(
                "Digest {algorithm}: wrong user name or password for user {user:?}"
            )));
        }
        if !fresh {
            return Err(Denied {
                reason: format!("Digest for user {user:?}: nonce expired"),
                stale: true,
            });
        }
        Ok(())
    }
}

/// The fields of a Digest answer that its expected `response` is computed from.
struct DigestRequest<'a> {
    algorithm: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    qop: Option<&'a str>,
    method: &'a str,
    uri: &'a str,
}

impl DigestRequest<'_> {
    /// The `response` a client knowing `expected` sends (lowercase hex), or why none can be computed.
    fn expected_response(&self, expected: &Credentials) -> Result<String, String> {
        let (algorithm, nonce, cnonce) = (self.algorithm, self.nonce, self.cnonce);
        let (base, sess) = match algorithm.to_ascii_uppercase().as_str() {
            "MD5" => ("MD5", false),
            "MD5-SESS" => ("MD5", true),
            "SHA-256" => ("SHA-256", false),
            "SHA-256-SESS" => ("SHA-256", true),
            _ => return Err(format!("unsupported Digest algorithm {algorithm:?}")),
        };
        let mut ha1 = digest_hex(
            base,
            &format!("{}:{REALM}:{}", expected.username, expected.password),
        );
        if sess {
            ha1 = digest_hex(base, &format!("{ha1}:{nonce}:{cnonce}"));
        }
        let ha2 = digest_hex(base, &format!("{}:{}", self.method, self.uri));
        match self.qop {
            Some(qop) if qop.eq_ignore_ascii_case("auth") => Ok(digest_hex(
                base,
                &format!("{ha1}:{nonce}:{}:{cnonce}:{qop}:{ha2}", self.nc),
            )),
            None => Ok(digest_hex(base, &format!("{ha1}:{nonce}:{ha2}"))),
            Some(qop) => Err(format!("unsupported Digest qop {qop:?}")),
        }
    }
}

/// Checks Basic credentials `rest` (base64 of `user:password`), compared in constant time.
fn check_basic(expected: &Credentials, rest: &str) -> Result<(), Denied> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| Denied::because("Basic credentials are not base64".into()))?;
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    let user_ok = user.as_bytes().ct_eq(expected.username.as_bytes());
    let password_ok = password.as_bytes().ct_eq(expected.password.as_bytes());
    match bool::from(user_ok & password_ok) {
        true => Ok(()),
        false => Err(Denied::because(format!(
            "Basic: wrong user name or password for user {user:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            password: "Circle of Life".into(),
        }
    }

    /// What a client computes for a challenge (RFC 7616 §3.4.1).
    fn digest_header(auth: &Authenticator, algorithm: &str, password: &str, now: u64) -> String {
        let nonce = auth.nonce(now);
        let (cnonce, nc, uri) = (
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "00000001",
            "/cgi-bin/NotifyEvent",
        );
        let base = algorithm.trim_end_matches("-sess");
        let mut ha1 = digest_hex(base, &format!("Mufasa:{REALM}:{password}"));
        if algorithm.ends_with("-sess") {
            ha1 = digest_hex(base, &format!("{ha1}:{nonce}:{cnonce}"));
        }
        let ha2 = digest_hex(base, &format!("POST:{uri}"));
        let response = digest_hex(base, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!("Digest username=\"Mufasa\", realm=\"{REALM}\", uri=\"{uri}\", algorithm={algorithm}, nonce=\"{nonce}\", nc={nc}, cnonce=\"{cnonce}\", qop=auth, response=\"{response}\"")
    }

    #[test]
    fn rfc_7616_md5_and_sha256_vectors_hash_as_published() {
        // RFC 7616 §3.9.1: the same exchange with MD5 and SHA-256.
        let ha1 = digest_hex("MD5", "Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = digest_hex("MD5", "GET:/dir/index.html");
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        assert_eq!(
            digest_hex(
                "MD5",
                &format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            ),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let ha1 = digest_hex("SHA-256", "Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = digest_hex("SHA-256", "GET:/dir/index.html");
        assert_eq!(
            digest_hex(
                "SHA-256",
                &format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn digest_and_basic_are_accepted_and_wrong_passwords_refused() {
        let auth = Authenticator::new();
        let now = 1_700_000_000;
        for algorithm in ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"] {
            let good = digest_header(&auth, algorithm, "Circle of Life", now);
            assert_eq!(
                auth.check(
                    &creds(),
                    Some(&good),
                    "POST",
                    "/cgi-bin/NotifyEvent",
                    now + 10
                ),
                Ok(()),
                "{algorithm}"
            );
            let bad = digest_header(&auth, algorithm, "wrong", now);
            assert!(auth
                .check(&creds(), Some(&bad), "POST", "/cgi-bin/NotifyEvent", now)
                .is_err());
            // the method is part of the digest
            assert!(auth
                .check(&creds(), Some(&good), "GET", "/cgi-bin/NotifyEvent", now)
                .is_err());
        }
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("Mufasa:Circle of Life")
        );
        assert_eq!(auth.check(&creds(), Some(&basic), "POST", "/", now), Ok(()));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("Mufasa:x")
        );
        assert!(auth
            .check(&creds(), Some(&basic), "POST", "/", now)
            .is_err());
        assert!(auth.check(&creds(), None, "POST", "/", now).is_err());
        assert!(auth
            .check(&creds(), Some("Bearer x"), "POST", "/", now)
            .is_err());
    }

    #[test]
    fn expired_nonces_are_stale_and_forged_ones_unknown() {
        let auth = Authenticator::new();
        let now = 1_700_000_000;
        let old = digest_header(&auth, "SHA-256", "Circle of Life", now);
        let denied = auth
            .check(
                &creds(),
                Some(&old),
                "POST",
                "/cgi-bin/NotifyEvent",
                now + NONCE_LIFETIME_S + 1,
            )
            .unwrap_err();
        assert!(denied.stale, "{denied:?}");
        let other = Authenticator::new();
        let forged = digest_header(&other, "SHA-256", "Circle of Life", now);
        let denied = auth
            .check(&creds(), Some(&forged), "POST", "/cgi-bin/NotifyEvent", now)
            .unwrap_err();
        assert!(
            !denied.stale && denied.reason.contains("unknown nonce"),
            "{denied:?}"
        );
    }

    #[test]
    fn auth_params_unquote() {
        let p = auth_params(r#"username="a\"b", qop=auth, nc=00000001 , uri="/x,y""#);
        assert_eq!(p[0], ("username".into(), "a\"b".into()));
        assert_eq!(p[1], ("qop".into(), "auth".into()));
        assert_eq!(p[2], ("nc".into(), "00000001".into()));
        assert_eq!(p[3], ("uri".into(), "/x,y".into()));
    }
}
