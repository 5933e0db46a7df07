//! Client emails over SMTP (lettre on tokio with rustls): the text, and the payload as
//! `update.json`. The server URL is a secret reference because it carries the
//! credentials; it is read only to send and never printed, and no error here repeats it.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::manifest::SmtpSpec;

/// Why an email was not sent, and whether trying again can help.
#[derive(Debug)]
pub struct SendError {
    pub retry: bool,
    pub reason: String,
}

fn permanent(reason: impl Into<String>) -> SendError {
    SendError {
        retry: false,
        reason: reason.into(),
    }
}

/// The transport for `smtps://` (TLS from the start), `smtp://` (STARTTLS required) or
/// `smtp://` to a loopback address (plain: nothing leaves the machine).
fn transport(
    url: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let url = reqwest::Url::parse(url).map_err(|_| {
        permanent("spec.notify.smtp.server is not a URL like smtps://user:pass@host:465")
    })?;
    let host = url
        .host_str()
        .ok_or_else(|| permanent("spec.notify.smtp.server has no host"))?
        .to_owned();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let tls = |e: lettre::transport::smtp::Error| permanent(format!("SMTP TLS setup failed: {e}"));
    let mut builder = match url.scheme() {
        "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(tls)?,
        "smtp" if loopback => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        "smtp" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host).map_err(tls)?,
        other => {
            return Err(permanent(format!(
                "spec.notify.smtp.server: scheme `{other}` is not smtp or smtps"
            )));
        }
    };
    if let Some(port) = url.port() {
        builder = builder.port(port);
    }
    if !url.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        builder = builder.credentials(Credentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ));
    }
    Ok(builder.timeout(Some(timeout)).build())
}

/// Send one email to `to` through the fleet's server: the text as a plain-text body, and
/// the webhook payload (with the plan's summary) attached as `update.json` for tools.
pub async fn send(
    smtp: &SmtpSpec,
    to: &[String],
    subject: &str,
    body: &str,
    payload: &serde_json::Value,
    timeout: Duration,
) -> Result<(), SendError> {
    let url = smtp
        .server
        .resolve()
        .map_err(|e| permanent(e.to_string()))?;
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|_| permanent("spec.notify.smtp.from is not a mail sender"))?;
    let mut message = lettre::Message::builder().from(from).subject(subject);
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|_| permanent(format!("`{address}` is not an email address")))?;
        message = message.to(mailbox);
    }
    let json = ContentType::parse("application/json")
        .map_err(|e| permanent(format!("the email could not be built: {e}")))?;
    let parts = MultiPart::mixed()
        .singlepart(SinglePart::plain(body.to_owned()))
        .singlepart(Attachment::new("update.json".to_owned()).body(payload.to_string(), json));
    let message = message
        .multipart(parts)
        .map_err(|e| permanent(format!("the email could not be built: {e}")))?;
    transport(url.expose(), timeout)?
        .send(message)
        .await
        .map(drop)
        .map_err(|e| SendError {
            retry: !e.is_permanent(),
            reason: format!("SMTP: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_and_smtps_urls_make_transports_and_a_bad_one_does_not_echo_its_credentials() {
        assert!(transport("smtp://u:p@127.0.0.1:2525", Duration::from_secs(1)).is_ok());
        assert!(transport("smtp://u:p@mail.example.com:587", Duration::from_secs(1)).is_ok());
        assert!(transport("smtps://u:p@mail.example.com", Duration::from_secs(1)).is_ok());
        match transport(
            "ftp://user:hunter2@mail.example.com",
            Duration::from_secs(1),
        ) {
            Ok(_) => panic!("ftp:// is not a mail server"),
            Err(err) => assert!(!err.reason.contains("hunter2"), "{}", err.reason),
        }
    }
}
