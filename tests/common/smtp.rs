//! A tiny SMTP server on loopback for tests: EHLO/HELO, AUTH PLAIN/LOGIN (accepted and
//! remembered), MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT. Every message is stored with
//! its envelope so a test can assert what arrived.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent, dot-unstuffed.
    pub data: String,
}

impl Mail {
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }
}

pub struct SmtpServer {
    mails: Arc<Mutex<Vec<Mail>>>,
    auths: Arc<Mutex<Vec<String>>>,
    pub port: u16,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let auths: Arc<Mutex<Vec<String>>> = Arc::default();
        let (m, a) = (mails.clone(), auths.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (m, a) = (m.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = session(socket, m, a).await;
                });
            }
        });
        SmtpServer { mails, auths, port }
    }

    /// `smtp://user:pass@127.0.0.1:PORT`: the URL steward reads from its secret ref.
    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("smtp://{user}:{pass}@127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }

    /// The AUTH lines received (base64 as sent), to check credentials were used.
    pub fn auths(&self) -> Vec<String> {
        self.auths.lock().expect("lock").clone()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    auths: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-test\r\n250 AUTH PLAIN LOGIN\r\n"
        } else if upper.starts_with("HELO") {
            b"250 test\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            auths.lock().expect("lock").push(command.clone());
            b"235 ok\r\n"
        } else if upper.starts_with("AUTH LOGIN") {
            auths.lock().expect("lock").push(command.clone());
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            line.clear();
            lines.read_line(&mut line).await?;
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            line.clear();
            lines.read_line(&mut line).await?;
            b"235 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: command[10..].trim().to_owned(),
                ..Mail::default()
            };
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(command[8..].trim().to_owned());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                data.push_str(text.strip_prefix('.').unwrap_or(text));
                data.push('\n');
            }
            mail.data = data;
            mails.lock().expect("lock").push(std::mem::take(&mut mail));
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 ok\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}
