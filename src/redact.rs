//! Text safe to print: credentials taken out of URIs, however malformed.

/// Query parameters whose values are secrets (lower-cased names; a name containing one of
/// these is masked): `tlsCertificateKeyFilePassword`, `authMechanismProperties` (which can hold
/// an AWS session token), an API key.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "secret",
    "token",
    "authmechanismproperties",
    "apikey",
    "api-key",
    "api_key",
];

/// `uri` with every credential-bearing part replaced by `***`, safe to print. The user
/// information is everything before the last `@` of what follows the scheme (a password may
/// hold `/`, `?`, `:` or `@` unescaped; masking too much is the safe side), and the values of
/// secret query parameters are masked too. Works on malformed input as well.
pub fn redact_uri(uri: &str) -> String {
    let (scheme, rest) = match uri.find("://") {
        Some(i) => uri.split_at(i + 3),
        None => ("", uri),
    };
    let (user_info, hosts) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = String::from(scheme);
    if let Some(info) = user_info {
        let user = info.split(':').next().unwrap_or("");
        // A user name cannot hold `/`: one that seems to is part of a password.
        let user = if user.contains(['/', '?']) {
            "***"
        } else {
            user
        };
        out.push_str(user);
        out.push_str(":***@");
    }
    match hosts.split_once('?') {
        None => out.push_str(hosts),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// The secrets `uri` carries: its password (and, since a password may hold unescaped
/// separators, each longer piece of it) and the values of secret query parameters.
fn secrets_of(uri: &str) -> Vec<String> {
    let rest = uri.find("://").map_or(uri, |i| &uri[i + 3..]);
    let mut out = Vec::new();
    if let Some(at) = rest.rfind('@') {
        let info = &rest[..at];
        let password = info.split_once(':').map_or(info, |(_, p)| p);
        out.push(password.to_owned());
        out.extend(
            password
                .split(['/', '?', ':', '@', '&', '=', ','])
                .filter(|p| p.len() >= 4)
                .map(str::to_owned),
        );
    }
    if let Some((_, query)) = rest.split_once('?') {
        for p in query.split('&') {
            if let Some((k, v)) = p.split_once('=')
                && is_secret(k)
                && !v.is_empty()
            {
                out.push(v.to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    // Longest first, so that a piece never leaves the rest of a longer secret behind.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` (a message that may quote `uri`, whole or in pieces) with `uri` redacted and every
/// secret it carries masked.
pub fn redact_in(text: &str, uri: &str) -> String {
    let mut text = if uri.is_empty() {
        text.to_owned()
    } else {
        text.replace(uri, &redact_uri(uri))
    };
    for secret in secrets_of(uri) {
        text = text.replace(&secret, "***");
    }
    text
}

/// `text` with every URI-looking word in it (`scheme://...`) redacted: for messages that quote
/// an address whose spelling is not known here.
pub fn redact_uris(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .map(|w| match w.find("://") {
            Some(at) => {
                let end = w.trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
                let start = w[..at]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
                    .map_or(0, |i| i + 1);
                format!(
                    "{}{}{}",
                    &w[..start],
                    redact_uri(&end[start..]),
                    &w[end.len()..]
                )
            }
            None => w.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://alice:s3cret@db:27017/x?authSource=admin"),
            "mongodb://alice:***@db:27017/x?authSource=admin"
        );
        assert_eq!(redact_uri("mongodb://db:27017"), "mongodb://db:27017");
        assert_eq!(
            redact_uri("mongodb+srv://u:p@a@cluster/x"),
            "mongodb+srv://u:***@cluster/x"
        );
    }

    #[test]
    fn hostile_uris_never_show_their_secrets() {
        for (uri, secret) in [
            ("mongodb://bob:pa/ss@db:27017/x", "pa/ss"),
            ("mongodb://bob:p?q=1@db/x", "p?q"),
            ("mongodb://bob:a:b:c@db", "a:b:c"),
            ("mongodb://b/ob:sec@db", "sec"),
            (
                "mongodb://db/x?tls=true&tlsCertificateKeyFilePassword=hunter2",
                "hunter2",
            ),
            (
                "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok123",
                "tok123",
            ),
            ("bob:plain@db:27017", "plain"),
            ("mongodb://bob:%2Fenc@db", "%2Fenc"),
            ("mongodb://:onlypass@db", "onlypass"),
        ] {
            let r = redact_uri(uri);
            assert!(!r.contains(secret), "{uri} -> {r}");
            assert!(r.contains("***"), "{uri} -> {r}");
            let said = redact_in(&format!("cannot parse {uri}: bad"), uri);
            assert!(!said.contains(secret), "{said}");
        }
        assert_eq!(redact_uri("http://127.0.0.1:6334"), "http://127.0.0.1:6334");
        let said = "Failed to connect to http://admin:pw123@q:6334/: tonic::transport::Error";
        let r = redact_uris(said);
        assert!(
            !r.contains("pw123") && r.contains("admin:***@q:6334"),
            "{r}"
        );
        assert_eq!(redact_uris("no address here"), "no address here");
    }
}
