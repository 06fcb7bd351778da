//! The paths route's rankings counted in memory from each session's merged
//! steps (the steps rollup), as [`super::ranked`]'s plan counts them from
//! rows; `tests/rollups.rs` holds the two equal.
//!
//! Every step name and user is numbered once per request, so a session's
//! work hashes short keys: a path is up to five name numbers, not a
//! string built and hashed per session (building, hashing and comparing
//! those strings, and each user's twice, was most of the route's time).
//! The sessions are split between threads, each counting its share with
//! its own numbering; the shares are renumbered into the first one's at
//! the end (thousands of names and users, not hundreds of thousands of
//! sessions).

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use datafusion::arrow::array::{Array, BinaryArray, StringArray};

// DataFusion's map (hashbrown with foldhash): SipHash, the standard map's
// hash, was a fifth of this route's time in a profile.
use datafusion::common::HashMap;
use datafusion::common::hash_map::Entry;

use super::{
    Error, Intent, OTHER, PATH_SEPARATOR, PATH_STEPS, Range, Ranked, Ranking, Result,
    SESSION_ENDED, UNCLASSIFIED,
};
use crate::udaf::steps::{StepRef, StepsView};

/// One batch of the steps rollup's rows: session ids and their states.
pub(super) struct Rows<'a> {
    pub(super) ids: &'a StringArray,
    pub(super) states: &'a BinaryArray,
}

/// A session's states: its first (most sessions have one) and the rare
/// others, of a session across midnight or a late file.
struct Session<'a> {
    first: &'a [u8],
    more: Vec<&'a [u8]>,
}

/// A path: the numbers of its first steps' names, `NO_STEP` past its end.
type PathKey = [u32; PATH_STEPS as usize];
const NO_STEP: u32 = u32::MAX;

/// Both rankings (next after `intent`, top paths) of the sessions of
/// `rows`, on `threads` threads: each hashes the session ids of a share
/// of the batches, then groups and counts the sessions whose hash falls to
/// it (so a session's rows, wherever they are, meet on one thread).
pub(super) fn rank(
    rows: &[Rows<'_>],
    range: Range,
    intent: &Intent,
    limit: usize,
    threads: usize,
) -> Result<(Ranking, Ranking)> {
    let threads = threads.max(1);
    let build = HashMap::<(), ()>::default().hasher().clone();
    let mut hashes: Vec<Vec<u64>> = vec![Vec::new(); rows.len()];
    for share in on_threads(threads, |t| {
        rows.iter()
            .enumerate()
            .skip(t)
            .step_by(threads)
            .map(|(b, r)| {
                let ids = r.ids;
                (
                    b,
                    (0..ids.len())
                        .map(|i| build.hash_one(ids.value(i)))
                        .collect(),
                )
            })
            .collect::<Vec<(usize, Vec<u64>)>>()
    })? {
        for (b, h) in share {
            hashes[b] = h;
        }
    }
    let counted = on_threads(threads, |t| {
        Counted::of(&group(rows, &hashes, t, threads), range, intent)
    })?;
    let mut counted = counted.into_iter();
    let mut total = counted.next().transpose()?.unwrap_or_default();
    for other in counted {
        total.absorb(other?)?;
    }
    let names = &total.names.list;
    let users = total.users.list.len();
    let path = |key: &PathKey| {
        let steps: Vec<&str> = key
            .iter()
            .take_while(|&&n| n != NO_STEP)
            .map(|&n| names[n as usize])
            .collect();
        steps.join(PATH_SEPARATOR)
    };
    Ok((
        total
            .next
            .ranking(limit, users, |&n| names[n as usize].to_string()),
        total.paths.ranking(limit, users, path),
    ))
}

/// `f(0)` to `f(threads - 1)`, the first on this thread. Scoped threads
/// rather than the runtime's blocking pool: they borrow the request's
/// batches, and the calling task waits for them anyway.
fn on_threads<T: Send>(threads: usize, f: impl Fn(usize) -> T + Sync) -> Result<Vec<T>> {
    std::thread::scope(|scope| {
        let f = &f;
        let others: Vec<_> = (1..threads).map(|t| scope.spawn(move || f(t))).collect();
        let mut all = vec![f(0)];
        for t in others {
            all.push(t.join().map_err(|_| bad("a counting thread panicked"))?);
        }
        Ok(all)
    })
}

/// The sessions whose id hash falls to thread `me` of `threads`, each with
/// all its rows.
fn group<'a>(
    rows: &[Rows<'a>],
    hashes: &[Vec<u64>],
    me: usize,
    threads: usize,
) -> Vec<Session<'a>> {
    let mut position: HashMap<Id<'a>, usize, BuildHasherDefault<Passed>> = HashMap::default();
    let mut out: Vec<Session> = Vec::new();
    for (r, hashes) in rows.iter().zip(hashes) {
        for (i, &hash) in hashes.iter().enumerate() {
            // The high half picks the thread: the map's buckets use the low.
            if (hash >> 32) as usize % threads != me || !(r.ids.is_valid(i) && r.states.is_valid(i))
            {
                continue;
            }
            let state = r.states.value(i);
            match position.entry(Id {
                hash,
                text: r.ids.value(i),
            }) {
                Entry::Occupied(at) => out[*at.get()].more.push(state),
                Entry::Vacant(v) => {
                    v.insert(out.len());
                    out.push(Session {
                        first: state,
                        more: Vec::new(),
                    });
                }
            }
        }
    }
    out
}

/// A session id with its hash, computed once by [`rank`] and passed
/// through ([`Passed`]) rather than computed again by the map.
#[derive(Debug, Clone, Copy)]
struct Id<'a> {
    hash: u64,
    text: &'a str,
}

impl PartialEq for Id<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Id<'_> {}

impl Hash for Id<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of [`Id`]s: their hash as it is. A dozen lines, where a
/// crate (`nohash-hasher`) would add a dependency for one map.
#[derive(Debug, Default)]
struct Passed(u64);

impl Hasher for Passed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn bad(why: &str) -> Error {
    datafusion::common::DataFusionError::Execution(format!("bad session state: {why}")).into()
}

/// Texts numbered in order of first sight.
#[derive(Debug)]
struct Numbered<'a, T: ?Sized> {
    of: HashMap<&'a [u8], u32>,
    list: Vec<&'a T>,
}

impl<T: ?Sized> Default for Numbered<'_, T> {
    fn default() -> Self {
        Self {
            of: HashMap::default(),
            list: Vec::new(),
        }
    }
}

impl<'a> Numbered<'a, str> {
    /// Names are shown, so each new one is checked to be UTF-8 (once).
    fn name(&mut self, text: &'a [u8]) -> Result<u32> {
        Ok(match self.of.entry(text) {
            Entry::Occupied(at) => *at.get(),
            Entry::Vacant(v) => {
                let s = std::str::from_utf8(text).map_err(|_| bad("a name is not UTF-8"))?;
                self.list.push(s);
                *v.insert(self.list.len() as u32 - 1)
            }
        })
    }
}

impl<'a> Numbered<'a, [u8]> {
    /// [`Numbered::user`] remembered in `slot` (one per user of a
    /// session, whose steps mostly name one).
    fn user_once(&mut self, slot: &mut Option<u32>, text: &'a [u8]) -> u32 {
        *slot.get_or_insert_with(|| self.user(text))
    }

    /// Users are only told apart, never shown.
    fn user(&mut self, text: &'a [u8]) -> u32 {
        match self.of.entry(text) {
            Entry::Occupied(at) => *at.get(),
            Entry::Vacant(v) => {
                self.list.push(text);
                *v.insert(self.list.len() as u32 - 1)
            }
        }
    }
}

/// One share's counts, numbered its own way.
#[derive(Debug, Default)]
struct Counted<'a> {
    names: Numbered<'a, str>,
    users: Numbered<'a, [u8]>,
    paths: Tally<PathKey>,
    next: Tally<u32>,
}

impl<'a> Counted<'a> {
    fn of(sessions: &[Session<'a>], range: Range, intent: &Intent) -> Result<Self> {
        let unnamed = UNCLASSIFIED.as_bytes();
        let name = |s: &StepRef<'a>| s.name.unwrap_or(unnamed);
        let wanted = intent.as_str().as_bytes();
        let mut out = Self::default();
        let mut view = StepsView::default();
        let mut ordered = Vec::new();
        let mut users = Vec::new();
        for session in sessions {
            view.clear();
            view.extend(session.first)?;
            for &s in &session.more {
                view.extend(s)?;
            }
            view.ordered_into(range.start_ms, range.end_ms, unnamed, &mut ordered);
            let Some(first) = ordered.first() else {
                continue;
            };
            users.clear();
            users.resize(view.users.len(), None);
            let mut key = [NO_STEP; PATH_STEPS as usize];
            for (k, s) in key.iter_mut().zip(&ordered) {
                *k = out.names.name(name(s))?;
            }
            let user = view
                .user(first)
                .map(|u| out.users.user_once(&mut users[first.user as usize], u));
            out.paths.add(key, user);
            if let Some(at) = ordered.iter().position(|s| name(s) == wanted) {
                let after = ordered.get(at + 1).map_or(SESSION_ENDED.as_bytes(), name);
                let after = out.names.name(after)?;
                let step = &ordered[at];
                let user = view
                    .user(step)
                    .map(|u| out.users.user_once(&mut users[step.user as usize], u));
                out.next.add(after, user);
            }
        }
        Ok(out)
    }

    /// Adds another share's counts, renumbering its names and users.
    fn absorb(&mut self, other: Counted<'a>) -> Result<()> {
        let names = other
            .names
            .list
            .iter()
            .map(|&n| self.names.name(n.as_bytes()))
            .collect::<Result<Vec<u32>>>()?;
        let users: Vec<u32> = other
            .users
            .list
            .iter()
            .map(|&u| self.users.user(u))
            .collect();
        let path = |key: PathKey| key.map(|n| if n == NO_STEP { n } else { names[n as usize] });
        self.paths.absorb(other.paths, path, &users);
        self.next.absorb(other.next, |n| names[n as usize], &users);
        Ok(())
    }
}

/// Sessions and (key, user) pairs counted by key, for a ranking.
#[derive(Debug)]
struct Tally<K> {
    /// Each key seen, numbered, with its sessions.
    keys: HashMap<K, u32>,
    sessions: Vec<i64>,
    /// (key, user) of every session with a user; distinct users per key
    /// are counted once all are in (a sort, rather than a set per key).
    pairs: Vec<(u32, u32)>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self {
            keys: HashMap::default(),
            sessions: Vec::new(),
            pairs: Vec::new(),
        }
    }
}

impl<K: Hash + Eq> Tally<K> {
    fn at(&mut self, key: K) -> u32 {
        let next = self.sessions.len() as u32;
        let at = *self.keys.entry(key).or_insert(next);
        if at == next {
            self.sessions.push(0);
        }
        at
    }

    fn add(&mut self, key: K, user: Option<u32>) {
        let at = self.at(key);
        self.sessions[at as usize] += 1;
        if let Some(u) = user {
            self.pairs.push((at, u));
        }
    }

    /// Adds `other`, whose keys `key` renumbers and whose users are
    /// `users[u]` here.
    fn absorb(&mut self, other: Tally<K>, key: impl Fn(K) -> K, users: &[u32]) {
        let mut here = vec![0u32; other.sessions.len()];
        for (k, at) in other.keys {
            let to = self.at(key(k));
            here[at as usize] = to;
            self.sessions[to as usize] += other.sessions[at as usize];
        }
        self.pairs.extend(
            other
                .pairs
                .into_iter()
                .map(|(at, u)| (here[at as usize], users[u as usize])),
        );
    }

    /// Rows by users, then sessions descending, then name; past `limit`,
    /// one `(other)` row of the rest (its users counted once each).
    /// `users` is how many users are numbered; `name` shows a key.
    fn ranking(mut self, limit: usize, users: usize, name: impl Fn(&K) -> String) -> Ranking {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        let mut seen = vec![false; users];
        let mut users_of = vec![0usize; self.sessions.len()];
        for &(at, u) in &self.pairs {
            users_of[at as usize] += 1;
            seen[u as usize] = true;
        }
        let total = seen.iter().filter(|&&s| s).count();
        let percentage = |users: usize| {
            // The plan's arithmetic, operation for operation (`percentage`
            // and DataFusion's `round`), so both paths give the same bits.
            let p = users as f64 * 100.0 / total as f64;
            (p * 100.0).round() / 100.0
        };
        let mut names: Vec<(String, u32)> =
            self.keys.iter().map(|(k, &at)| (name(k), at)).collect();
        let key = |at: u32| (users_of[at as usize], self.sessions[at as usize]);
        let order = |(a, an): &(String, u32), (b, bn): &(String, u32)| {
            key(*bn).cmp(&key(*an)).then_with(|| a.cmp(b))
        };
        // Only the head is sorted: tens of thousands of paths, most of
        // them tied at one user and one session, compared by name.
        if names.len() > limit {
            names.select_nth_unstable_by(limit, order);
        }
        let tail = names.split_off(names.len().min(limit));
        names.sort_by(order);
        let mut items: Vec<Ranked> = names
            .into_iter()
            .enumerate()
            .map(|(i, (name, at))| Ranked {
                rank: i as i64 + 1,
                name,
                users: users_of[at as usize] as i64,
                sessions: self.sessions[at as usize],
                percentage: percentage(users_of[at as usize]),
                folded: 0,
            })
            .collect();
        if !tail.is_empty() {
            let folded = tail.len() as i64;
            let mut in_tail = vec![false; self.sessions.len()];
            let mut sessions = 0;
            for (_, at) in &tail {
                in_tail[*at as usize] = true;
                sessions += self.sessions[*at as usize];
            }
            let mut users: Vec<u32> = self
                .pairs
                .iter()
                .filter(|(at, _)| in_tail[*at as usize])
                .map(|&(_, u)| u)
                .collect();
            users.sort_unstable();
            users.dedup();
            items.push(Ranked {
                rank: limit as i64 + 1,
                name: OTHER.to_string(),
                users: users.len() as i64,
                sessions,
                percentage: percentage(users.len()),
                folded,
            });
        }
        Ranking {
            users: if items.is_empty() { 0 } else { total as i64 },
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranking against counts by hand.
    #[test]
    fn a_tally_ranks_by_users_then_sessions_and_folds_the_tail() {
        let mut users = Numbered::<[u8]>::default();
        let mut t = Tally::default();
        for (name, user) in [
            ("b", Some("u1")),
            ("a", Some("u1")),
            ("a", Some("u2")),
            ("b", None),
            ("c", Some("u3")),
            ("c", Some("u3")),
            ("d", Some("u2")),
        ] {
            t.add(name, user.map(|u| users.user(u.as_bytes())));
        }
        // a: 2 users, 2 sessions; c: 1 user, 2 sessions; b: 1 user (the
        // session without one counts only as a session), 2 sessions; d: 1, 1.
        // Ties of users and sessions go by name. 3 users in all.
        let r = t.ranking(2, users.list.len(), |n| n.to_string());
        assert_eq!(r.users, 3);
        let rows: Vec<_> = r
            .items
            .iter()
            .map(|i| {
                (
                    i.rank,
                    i.name.as_str(),
                    i.users,
                    i.sessions,
                    i.percentage,
                    i.folded,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (1, "a", 2, 2, 66.67, 0),
                (2, "b", 1, 2, 33.33, 0),
                // c and d: u3 and u2, 3 sessions, 2 names folded.
                (3, OTHER, 2, 3, 66.67, 2),
            ]
        );
        // Nothing counted: no rows and no users.
        let empty = Tally::<u32>::default().ranking(10, 0, |n| n.to_string());
        assert_eq!((empty.users, empty.items.len()), (0, 0));
    }

    /// A session's encoded steps.
    fn state(steps: &[(i64, &str, &str)]) -> Vec<u8> {
        let mut s = crate::udaf::steps::SessionSteps::default();
        for &(t, name, user) in steps {
            s.add(t, Some(name), Some(user));
        }
        s.to_bytes()
    }

    /// Split between threads or counted on one, the rankings are the same,
    /// and equal to counts by hand; a total counts only the users of its
    /// own ranking (a user of a session without the intent is not one of
    /// "next"'s).
    #[test]
    fn shares_counted_apart_add_up_to_one_count() {
        let states = [
            state(&[(1, "LaunchRequest", "u1"), (2, "A", "u1")]),
            state(&[(1, "LaunchRequest", "u2"), (2, "B", "u2"), (3, "A", "u2")]),
            state(&[(1, "LaunchRequest", "u1")]),
            state(&[(1, "C", "u3"), (2, "LaunchRequest", "u3"), (3, "A", "u3")]),
            state(&[(1, "D", "u4")]),
        ];
        // Each session a row of its own, and the second's later steps in a
        // second row (a session across midnight).
        let ids = StringArray::from(vec!["s1", "s2", "s3", "s4", "s5", "s2"]);
        let mut states: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
        let more = state(&[(4, "E", "u2"), (5, "F", "u2")]);
        states.push(&more);
        let states = BinaryArray::from(states);
        let rows = [Rows {
            ids: &ids,
            states: &states,
        }];
        let range = Range::new(0, 100).unwrap();
        let intent = Intent::parse("LaunchRequest").unwrap();
        let one = rank(&rows, range, &intent, 10, 1).unwrap();
        for threads in 2..=6 {
            assert_eq!(rank(&rows, range, &intent, 10, threads).unwrap(), one);
        }
        // Rows in batches of their own: the same.
        let (ids_a, ids_b) = (ids.slice(0, 3), ids.slice(3, 3));
        let (states_a, states_b) = (states.slice(0, 3), states.slice(3, 3));
        let split = [
            Rows {
                ids: &ids_a,
                states: &states_a,
            },
            Rows {
                ids: &ids_b,
                states: &states_b,
            },
        ];
        for threads in 1..=3 {
            assert_eq!(rank(&split, range, &intent, 10, threads).unwrap(), one);
        }
        let rows = |r: &Ranking| -> Vec<(String, i64, i64)> {
            r.items
                .iter()
                .map(|i| (i.name.clone(), i.users, i.sessions))
                .collect()
        };
        let (next, paths) = one;
        // Next after LaunchRequest: A (u1, u3), B (u2), ended (u1).
        assert_eq!(next.users, 3);
        assert_eq!(
            rows(&next),
            [
                ("A".to_string(), 2, 2),
                ("(session ended)".to_string(), 1, 1),
                ("B".to_string(), 1, 1)
            ]
        );
        assert_eq!(paths.users, 4);
        assert_eq!(
            rows(&paths),
            [
                ("C > LaunchRequest > A".to_string(), 1, 1),
                ("D".to_string(), 1, 1),
                ("LaunchRequest".to_string(), 1, 1),
                ("LaunchRequest > A".to_string(), 1, 1),
                ("LaunchRequest > B > A > E > F".to_string(), 1, 1),
            ]
        );
    }
}
