//! Mergeable per-session state for paths: a session's utterances as
//! `(time, step, user)`, kept by the rollups (one row per workspace, UTC day
//! and session) so that paths read one row per session and day instead of
//! every utterance, and stay exact for any range (each step keeps its time).
//!
//! `steps_state(time, step, user)` or `steps_state(state)`: events or states
//! in, the merged state (`Binary`) out. Merging concatenates; order is
//! settled when a session is read ([`StepsView::ordered_into`]).
//!
//! The encoding is our own (little-endian lengths and values): a state is
//! written and read only by this module, and a general format (JSON, a
//! nested Arrow list) cost more to decode per session than the path itself.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMillisecondType};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, TypeSignature, Volatility,
};

const TAG: u8 = 1;
/// The length written for a missing text.
const NONE: u32 = u32::MAX;

/// One utterance of a session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Step {
    pub time_ms: i64,
    /// The intent; `None` when unresolved.
    pub name: Option<String>,
    /// Index into [`SessionSteps::users`].
    pub user: u32,
}

/// A session's steps (any order) and the users they name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionSteps {
    pub users: Vec<Option<String>>,
    pub steps: Vec<Step>,
}

impl SessionSteps {
    fn user_index(&mut self, user: Option<&str>) -> u32 {
        match self.users.iter().position(|u| u.as_deref() == user) {
            Some(i) => i as u32,
            None => {
                self.users.push(user.map(str::to_string));
                (self.users.len() - 1) as u32
            }
        }
    }

    pub fn add(&mut self, time_ms: i64, name: Option<&str>, user: Option<&str>) {
        let user = self.user_index(user);
        self.steps.push(Step {
            time_ms,
            name: name.map(str::to_string),
            user,
        });
    }

    pub fn merge(&mut self, other: SessionSteps) {
        if self.steps.is_empty() && self.users.is_empty() {
            *self = other;
            return;
        }
        let map: Vec<u32> = other
            .users
            .iter()
            .map(|u| self.user_index(u.as_deref()))
            .collect();
        self.steps.extend(other.steps.into_iter().map(|mut s| {
            s.user = map[s.user as usize];
            s
        }));
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![TAG];
        let text = |out: &mut Vec<u8>, t: Option<&str>| match t {
            Some(t) => {
                out.extend((t.len() as u32).to_le_bytes());
                out.extend(t.as_bytes());
            }
            None => out.extend(NONE.to_le_bytes()),
        };
        out.extend((self.users.len() as u32).to_le_bytes());
        for u in &self.users {
            text(&mut out, u.as_deref());
        }
        out.extend((self.steps.len() as u32).to_le_bytes());
        for s in &self.steps {
            out.extend(s.time_ms.to_le_bytes());
            out.extend(s.user.to_le_bytes());
            text(&mut out, s.name.as_deref());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let view = StepsView::parse(bytes)?;
        let text = |t: Option<&[u8]>| -> Result<Option<String>> {
            t.map(|t| {
                std::str::from_utf8(t).map(str::to_string).map_err(|_| {
                    DataFusionError::Execution("bad session state: text not UTF-8".into())
                })
            })
            .transpose()
        };
        Ok(Self {
            users: view.users.iter().map(|&u| text(u)).collect::<Result<_>>()?,
            steps: view
                .steps
                .iter()
                .map(|s| {
                    Ok(Step {
                        time_ms: s.time_ms,
                        name: text(s.name)?,
                        user: s.user,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// One step of a [`StepsView`], borrowing the state's bytes. Texts stay
/// bytes (UTF-8 as written; bytes order as their strings do): a reader
/// validates only what it shows, once per distinct text, where checking
/// every step's name and user was a tenth of the paths route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef<'a> {
    pub time_ms: i64,
    pub name: Option<&'a [u8]>,
    /// Index into [`StepsView::users`].
    pub user: u32,
}

/// A session's states read in place: reading a session for its path
/// allocates nothing per step (the owned [`SessionSteps`] allocated two
/// strings per step, most of the paths route's own time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepsView<'a> {
    pub users: Vec<Option<&'a [u8]>>,
    pub steps: Vec<StepRef<'a>>,
}

impl<'a> StepsView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut out = Self::default();
        out.extend(bytes)?;
        Ok(out)
    }

    /// Adds the steps of another state of the same session.
    pub fn extend(&mut self, bytes: &'a [u8]) -> Result<()> {
        let bad = |why: &str| DataFusionError::Execution(format!("bad session state: {why}"));
        if bytes.is_empty() {
            return Ok(());
        }
        let mut r = Reader { bytes, at: 0 };
        if r.take(1).ok_or_else(|| bad("empty"))?[0] != TAG {
            return Err(bad("unknown kind"));
        }
        let offset = self.users.len() as u32;
        let users = r.u32().ok_or_else(|| bad("truncated"))?;
        for _ in 0..users {
            self.users
                .push(r.text().ok_or_else(|| bad("truncated user"))?);
        }
        let steps = r.u32().ok_or_else(|| bad("truncated"))?;
        for _ in 0..steps {
            let time_ms = r.i64().ok_or_else(|| bad("truncated step"))?;
            let user = r.u32().ok_or_else(|| bad("truncated step"))?;
            if user >= users {
                return Err(bad("step of an unknown user"));
            }
            let name = r.text().ok_or_else(|| bad("truncated step"))?;
            self.steps.push(StepRef {
                time_ms,
                name,
                user: offset + user,
            });
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(())
    }

    pub fn user(&self, step: &StepRef<'a>) -> Option<&'a [u8]> {
        self.users.get(step.user as usize).copied().flatten()
    }

    /// Forgets every state read, keeping the memory for the next session.
    pub fn clear(&mut self) {
        self.users.clear();
        self.steps.clear();
    }

    /// The steps with `start_ms <= time < end_ms`, by time, then name
    /// (`unnamed` for steps without one, as the raw plan orders them), then
    /// user, into `out` (cleared first, so that one buffer serves every
    /// session of a request).
    pub fn ordered_into(
        &self,
        start_ms: i64,
        end_ms: i64,
        unnamed: &'a [u8],
        out: &mut Vec<StepRef<'a>>,
    ) {
        out.clear();
        out.extend(
            self.steps
                .iter()
                .filter(|s| start_ms <= s.time_ms && s.time_ms < end_ms)
                .copied(),
        );
        out.sort_by(|a, b| {
            (a.time_ms, a.name.unwrap_or(unnamed), self.user(a)).cmp(&(
                b.time_ms,
                b.name.unwrap_or(unnamed),
                self.user(b),
            ))
        });
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<Option<&'a [u8]>> {
        let n = self.u32()?;
        if n == NONE {
            return Some(None);
        }
        Some(Some(self.take(n as usize)?))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StepsUdaf {
    signature: Signature,
}

/// `steps_state(time, step, user | state)`: the merged state.
pub fn steps_state_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        Arc::new(AggregateUDF::from(StepsUdaf {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Binary]),
                    TypeSignature::Exact(vec![time, DataType::Utf8, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
        }))
    });
    UDAF.clone()
}

pub fn steps_state(args: Vec<Expr>) -> Expr {
    steps_state_udaf().call(args)
}

impl AggregateUDFImpl for StepsUdaf {
    fn name(&self) -> &str {
        "steps_state"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "steps"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<StepsAccumulator>::default())
    }
}

/// Merges lazily, as the quantile states do: a session's only state (one
/// day's row) passes through undecoded.
#[derive(Debug, Default)]
struct StepsAccumulator {
    single: Option<Vec<u8>>,
    steps: SessionSteps,
}

impl StepsAccumulator {
    fn settle(&mut self) -> Result<()> {
        if let Some(b) = self.single.take() {
            self.steps.merge(SessionSteps::from_bytes(&b)?);
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.steps.steps.is_empty() && self.steps.users.is_empty()
    }

    fn merge_states(&mut self, states: &ArrayRef) -> Result<()> {
        let states = states.as_binary::<i32>();
        for i in 0..states.len() {
            if !states.is_valid(i) || states.value(i).is_empty() {
                continue;
            }
            if self.single.is_none() && self.is_empty() {
                self.single = Some(states.value(i).to_vec());
            } else {
                self.settle()?;
                self.steps.merge(SessionSteps::from_bytes(states.value(i))?);
            }
        }
        Ok(())
    }

    fn encoded(&mut self) -> Option<Vec<u8>> {
        if self.is_empty() {
            return self.single.clone();
        }
        Some(self.steps.to_bytes())
    }
}

impl Accumulator for StepsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() == 1 {
            return self.merge_states(&values[0]);
        }
        self.settle()?;
        let times = values[0].as_primitive::<TimestampMillisecondType>();
        let names = values[1].as_string::<i32>();
        let users = values[2].as_string::<i32>();
        for i in 0..times.len() {
            if times.is_null(i) {
                continue;
            }
            let name = names.is_valid(i).then(|| names.value(i));
            let user = users.is_valid(i).then(|| users.value(i));
            self.steps.add(times.value(i), name, user);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_states(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(self.encoded())])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(self.encoded()))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.single.as_ref().map_or(0, Vec::capacity)
            + self.steps.users.capacity() * 32
            + self
                .steps
                .steps
                .iter()
                .map(|s| std::mem::size_of::<Step>() + s.name.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_merge_and_order() {
        let mut a = SessionSteps::default();
        a.add(30, Some("B"), Some("u1"));
        a.add(10, None, Some("u1"));
        let mut b = SessionSteps::default();
        b.add(20, Some("A"), None);
        b.add(30, Some("A"), Some("u1"));
        let a_bytes = a.to_bytes();
        let a = SessionSteps::from_bytes(&a_bytes).unwrap();
        let mut merged = SessionSteps::from_bytes(&b.to_bytes()).unwrap();
        merged.merge(a);
        let merged = SessionSteps::from_bytes(&merged.to_bytes()).unwrap();
        assert_eq!(merged.users.len(), 2);
        // Merged owned states, encoded and read in place.
        let merged_bytes = merged.to_bytes();
        let merged = StepsView::parse(&merged_bytes).unwrap();
        let rows = |view: &StepsView,
                    start: i64,
                    end: i64|
         -> Vec<(i64, Option<String>, Option<String>)> {
            let text = |t: &[u8]| String::from_utf8(t.to_vec()).unwrap();
            let mut ordered = Vec::new();
            view.ordered_into(start, end, b"", &mut ordered);
            ordered
                .into_iter()
                .map(|s| (s.time_ms, s.name.map(text), view.user(&s).map(text)))
                .collect()
        };
        let order = rows(&merged, 0, 100);
        assert_eq!(
            order,
            vec![
                (10, None, Some("u1".into())),
                (20, Some("A".into()), None),
                (30, Some("A".into()), Some("u1".into())),
                (30, Some("B".into()), Some("u1".into())),
            ]
        );
        // The range cuts: [20, 30).
        assert_eq!(rows(&merged, 20, 30).len(), 1);
        // Read in place, two states of one session give the same order.
        let (a_bytes, b_bytes) = (a_bytes, b.to_bytes());
        let mut view = StepsView::parse(&b_bytes).unwrap();
        view.extend(&a_bytes).unwrap();
        let in_place = rows(&view, 0, 100);
        assert_eq!(in_place, order);
    }

    #[test]
    fn bad_states_are_errors() {
        let mut a = SessionSteps::default();
        a.add(1, Some("X"), Some("u"));
        let bytes = a.to_bytes();
        for cut in 1..bytes.len() {
            assert!(SessionSteps::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
        assert!(SessionSteps::from_bytes(&[9]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(SessionSteps::from_bytes(&extra).is_err());
    }
}
