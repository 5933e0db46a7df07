//! The process-wide Vercel rate limiter: every request of every client waits here for its
//! endpoint's window, as Vercel's `X-RateLimit-*` headers describe it, so a pass spends
//! the budget Vercel announces instead of collecting 429s.
//!
//! Vercel counts requests per endpoint and scope in fixed windows: a response says how
//! many the window allows (`X-RateLimit-Limit`), how many are left (`-Remaining`) and when
//! it ends (`-Reset`, epoch seconds). The limiter keeps that count per bucket, takes one
//! from it before each request, and corrects it by every answer (the server's count also
//! holds other processes on the same token). A rolling-rate limiter such as `governor`
//! paces a constant rate it is configured with; here the window, its size and what is
//! left of it come from the server, so the bucket is the server's own count.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use tokio::sync::Notify;

/// Headers carry whole seconds: wait this much past the announced reset so a window
/// that ends within that second has surely ended.
const RESET_MARGIN: Duration = Duration::from_millis(100);

/// The one limiter of this process.
pub(crate) static LIMITER: LazyLock<Limiter> = LazyLock::new(Limiter::default);

/// One endpoint's window, per API base and team: what a bucket is counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    pub base: String,
    pub team: Option<String>,
    /// `METHOD /vN/route/{id}`: ids replaced, so every project shares its endpoint's count.
    pub endpoint: String,
}

impl BucketKey {
    pub fn new(base: &str, team: Option<&str>, method: &str, path: &str) -> Self {
        BucketKey {
            base: base.to_owned(),
            team: team.map(str::to_owned),
            endpoint: format!("{method} {}", route(path)),
        }
    }
}

/// A path with its ids replaced: `/v9/projects/prj_1/env` → `/v9/projects/{id}/env`.
/// Anything after a known collection name is an id or a name chosen by the user.
pub fn route(path: &str) -> String {
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.trim_matches('/').split('/') {
        let is_id = matches!(
            previous,
            "projects" | "deployments" | "env" | "promote" | "rollback"
        ) && !matches!(segment, "env" | "promote" | "rollback" | "deployments");
        out.push(if is_id { "{id}" } else { segment });
        previous = segment;
    }
    format!("/{}", out.join("/"))
}

/// What the server last said about a bucket's window.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Requests the window allows; `None` until an answer said so.
    limit: Option<u32>,
    /// Requests left in the window, after those sent and not yet answered.
    remaining: u32,
    /// The window's end as announced (epoch seconds), and when that is here.
    reset_epoch: u64,
    reset_at: Option<Instant>,
    /// Whether any answer came back yet (a bucket without headers is not limited).
    answered: bool,
    /// Whether `remaining` counted this window from its start (the window rolled here),
    /// so it is exact for this process's own requests.
    counted: bool,
    in_flight: u32,
}

/// Why a request may not be sent before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub endpoint: String,
    pub limit: Option<u32>,
    /// When the window resets, as the server announced it.
    pub resets_at: SystemTime,
}

/// A request being waited for: which endpoint, for whom, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub endpoint: String,
    pub until: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    /// Wakes requests that wait for an answer (the first of a bucket, or a new window's).
    answered: Notify,
    /// Requests waiting on a window now, by waiter label (the client's name).
    waiting: Mutex<BTreeMap<String, Waiting>>,
    /// Requests that waited on a window, in total, and how many gave up.
    waits: Mutex<(u64, u64)>,
}

/// A request's place in its window, held from the limiter's yes to its answer.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    limiter: &'a Limiter,
    key: &'a BucketKey,
    reported: bool,
}

impl Ticket<'_> {
    /// The request was answered: `window` is what the answer's headers said, if anything.
    pub fn answered(mut self, window: Option<Window>, rate_limited: bool) {
        self.reported = true;
        self.limiter.answered(self.key, window, rate_limited);
    }
}

impl Drop for Ticket<'_> {
    /// No answer (a transport error, or the call was dropped): the place is given back.
    fn drop(&mut self) {
        if !self.reported {
            self.limiter.answered(self.key, None, false);
        }
    }
}

enum Decision {
    Go,
    /// Wait for the window to reset at this instant.
    Sleep(Instant, SystemTime),
    /// Wait for an answer in flight to tell what the window is.
    Listen,
}

impl Bucket {
    fn decide(&mut self, now: Instant) -> Decision {
        if self.reset_at.is_some_and(|at| now >= at) {
            // The window ended: the next one starts full, less the requests still in
            // flight (they may land in it), and the first answer says when it ends.
            // Without a known limit, one request at a time finds it out again.
            self.remaining = self
                .limit
                .unwrap_or(1)
                .saturating_sub(self.in_flight)
                .max(1);
            self.reset_at = None;
            self.answered = self.limit.is_some();
            self.counted = self.answered;
        }
        if !self.answered {
            // Until the first answer, one request at a time learns the limit.
            if self.in_flight > 0 {
                return Decision::Listen;
            }
        } else if self.limit.is_some() || self.reset_at.is_some() {
            if self.remaining == 0 {
                return match self.reset_at {
                    Some(at) => Decision::Sleep(at, epoch(self.reset_epoch)),
                    None => Decision::Listen,
                };
            }
            self.remaining -= 1;
        }
        self.in_flight += 1;
        Decision::Go
    }

    fn learn(&mut self, window: Option<Window>, rate_limited: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.answered = true;
        let Some(window) = window else {
            // No answer to learn from: let one request find out what the window is now.
            if self.reset_at.is_none() && self.in_flight == 0 && self.remaining == 0 {
                self.remaining = 1;
            }
            return;
        };
        if window.limit.is_some() {
            self.limit = window.limit;
        }
        if window.reset_epoch < self.reset_epoch && !rate_limited {
            return; // an answer from a window that has already ended
        }
        let newer = window.reset_epoch > self.reset_epoch || self.reset_at.is_none();
        let rolled_here = self.reset_at.is_none() && self.counted;
        if newer || rate_limited {
            // A 429 only ever moves the reset later.
            self.reset_epoch = self.reset_epoch.max(window.reset_epoch);
            self.reset_at = Some(
                self.reset_at
                    .map_or(window.reset_at, |at| at.max(window.reset_at)),
            );
        }
        // The server's count also holds other processes' requests, but not those of ours
        // it has not seen yet (at most the ones in flight); our own count is exact for
        // ours. So ours stands unless the server says less is left, which means someone
        // else spends this window too.
        let told = window.remaining.saturating_sub(self.in_flight);
        self.remaining = if rate_limited {
            0
        } else if newer && !rolled_here {
            self.counted = false;
            told
        } else if !self.counted || window.remaining < self.remaining {
            self.remaining.min(told)
        } else {
            self.remaining
        };
    }
}

/// A window as one answer describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    limit: Option<u32>,
    remaining: u32,
    reset_epoch: u64,
    reset_at: Instant,
}

impl Window {
    /// The `X-RateLimit-*` headers of an answer, and a 429's `Retry-After`, which moves
    /// the reset later when it says so (and stands alone when the others are missing).
    pub fn from_headers(headers: &HeaderMap, retry_after: Option<Duration>) -> Option<Window> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let now = SystemTime::now();
        let now_epoch = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // The announced reset, in whole seconds; and `Retry-After`, counted from now.
        let announced = number("x-ratelimit-reset").map(|reset| {
            let until = epoch(reset).duration_since(now).unwrap_or(Duration::ZERO);
            (reset, Instant::now() + until + RESET_MARGIN)
        });
        let asked =
            retry_after.map(|after| (now_epoch + after.as_secs().max(1), Instant::now() + after));
        let (reset_epoch, reset_at) = match (announced, asked) {
            (Some(a), Some(b)) => (a.0.max(b.0), a.1.max(b.1)),
            (a, b) => a.or(b)?,
        };
        let remaining = match number("x-ratelimit-remaining") {
            Some(remaining) => clamp(remaining),
            None if retry_after.is_some() => 0,
            None => return None,
        };
        Some(Window {
            limit: number("x-ratelimit-limit").map(clamp),
            remaining,
            reset_epoch,
            reset_at,
        })
    }
}

fn epoch(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

impl Limiter {
    fn bucket<T>(&self, key: &BucketKey, with: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        with(buckets.entry(key.clone()).or_default())
    }

    /// Wait until `key`'s window has room for one request, or fail at once when it will
    /// not have room before `deadline`. `label` names the waiter in [`waiting`]. The
    /// ticket reports the answer; dropped unreported, it counts as no answer.
    pub async fn acquire<'a>(
        &'a self,
        key: &'a BucketKey,
        deadline: Instant,
        label: Option<&str>,
    ) -> Result<Ticket<'a>, Exhausted> {
        let mut waited = false;
        let result = loop {
            let listening = self.answered.notified();
            tokio::pin!(listening);
            listening.as_mut().enable();
            match self.bucket(key, |b| b.decide(Instant::now())) {
                Decision::Go => {
                    break Ok(Ticket {
                        limiter: self,
                        key,
                        reported: false,
                    });
                }
                Decision::Sleep(at, resets_at) => {
                    if at > deadline {
                        break Err(Exhausted {
                            endpoint: key.endpoint.clone(),
                            limit: self.bucket(key, |b| b.limit),
                            resets_at,
                        });
                    }
                    waited = true;
                    self.mark_waiting(label, &key.endpoint, resets_at);
                    tokio::time::sleep_until(at.into()).await;
                }
                Decision::Listen => {
                    let until = deadline.max(Instant::now());
                    if tokio::time::timeout_at(until.into(), listening)
                        .await
                        .is_err()
                    {
                        let (limit, reset) = self.bucket(key, |b| (b.limit, b.reset_epoch));
                        break Err(Exhausted {
                            endpoint: key.endpoint.clone(),
                            limit,
                            resets_at: epoch(reset),
                        });
                    }
                }
            }
        };
        if let Some(label) = label {
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(label);
        }
        if waited || result.is_err() {
            let mut waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
            waits.0 += u64::from(waited);
            waits.1 += u64::from(result.is_err());
        }
        result
    }

    fn mark_waiting(&self, label: Option<&str>, endpoint: &str, until: SystemTime) {
        if let Some(label) = label {
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    label.to_owned(),
                    Waiting {
                        endpoint: endpoint.to_owned(),
                        until,
                    },
                );
        }
    }

    fn answered(&self, key: &BucketKey, window: Option<Window>, rate_limited: bool) {
        self.bucket(key, |b| b.learn(window, rate_limited));
        self.answered.notify_waiters();
    }

    /// What a bucket last announced: its limit and when its window resets.
    pub fn snapshot(&self, key: &BucketKey) -> (Option<u32>, SystemTime) {
        self.bucket(key, |b| (b.limit, epoch(b.reset_epoch)))
    }

    /// A call that gave up on a window after spending its attempts on 429s.
    pub fn gave_up(&self) {
        self.waits.lock().unwrap_or_else(PoisonError::into_inner).1 += 1;
    }

    pub fn waiting(&self) -> BTreeMap<String, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn waits(&self) -> (u64, u64) {
        *self.waits.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Clients waiting on a Vercel rate-limit window right now, by the name each request was
/// labelled with (see `VercelClient::for_client`).
pub fn waiting() -> BTreeMap<String, Waiting> {
    LIMITER.waiting()
}

/// Requests that waited on a window so far in this process, and calls that gave up on
/// one (it would not reset within their budget, or their attempts all met 429s).
pub fn waits() -> (u64, u64) {
    LIMITER.waits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: u32, remaining: u32, reset_epoch: u64, in_ms: u64) -> Option<Window> {
        Some(Window {
            limit: Some(limit),
            remaining,
            reset_epoch,
            reset_at: Instant::now() + Duration::from_millis(in_ms),
        })
    }

    #[test]
    fn routes_replace_ids_and_keep_collection_names() {
        assert_eq!(route("/v9/projects/prj_1"), "/v9/projects/{id}");
        assert_eq!(
            route("/v10/projects/shop-web/env"),
            "/v10/projects/{id}/env"
        );
        assert_eq!(
            route("/v9/projects/p/env/env_9"),
            "/v9/projects/{id}/env/{id}"
        );
        assert_eq!(
            route("/v10/projects/p/promote/dpl_2"),
            "/v10/projects/{id}/promote/{id}"
        );
        assert_eq!(route("/v13/deployments/dpl_3"), "/v13/deployments/{id}");
        assert_eq!(route("/v6/deployments"), "/v6/deployments");
    }

    #[test]
    fn the_first_request_of_a_bucket_goes_alone_until_its_answer_tells_the_limit() {
        let mut bucket = Bucket::default();
        let now = Instant::now();
        assert!(matches!(bucket.decide(now), Decision::Go));
        assert!(matches!(bucket.decide(now), Decision::Listen));
        bucket.learn(window(3, 2, 100, 60_000), false);
        assert!(matches!(bucket.decide(now), Decision::Go));
        assert!(matches!(bucket.decide(now), Decision::Go));
        assert!(matches!(bucket.decide(now), Decision::Sleep(..)));
    }

    #[test]
    fn answers_count_requests_still_in_flight_against_what_the_server_says_is_left() {
        let mut bucket = Bucket::default();
        let now = Instant::now();
        assert!(matches!(bucket.decide(now), Decision::Go));
        bucket.learn(window(10, 9, 100, 60_000), false);
        for _ in 0..4 {
            assert!(matches!(bucket.decide(now), Decision::Go));
        }
        // The server answered the first of the four having seen 3 requests of someone
        // else's: 9 - 1 - 3 = 5 left, of which the other 3 of ours are in flight.
        bucket.learn(window(10, 5, 100, 60_000), false);
        assert_eq!(bucket.remaining, 2);
    }

    #[test]
    fn a_window_that_ended_starts_full_and_a_429_empties_the_window_until_its_reset() {
        let mut bucket = Bucket::default();
        let now = Instant::now();
        assert!(matches!(bucket.decide(now), Decision::Go));
        bucket.learn(window(2, 0, 100, 0), false);
        assert!(matches!(
            bucket.decide(now + Duration::from_millis(1)),
            Decision::Go
        ));
        bucket.learn(window(2, 1, 101, 60_000), true);
        assert_eq!(bucket.remaining, 0);
        assert!(matches!(bucket.decide(now), Decision::Sleep(..)));
    }

    #[test]
    fn an_answer_from_a_window_that_already_ended_changes_nothing() {
        let mut bucket = Bucket::default();
        let now = Instant::now();
        assert!(matches!(bucket.decide(now), Decision::Go));
        bucket.learn(window(5, 4, 200, 60_000), false);
        assert!(matches!(bucket.decide(now), Decision::Go));
        bucket.learn(window(5, 0, 100, 0), false);
        assert_eq!(bucket.remaining, 3);
    }
}
