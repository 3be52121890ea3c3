//! Webhook delivery: one signed POST per attempt. 2xx is delivered; any other status, a
//! timeout or a dropped connection is a failed attempt (retried later by the caller).

use std::time::Duration;

use super::Secret;
use super::display_target;

pub(crate) struct Webhook {
    agent: ureq::Agent,
    url: String,
}

impl Webhook {
    pub(crate) fn new(url: &str, timeout: Duration) -> Webhook {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("meterline/", env!("CARGO_PKG_VERSION")));
        if url.starts_with("http://") {
            // Plain http goes only to this machine (checked in plans.toml): never via a proxy.
            config = config.proxy(None);
        }
        Webhook {
            agent: ureq::Agent::new_with_config(config.build()),
            url: url.to_string(),
        }
    }

    /// One attempt. The error names the status or the transport failure, never the URL's
    /// path (it may hold a token) nor the secret.
    pub(crate) fn send(&self, alert_id: &str, body: &str, secret: &Secret) -> Result<(), String> {
        let t = chrono::Utc::now().timestamp();
        let result = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Meterline-Alert-Id", alert_id)
            .header("Meterline-Signature", secret.signature(t, body))
            .send(body.as_bytes());
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read (a little of) the answer so a keep-alive connection can be reused.
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(4 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    let snippet: String = text.trim().chars().take(200).collect();
                    Err(
                        format!("HTTP {status} {}", crate::sanitize::sanitize(&snippet))
                            .trim_end()
                            .to_string(),
                    )
                }
            }
            Err(e) => {
                let shown = display_target(&format!("webhook {}", self.url));
                let message = e.to_string().replace(&self.url, &shown);
                Err(crate::sanitize::sanitize(&message).into_owned())
            }
        }
    }
}
