//! The mass-deletion guard, as rsync's `--max-delete`: a pass that would delete more than a
//! bounded share of a namespace's points deletes nothing and says why. Deletions come from
//! documents that lost their text (a template typo, a projection that drops the text field) and
//! from prune (a filter that matches nothing); both are counted together, before any is made.

use std::fmt;
use std::str::FromStr;

/// The most a pass may delete of a namespace's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDelete {
    /// A percentage of the namespace's points (100: no limit).
    Share(u32),
    /// A number of points.
    Count(u64),
}

impl MaxDelete {
    /// This limit for one of `shards`: a count is shared by the shards (rounded down, so that
    /// their sum never passes it: a shard may refuse what the whole would allow, never the
    /// reverse), a share holds for each shard's part as for the whole.
    pub fn per_shard(self, shards: u32) -> MaxDelete {
        match self {
            MaxDelete::Count(n) => MaxDelete::Count(n / u64::from(shards.max(1))),
            share => share,
        }
    }
}

impl Default for MaxDelete {
    fn default() -> Self {
        MaxDelete::Share(50)
    }
}

impl fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDelete::Share(p) => write!(f, "{p}%"),
            MaxDelete::Count(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for MaxDelete {
    type Err = String;

    /// `50%`, `100%` (or `all`), or a number of points such as `1000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a share or a count: use e.g. 50%, 100% or 1000");
        if s.eq_ignore_ascii_case("all") {
            return Ok(MaxDelete::Share(100));
        }
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= 100 => Ok(MaxDelete::Share(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxDelete::Count).map_err(|_| bad()),
        }
    }
}

/// Refused: the pass would delete too much.
#[derive(Debug, thiserror::Error)]
#[error(
    "{route}: refusing to delete {doomed} of its {total} points (more than --max-delete {limit}){why}; nothing was deleted. If the deletions are intended, rerun with --max-delete {allow}"
)]
pub struct MassDelete {
    pub route: String,
    pub doomed: u64,
    pub total: u64,
    pub limit: MaxDelete,
    pub why: String,
    pub allow: String,
}

/// What a pass is about to delete, and why.
#[derive(Debug, Clone, Copy)]
pub struct Doomed {
    /// Points of documents that lost their text.
    pub lost: u64,
    /// Points whose document is gone (prune).
    pub pruned: u64,
    /// The namespace's points in the target now.
    pub total: u64,
    /// Every document the pass read rendered no text.
    pub no_text_at_all: bool,
}

impl MaxDelete {
    /// Whether `doomed` deletions out of `total` stay within this limit.
    pub fn allows(&self, doomed: u64, total: u64) -> bool {
        match *self {
            MaxDelete::Share(p) => doomed * 100 <= total * u64::from(p),
            MaxDelete::Count(n) => doomed <= n,
        }
    }

    /// Refuse `d` on `route` unless it stays within this limit.
    pub fn check(&self, route: &str, d: &Doomed) -> Result<(), MassDelete> {
        let doomed = d.lost + d.pruned;
        if doomed == 0 || self.allows(doomed, d.total) {
            return Ok(());
        }
        let mut why = String::new();
        if d.lost > 0 {
            why.push_str(&format!(
                "; {} points belong to documents that now render no text",
                d.lost
            ));
            if d.no_text_at_all {
                why.push_str(
                    " (every document of the pass: check the --text template's field names and the --projection)",
                );
            }
        }
        if d.pruned > 0 {
            why.push_str(&format!(
                "; {} points belong to documents the pass did not find (deleted, or outside the --filter: check it)",
                d.pruned
            ));
        }
        let share = (doomed * 100).div_ceil(d.total.max(1)).min(100);
        Err(MassDelete {
            route: route.to_owned(),
            doomed,
            total: d.total,
            limit: *self,
            why,
            allow: format!("{share}%"),
        })
    }
}

/// `watch`'s share of the guard: the points it deleted because their documents now render no
/// text, summed per route (namespace, target, vector) against the route's points when the
/// first such deletion came (a pass counts those of one pass). Kept with the stream's position,
/// so that a restart after a refusal does not start the sum again. Deleted documents are not
/// counted: their events are the source's own deletions.
#[derive(Debug, Default)]
pub struct LostText {
    /// Per route: its points when first needed, and the lost-text points deleted since.
    state: std::sync::Mutex<std::collections::BTreeMap<String, [u64; 2]>>,
}

impl LostText {
    /// Whether `route`'s point count is still to be taken (before its first check).
    pub fn needs_total(&self, route: &str) -> bool {
        !self
            .state
            .lock()
            .expect("lost-text ledger")
            .contains_key(route)
    }

    /// Record `n` more lost-text deletions on `route` (of `total` points, taken once), unless
    /// the sum passes `limit`: then nothing is recorded and the refusal says why.
    pub fn take(
        &self,
        limit: MaxDelete,
        route: &str,
        n: u64,
        total: Option<u64>,
    ) -> Result<(), MassDelete> {
        let mut s = self.state.lock().expect("lost-text ledger");
        let [total, used] = *s.entry(route.to_owned()).or_insert([total.unwrap_or(0), 0]);
        let doomed = Doomed {
            lost: used + n,
            pruned: 0,
            total,
            no_text_at_all: false,
        };
        limit.check(route, &doomed)?;
        s.insert(route.to_owned(), [total, used + n]);
        Ok(())
    }

    /// What to store with the stream's position.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, [u64; 2]> {
        self.state.lock().expect("lost-text ledger").clone()
    }

    /// Go on from what was stored.
    pub fn restore(&self, stored: &std::collections::BTreeMap<String, [u64; 2]>) {
        *self.state.lock().expect("lost-text ledger") = stored.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doomed(lost: u64, pruned: u64, total: u64) -> Doomed {
        Doomed {
            lost,
            pruned,
            total,
            no_text_at_all: false,
        }
    }

    #[test]
    fn a_count_is_shared_by_the_shards_and_a_share_holds_for_each() {
        // Four shards may delete 2 each: 8 in all, never 12 of a limit of 10.
        assert_eq!(MaxDelete::Count(10).per_shard(4), MaxDelete::Count(2));
        assert_eq!(MaxDelete::Count(1).per_shard(2), MaxDelete::Count(0));
        assert_eq!(MaxDelete::Share(20).per_shard(4), MaxDelete::Share(20));
    }

    #[test]
    fn watch_sums_its_lost_text_deletions_per_route_across_restarts() {
        let l = LostText::default();
        assert!(l.needs_total("a"));
        let half = MaxDelete::Share(50);
        for _ in 0..20 {
            l.take(half, "a", 1, Some(40)).unwrap();
        }
        assert!(!l.needs_total("a"));
        // Another route (a second named vector) has a sum of its own.
        l.take(half, "b", 1, Some(40)).unwrap();
        let e = l.take(half, "a", 1, None).unwrap_err();
        assert_eq!((e.doomed, e.total), (21, 40));
        // A restart goes on from the stored sum.
        let again = LostText::default();
        again.restore(&l.snapshot());
        assert_eq!(again.take(half, "a", 1, None).unwrap_err().doomed, 21);
    }

    #[test]
    fn shares_and_counts_parse() {
        assert_eq!("50%".parse::<MaxDelete>().unwrap(), MaxDelete::Share(50));
        assert_eq!("all".parse::<MaxDelete>().unwrap(), MaxDelete::Share(100));
        assert_eq!("1000".parse::<MaxDelete>().unwrap(), MaxDelete::Count(1000));
        assert!("150%".parse::<MaxDelete>().is_err());
        assert!("half".parse::<MaxDelete>().is_err());
    }

    #[test]
    fn up_to_the_limit_passes_beyond_it_is_refused() {
        let half = MaxDelete::Share(50);
        assert!(half.check("r", &doomed(5, 0, 10)).is_ok());
        assert!(half.check("r", &doomed(3, 3, 10)).is_err());
        assert!(MaxDelete::Share(100).check("r", &doomed(10, 0, 10)).is_ok());
        assert!(MaxDelete::Count(2).check("r", &doomed(0, 3, 1000)).is_err());
        assert!(half.check("r", &doomed(0, 0, 0)).is_ok());
    }

    #[test]
    fn the_refusal_says_how_many_why_and_the_flag() {
        let d = Doomed {
            lost: 270,
            pruned: 0,
            total: 270,
            no_text_at_all: true,
        };
        let msg = MaxDelete::default()
            .check("shop.products -> products", &d)
            .unwrap_err()
            .to_string();
        for needle in [
            "270 of its 270",
            "--text",
            "--max-delete 100%",
            "nothing was deleted",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }
}
