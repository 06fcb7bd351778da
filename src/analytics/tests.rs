use super::*;
use crate::compile::schema_source;
use crate::storage::events;

const DAY: i64 = DAY_MS;
/// 2026-01-05T00:00:00Z, a Monday.
const MONDAY: i64 = 1_767_571_200_000;

#[test]
fn ranges_are_checked() {
    assert!(Range::new(MONDAY, MONDAY + DAY).is_ok());
    assert!(Range::new(MONDAY, MONDAY + 366 * DAY).is_ok());
    for (s, e) in [(-1, MONDAY), (MONDAY, i64::MAX), (i64::MIN, i64::MAX)] {
        let err = Range::new(s, e).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    code: "INVALID_TIME",
                    ..
                }
            ),
            "{err}"
        );
    }
    for (s, e) in [
        (MONDAY, MONDAY),
        (MONDAY + 1, MONDAY),
        (MONDAY, MONDAY + 366 * DAY + 1),
    ] {
        let err = Range::new(s, e).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    code: "INVALID_TIME_RANGE",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn intents_and_limits_are_checked() {
    assert_eq!(
        Intent::parse("AMAZON.HelpIntent").unwrap().as_str(),
        "AMAZON.HelpIntent"
    );
    assert!(Intent::parse("Get_Score2").is_ok());
    for bad in ["", "a b", "x'; DROP", &"a".repeat(201), "(other)"] {
        assert!(Intent::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(check_limit(1).unwrap(), 1);
    assert_eq!(check_limit(100).unwrap(), 100);
    assert!(check_limit(0).is_err());
    assert!(check_limit(101).is_err());
}

#[test]
fn the_week_origin_is_a_monday() {
    use chrono::Datelike;
    let t = chrono::DateTime::from_timestamp_millis(WEEK_ORIGIN_MS).unwrap();
    assert_eq!(t.weekday(), chrono::Weekday::Mon);
    let t = chrono::DateTime::from_timestamp_millis(MONDAY).unwrap();
    assert_eq!(t.weekday(), chrono::Weekday::Mon);
}

fn names(plan: &LogicalPlan) -> Vec<String> {
    plan.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn plans_build_without_a_store_and_name_their_columns() {
    let source = schema_source(events::schema());
    let range = Range::new(MONDAY, MONDAY + 28 * DAY).unwrap();
    let plan = retention_plan(
        std::sync::Arc::clone(&source),
        "skill-a",
        range,
        super::Stage::Live,
    )
    .unwrap();
    assert_eq!(
        names(&plan),
        ["cohort_week", "cohort_users", "week", "users", "percentage"]
    );
    let intent = Intent::parse(DEFAULT_INTENT).unwrap();
    let ranked_columns = [
        "rank",
        "name",
        "users",
        "sessions",
        "percentage",
        "folded",
        "total_users",
    ];
    let plan = next_plan(std::sync::Arc::clone(&source), "skill-a", range, &intent, 5).unwrap();
    assert_eq!(names(&plan), ranked_columns);
    let plan = paths_plan(source, "skill-a", range, 5).unwrap();
    assert_eq!(names(&plan), ranked_columns);
    // Built from expressions: the skill id is a literal in the plan.
    assert!(
        plan.display_indent()
            .to_string()
            .contains("Utf8(\"skill-a\")")
    );
}

/// Plan shapes, reviewed by hand: `cargo insta review` after a change.
fn shape(plan: &LogicalPlan) -> String {
    plan.display_indent().to_string()
}

#[test]
fn plan_of_retention() {
    let source = schema_source(events::schema());
    let range = Range::new(MONDAY, MONDAY + 28 * DAY).unwrap();
    insta::assert_snapshot!(shape(
        &retention_plan(source, "skill-a", range, super::Stage::Live).unwrap()
    ));
}

#[test]
fn plan_of_next_after_launch() {
    let source = schema_source(events::schema());
    let range = Range::new(MONDAY, MONDAY + DAY).unwrap();
    let intent = Intent::parse(DEFAULT_INTENT).unwrap();
    insta::assert_snapshot!(shape(
        &next_plan(source, "skill-a", range, &intent, 10).unwrap()
    ));
}
