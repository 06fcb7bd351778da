//! Reading a compiled plan's answer as time series: one per group, with
//! empty buckets filled with 0 for additive measures and left out
//! otherwise (`METRICS.md`).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use datafusion::error::Result;

use crate::compile::{BUCKET, Compiled, VALUE};

/// One series: the group's values (in `group_by` order) and its points.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    pub group: Vec<Option<String>>,
    /// `(bucket start in epoch ms, value)`, ordered by time.
    pub points: Vec<(i64, f64)>,
}

/// An answer before its gaps are filled: each group's points as the
/// engine returned them, and, for additive measures, the buckets every
/// series has (missing ones are 0). A page of a large answer is filled
/// from this without materialising every bucket of every group (5,000
/// intents by 15 minutes over a year would be 175M points).
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse {
    /// Points ordered by time; with `buckets`, only at those buckets.
    pub series: Vec<Series>,
    pub buckets: Option<Vec<i64>>,
}

impl Sparse {
    /// Points per series once filled (all series have the same number
    /// when filled).
    fn len_of(&self, s: &Series) -> usize {
        self.buckets.as_ref().map_or(s.points.len(), Vec::len)
    }

    /// Points of all series laid end to end.
    pub fn total(&self) -> u64 {
        self.series.iter().map(|s| self.len_of(s) as u64).sum()
    }

    /// The filled points `[from, to)` of the series laid end to end, each
    /// series' share with its index (a series cut by a bound appears with
    /// the part inside).
    pub fn page(&self, from: u64, to: u64) -> Vec<(usize, Vec<(i64, f64)>)> {
        let mut out = Vec::new();
        let mut seen = 0u64;
        for (i, s) in self.series.iter().enumerate() {
            let len = self.len_of(s) as u64;
            let (lo, hi) = (from.max(seen), to.min(seen + len));
            if lo < hi {
                let (lo, hi) = ((lo - seen) as usize, (hi - seen) as usize);
                let points = match &self.buckets {
                    None => s.points[lo..hi].to_vec(),
                    Some(buckets) => buckets[lo..hi]
                        .iter()
                        .map(|b| {
                            let v = s
                                .points
                                .binary_search_by_key(b, |p| p.0)
                                .map_or(0.0, |k| s.points[k].1);
                            (*b, v)
                        })
                        .collect(),
                };
                out.push((i, points));
            }
            seen += len;
        }
        out
    }

    /// Every series filled.
    pub fn filled(&self) -> Vec<Series> {
        let total = self.total();
        let mut out: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series {
                group: s.group.clone(),
                points: Vec::new(),
            })
            .collect();
        for (i, points) in self.page(0, total) {
            out[i].points = points;
        }
        out
    }
}

/// Groups the rows of `batches` into series and fills gaps.
pub fn collect(compiled: &Compiled, batches: &[RecordBatch]) -> Result<Vec<Series>> {
    Ok(collect_sparse(compiled, batches)?.filled())
}

/// Groups the rows of `batches` into series, gaps not filled yet.
pub fn collect_sparse(compiled: &Compiled, batches: &[RecordBatch]) -> Result<Sparse> {
    let mut groups: BTreeMap<Vec<Option<String>>, BTreeMap<i64, Option<f64>>> = BTreeMap::new();
    for batch in batches {
        let bucket = batch
            .column_by_name(BUCKET)
            .expect("compiled plans have a bucket column");
        let bucket = cast(
            &cast(bucket, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        )?;
        let bucket = bucket.as_primitive::<Int64Type>();
        let value = cast(
            batch
                .column_by_name(VALUE)
                .expect("compiled plans have a value column"),
            &DataType::Float64,
        )?;
        let value = value.as_primitive::<Float64Type>();
        let group_arrays = compiled
            .group_columns
            .iter()
            .map(|g| {
                cast(
                    batch.column_by_name(g).expect("compiled group column"),
                    &DataType::Utf8,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let key: Vec<Option<String>> = group_arrays
                .iter()
                .map(|a| {
                    let s = a.as_string::<i32>();
                    s.is_valid(row).then(|| s.value(row).to_string())
                })
                .collect();
            let v = value
                .is_valid(row)
                .then(|| value.value(row))
                .filter(|v| v.is_finite());
            groups.entry(key).or_default().insert(bucket.value(row), v);
        }
    }
    if groups.is_empty() && compiled.group_columns.is_empty() && compiled.fill_zero {
        groups.insert(Vec::new(), BTreeMap::new());
    }
    let series = groups
        .into_iter()
        .map(|(group, values)| {
            let points = if compiled.fill_zero {
                // Only the answer's buckets; a value that is not a number
                // counts as the 0 a missing bucket gets.
                values
                    .into_iter()
                    .filter(|(b, _)| compiled.buckets.binary_search(b).is_ok())
                    .map(|(b, v)| (b, v.unwrap_or(0.0)))
                    .collect()
            } else {
                values
                    .into_iter()
                    .filter_map(|(b, v)| v.map(|v| (b, v)))
                    .collect()
            };
            Series { group, points }
        })
        .collect();
    Ok(Sparse {
        series,
        buckets: compiled.fill_zero.then(|| compiled.buckets.clone()),
    })
}

#[cfg(test)]
mod sparse_tests {
    use super::*;

    /// Filled by a loop written apart from `Sparse::page`.
    fn filled_by_hand(groups: &[Vec<(i64, f64)>], buckets: &[i64]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for points in groups {
            for b in buckets {
                let v = points.iter().find(|p| p.0 == *b).map_or(0.0, |p| p.1);
                out.push((*b, v));
            }
        }
        out
    }

    fn sparse(groups: &[Vec<(i64, f64)>], buckets: Option<Vec<i64>>) -> Sparse {
        Sparse {
            series: groups
                .iter()
                .enumerate()
                .map(|(i, p)| Series {
                    group: vec![Some(format!("g{i}"))],
                    points: p.clone(),
                })
                .collect(),
            buckets,
        }
    }

    #[test]
    fn pages_fill_what_they_show_and_agree_with_a_full_fill() {
        let buckets: Vec<i64> = (0..10).map(|i| i * 100).collect();
        let groups = vec![
            vec![(100, 1.0), (500, 5.0)],
            vec![],
            vec![(0, 2.0), (900, 9.0)],
        ];
        let s = sparse(&groups, Some(buckets.clone()));
        let want = filled_by_hand(&groups, &buckets);
        assert_eq!(s.total(), 30);
        for size in [1, 3, 7, 10, 30, 50] {
            let mut got = Vec::new();
            let mut from = 0;
            while from < s.total() {
                for (_, p) in s.page(from, from + size) {
                    got.extend(p);
                }
                from += size;
            }
            assert_eq!(got, want, "pages of {size}");
        }
        let filled: Vec<(i64, f64)> = s.filled().into_iter().flat_map(|s| s.points).collect();
        assert_eq!(filled, want);
        // Not additive: only the points there are.
        let s = sparse(&groups, None);
        assert_eq!(s.total(), 4);
        assert_eq!(
            s.page(1, 3),
            vec![(0, vec![(500, 5.0)]), (2, vec![(0, 2.0)])]
        );
    }

    #[test]
    fn a_page_of_a_huge_answer_costs_only_the_page() {
        // 5,000 groups by 15 minutes over a year: 175M points if filled.
        let buckets: Vec<i64> = (0..35_136).map(|i| i * 900_000).collect();
        let groups: Vec<Vec<(i64, f64)>> = (0..5_000).map(|g| vec![(g * 900_000, 1.0)]).collect();
        let s = sparse(&groups, Some(buckets));
        assert_eq!(s.total(), 5_000 * 35_136);
        let page = s.page(35_136 * 7 + 5, 35_136 * 7 + 1_005);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].0, 7);
        assert_eq!(page[0].1.len(), 1_000);
        assert_eq!(page[0].1[2], (7 * 900_000, 1.0));
        assert_eq!(page[0].1[0], (5 * 900_000, 0.0));
    }
}
