//! What to inject and what was injected: the [`Faults`] configuration, the shared [`Control`]
//! handle tests flip at run time, its [`Counts`], and the seeded per-request decisions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// Which engine answers: the injected bodies and headers mimic it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// Which requests the per-request faults (reject, drop, slow) apply to. Per-item faults always
/// apply to `_bulk` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultScope {
    /// Every request.
    #[default]
    All,
    /// `_bulk` requests only (cluster, alias and search requests pass untouched).
    Bulk,
}

/// Fault rates (probabilities in `0.0..=1.0`, clamped) and bounds. `Faults::default()` injects
/// nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Per `_bulk` item: answered 429 (the engine's write pool rejecting it) and not sent on.
    pub item_429: f64,
    /// Per `_bulk` item: answered 503 (primary shard not active) and not sent on.
    pub item_503: f64,
    /// Per request: the connection is closed without an answer before the engine sees it.
    pub drop_before: f64,
    /// Per request: the engine handles it, then the connection is closed without an answer
    /// (the client cannot know whether it was applied).
    pub drop_after: f64,
    /// Per request: the answer is held back for between half of and all of `slow_max`.
    pub slow: f64,
    pub slow_max: Duration,
    /// Per request: answered 429 as a whole without forwarding.
    pub reject_429: f64,
    /// Per request: answered 503 as a whole without forwarding.
    pub reject_503: f64,
    pub scope: FaultScope,
    /// At most this many faults in total (then everything passes); `None`: no limit.
    pub budget: Option<u64>,
}

impl Faults {
    /// Nothing injected.
    pub fn none() -> Faults {
        Faults::default()
    }

    fn clamped(mut self) -> Faults {
        for p in [
            &mut self.item_429,
            &mut self.item_503,
            &mut self.drop_before,
            &mut self.drop_after,
            &mut self.slow,
            &mut self.reject_429,
            &mut self.reject_503,
        ] {
            *p = if p.is_finite() { p.clamp(0.0, 1.0) } else { 0.0 };
        }
        // A held-back answer longer than a minute is a hang, not a slow engine.
        self.slow_max = self.slow_max.min(Duration::from_secs(60));
        self
    }

    pub(crate) fn has_item_faults(&self) -> bool {
        self.item_429 > 0.0 || self.item_503 > 0.0
    }
}

/// What the proxy did, as counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests received (whatever happened to them).
    pub requests: u64,
    /// Requests sent on to the engine.
    pub forwarded: u64,
    pub bulk_requests: u64,
    /// `_bulk` items seen (actions, not lines).
    pub bulk_items: u64,
    pub item_429: u64,
    pub item_503: u64,
    pub drop_before: u64,
    pub drop_after: u64,
    pub slowed: u64,
    /// Total delay added by slow answers.
    pub slow_ms: u64,
    pub reject_429: u64,
    pub reject_503: u64,
    /// Times the engine was put down (connections refused until it is up again).
    pub down_periods: u64,
    /// Connections cut because the engine went down while they were open.
    pub cut_connections: u64,
    /// The engine could not be reached or answered with something unreadable (502 sent).
    pub upstream_errors: u64,
}

impl Counts {
    /// Faults injected, all kinds together (not counting down periods).
    pub fn faults(&self) -> u64 {
        self.item_429
            + self.item_503
            + self.drop_before
            + self.drop_after
            + self.slowed
            + self.reject_429
            + self.reject_503
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} forwarded={} bulk_requests={} bulk_items={} item_429={} item_503={} drop_before={} \
             drop_after={} slowed={} slow_ms={} reject_429={} reject_503={} down_periods={} cut_connections={} \
             upstream_errors={}",
            self.requests,
            self.forwarded,
            self.bulk_requests,
            self.bulk_items,
            self.item_429,
            self.item_503,
            self.drop_before,
            self.drop_after,
            self.slowed,
            self.slow_ms,
            self.reject_429,
            self.reject_503,
            self.down_periods,
            self.cut_connections,
            self.upstream_errors
        )
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bulk_items: AtomicU64,
    pub item_429: AtomicU64,
    pub item_503: AtomicU64,
    pub drop_before: AtomicU64,
    pub drop_after: AtomicU64,
    pub slowed: AtomicU64,
    pub slow_ms: AtomicU64,
    pub reject_429: AtomicU64,
    pub reject_503: AtomicU64,
    pub down_periods: AtomicU64,
    pub cut_connections: AtomicU64,
    pub upstream_errors: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The handle shared by the proxy and whoever drives it (`Arc<Control>`): set faults, put the
/// engine down and up, read the counts. Every setter takes effect for the next request.
pub struct Control {
    seed: u64,
    seq: AtomicU64,
    faults: Mutex<Faults>,
    /// Faults left in the current budget (`u64::MAX` when unbounded).
    budget: AtomicU64,
    down: watch::Sender<bool>,
    pub(crate) counters: Counters,
    pub(crate) flavor: OnceLock<Flavor>,
    pub(crate) closed: AtomicBool,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("seed", &self.seed)
            .field("faults", &self.faults())
            .field("down", &self.is_down())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Control {
    pub(crate) fn new(seed: u64, flavor: Option<Flavor>) -> Control {
        let (down, _) = watch::channel(false);
        let c = Control {
            seed,
            seq: AtomicU64::new(0),
            faults: Mutex::new(Faults::none()),
            budget: AtomicU64::new(u64::MAX),
            down,
            counters: Counters::default(),
            flavor: OnceLock::new(),
            closed: AtomicBool::new(false),
        };
        if let Some(f) = flavor {
            let _ = c.flavor.set(f);
        }
        c
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces the fault configuration (and restarts its budget).
    pub fn set_faults(&self, faults: Faults) {
        let faults = faults.clamped();
        self.budget.store(faults.budget.unwrap_or(u64::MAX), Ordering::SeqCst);
        if let Ok(mut f) = self.faults.lock() {
            *f = faults;
        }
    }

    /// No more faults (requests in flight finish as decided).
    pub fn clear_faults(&self) {
        self.set_faults(Faults::none());
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Down: the listening socket is closed (new connections are refused) and open connections
    /// are cut, as when the engine's process stops. Up: it listens again on the same port.
    pub fn set_down(&self, down: bool) {
        let changed = self.down.send_if_modified(|d| {
            let changed = *d != down;
            *d = down;
            changed
        });
        if changed && down {
            bump(&self.counters.down_periods, 1);
        }
    }

    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    pub(crate) fn watch_down(&self) -> watch::Receiver<bool> {
        self.down.subscribe()
    }

    /// The engine the proxy is in front of, once known.
    pub fn flavor(&self) -> Option<Flavor> {
        self.flavor.get().copied()
    }

    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            requests: l(&c.requests),
            forwarded: l(&c.forwarded),
            bulk_requests: l(&c.bulk_requests),
            bulk_items: l(&c.bulk_items),
            item_429: l(&c.item_429),
            item_503: l(&c.item_503),
            drop_before: l(&c.drop_before),
            drop_after: l(&c.drop_after),
            slowed: l(&c.slowed),
            slow_ms: l(&c.slow_ms),
            reject_429: l(&c.reject_429),
            reject_503: l(&c.reject_503),
            down_periods: l(&c.down_periods),
            cut_connections: l(&c.cut_connections),
            upstream_errors: l(&c.upstream_errors),
        }
    }

    /// Takes one fault from the budget; `false` when it is spent.
    pub(crate) fn take_budget(&self) -> bool {
        self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1)).is_ok()
    }

    /// Gives back budget taken for faults that were then not injected.
    pub(crate) fn give_back(&self, n: u64) {
        if n > 0 {
            let _ = self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                if b == u64::MAX { None } else { Some(b.saturating_add(n)) }
            });
        }
    }

    /// The decisions for the next request: a pure function of the seed, the request's number
    /// and the faults in force.
    pub(crate) fn decide(&self, is_bulk: bool) -> Decision {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let faults = self.faults();
        Decision::new(self.seed, n, &faults, is_bulk)
    }
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub reject: Option<u16>,
    pub drop_before: bool,
    pub drop_after: bool,
    pub delay: Option<Duration>,
    /// The item faults to draw from, with their own stream of randomness.
    pub items: Option<ItemFaults>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemFaults {
    pub p429: f64,
    pub p503: f64,
    pub rng: Rng,
}

impl ItemFaults {
    /// The status to inject for the next item, if any.
    pub fn next(&mut self) -> Option<u16> {
        let u = self.rng.unit();
        if u < self.p429 {
            Some(429)
        } else if u < self.p429 + self.p503 {
            Some(503)
        } else {
            None
        }
    }
}

impl Decision {
    pub(crate) fn new(seed: u64, n: u64, f: &Faults, is_bulk: bool) -> Decision {
        let mut rng = Rng::new(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Always draw the same number of values, so one rate does not shift the others.
        let (u_reject, u_before, u_after, u_slow, u_delay) =
            (rng.unit(), rng.unit(), rng.unit(), rng.unit(), rng.unit());
        let item_rng = Rng::new(rng.next_u64());
        let applies = is_bulk || f.scope == FaultScope::All;
        let reject = if !applies {
            None
        } else if u_reject < f.reject_429 {
            Some(429)
        } else if u_reject < f.reject_429 + f.reject_503 {
            Some(503)
        } else {
            None
        };
        let delay = (applies && u_slow < f.slow && !f.slow_max.is_zero())
            .then(|| f.slow_max.mul_f64(0.5).saturating_add(f.slow_max.mul_f64(0.5 * u_delay)));
        Decision {
            reject,
            drop_before: applies && u_before < f.drop_before,
            drop_after: applies && u_after < f.drop_after,
            delay,
            items: (is_bulk && f.has_item_faults()).then_some(ItemFaults {
                p429: f.item_429,
                p503: f.item_503,
                rng: item_rng,
            }),
        }
    }
}

/// SplitMix64: seeded, small, and the same on every platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_a_function_of_seed_and_request_number() {
        let f = Faults {
            item_429: 0.2,
            drop_before: 0.1,
            drop_after: 0.1,
            slow: 0.3,
            slow_max: Duration::from_millis(100),
            reject_503: 0.1,
            ..Faults::default()
        };
        let a: Vec<Decision> = (0..200).map(|n| Decision::new(7, n, &f, true)).collect();
        let b: Vec<Decision> = (0..200).map(|n| Decision::new(7, n, &f, true)).collect();
        assert_eq!(a, b);
        let c: Vec<Decision> = (0..200).map(|n| Decision::new(8, n, &f, true)).collect();
        assert_ne!(a, c, "another seed, other decisions");
        let drops = a.iter().filter(|d| d.drop_before).count();
        assert!((5..40).contains(&drops), "about 10% of 200: {drops}");
        for d in &a {
            if let Some(delay) = d.delay {
                assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100), "{delay:?}");
            }
        }
    }

    #[test]
    fn nothing_by_default_and_scope_limits_request_faults() {
        assert!((0..1000).all(|n| {
            let d = Decision::new(1, n, &Faults::none(), true);
            d.reject.is_none() && !d.drop_before && !d.drop_after && d.delay.is_none() && d.items.is_none()
        }));
        let f = Faults { reject_429: 1.0, scope: FaultScope::Bulk, ..Faults::default() };
        assert_eq!(Decision::new(1, 0, &f, false).reject, None);
        assert_eq!(Decision::new(1, 0, &f, true).reject, Some(429));
    }

    #[test]
    fn rates_are_clamped_and_budget_is_bounded() {
        let c = Control::new(1, None);
        c.set_faults(Faults { item_429: 7.0, reject_503: f64::NAN, budget: Some(2), ..Faults::default() });
        assert_eq!(c.faults().item_429, 1.0);
        assert_eq!(c.faults().reject_503, 0.0);
        assert!(c.take_budget() && c.take_budget());
        assert!(!c.take_budget(), "budget spent");
        c.give_back(1);
        assert!(c.take_budget());
        c.clear_faults();
        assert!((0..10).all(|_| c.take_budget()), "no budget: unbounded");
    }

    #[test]
    fn down_periods_count_transitions() {
        let c = Control::new(1, None);
        c.set_down(true);
        c.set_down(true);
        c.set_down(false);
        c.set_down(true);
        assert_eq!(c.counts().down_periods, 2);
        assert!(c.is_down());
    }
}
