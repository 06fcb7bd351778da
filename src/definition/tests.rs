use super::*;

fn agg(types: &[&str], value: Value, aggregation: Aggregation) -> Measure {
    Measure::Aggregate {
        events: Events {
            event_types: types.iter().map(|t| t.to_string()).collect(),
            filters: vec![],
        },
        value,
        aggregation,
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let query = Query {
        workspace_id: String::new(),
        measure: Measure::Ratio {
            numerator: Box::new(agg(&["utterance"], Value::Count, Aggregation::Avg)),
            denominator: Box::new(agg(
                &[""],
                Value::Field(Field::Column("latency_ms".into())),
                Aggregation::Quantile { q: 1.5 },
            )),
        },
        filters: vec![Filter {
            field: Field::Column("locale".into()),
            op: Operator::In,
            value: serde_json::json!("en-US"),
        }],
        range: TimeRange {
            start_ms: 10,
            end_ms: 5,
        },
        bucket: Bucket::ByHour,
        group_by: vec![],
    };
    let problems = query.validate().unwrap_err();
    insta::assert_snapshot!(problems.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"), @r"
    workspace_id: must not be empty
    measure.numerator.value: this aggregation needs a field, not a count
    measure.denominator.events.event_types[0]: must be 1 to 128 characters
    measure.denominator.aggregation.q: must be between 0 and 1
    filters[0].value: `in` needs a list of values
    range: startTime must be before endTime
    ");
}

#[test]
fn fields_parse_columns_and_attribute_keys_whole() {
    assert_eq!(Field::parse("intent"), Ok(Field::Column("intent".into())));
    assert_eq!(
        Field::parse("attributes.Alexa.SluConfidence"),
        Ok(Field::Attribute("Alexa.SluConfidence".into()))
    );
    assert_eq!(
        Field::parse("interaction.country"),
        Ok(Field::Attribute("country".into()))
    );
    assert!(Field::parse("nope").unwrap_err().contains("unknown field"));
    assert!(Field::parse("attributes.").is_err());
}

#[test]
fn time_windows() {
    assert_eq!(TimeWindow::parse("15m").unwrap().ms, 900_000);
    assert_eq!(TimeWindow::parse("1h").unwrap().ms, 3_600_000);
    assert_eq!(TimeWindow::parse("7d").unwrap().to_string(), "7d");
    for bad in [
        "", "m", "0h", "-1h", "+1h", "1w", "1.5h", "10000d", "h1", "1 h", "1H",
    ] {
        assert!(
            TimeWindow::parse(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn buckets_align_to_utc_and_weeks_to_monday() {
    // 2026-01-07T13:47:00Z is a Wednesday.
    let t = 1_767_793_620_000;
    assert_eq!(Bucket::By15.floor(t, 0), 1_767_793_500_000); // 13:45
    assert_eq!(Bucket::ByHour.floor(t, 0), 1_767_790_800_000); // 13:00
    assert_eq!(Bucket::ByDay.floor(t, 0), 1_767_744_000_000); // 2026-01-07
    assert_eq!(Bucket::ByWeek.floor(t, 0), 1_767_571_200_000); // Monday 2026-01-05
    assert_eq!(Bucket::Single.floor(t, 42), 42);
    let range = TimeRange {
        start_ms: 1_767_793_620_000,
        end_ms: 1_767_801_600_000,
    }; // 13:47 .. 16:00
    assert_eq!(Bucket::ByHour.starts(range).len(), 3);
}

#[test]
fn measures_round_trip_through_json() {
    let m = agg(
        &["utterance"],
        Value::Field(Field::Attribute("Alexa.SluConfidence".into())),
        Aggregation::DistinctCount,
    );
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(
        text,
        r#"{"aggregate":{"events":{"event_types":["utterance"],"filters":[]},"value":{"field":"attributes.Alexa.SluConfidence"},"aggregation":{"type":"distinct_count"}}}"#
    );
    assert_eq!(serde_json::from_str::<Measure>(&text).unwrap(), m);
}

#[test]
fn builtin_catalog_loads_and_validates() {
    let mut total = 0;
    for ns in builtin::namespaces() {
        assert!(!ns.metrics.is_empty(), "{}", ns.namespace);
        for m in &ns.metrics {
            total += 1;
            let mut v = Validator::default();
            m.measure.validate(&m.name, &mut v);
            assert!(v.is_empty(), "{}: {:?}", m.name, v.finish());
            for stat in &m.supported_stats {
                assert!(
                    builtin::stat_aggregation(stat).is_some(),
                    "{}: stat {stat}",
                    m.name
                );
            }
        }
    }
    assert_eq!(builtin::namespaces().len(), 9);
    assert!(total >= 40);
    let custom = builtin::namespace("Alexa.Custom").unwrap();
    assert_eq!(custom.metrics.len(), 18);
}

#[test]
fn json_paths_parse_and_print_back() {
    let f = Field::parse(r#"$["summary"]["a b"][0]"#).unwrap();
    let Field::Path(p) = &f else {
        panic!("not a path: {f:?}")
    };
    assert_eq!(p, &JsonPath::parse("$.summary['a b'][0]").unwrap());
    assert_eq!(Field::parse(&f.to_string()).unwrap(), f);
    // `$.key` stays one key taken whole, as before paths.
    assert_eq!(
        Field::parse("$.Alexa.SluConfidence"),
        Ok(Field::Attribute("Alexa.SluConfidence".into()))
    );
}

#[test]
fn a_test_is_counted_or_shared_not_summed() {
    let test = Filter {
        field: Field::Column("outcome".into()),
        op: Operator::Eq,
        value: "escalated".into(),
    };
    let measure = |aggregation| Measure::Aggregate {
        events: Events::default(),
        value: Value::Test(test.clone()),
        aggregation,
    };
    for ok in [
        Aggregation::Count,
        Aggregation::TrueRatio,
        Aggregation::Rate { per_ms: 3_600_000 },
    ] {
        let mut v = Validator::default();
        measure(ok).validate("m", &mut v);
        assert!(v.finish().is_ok(), "{ok:?}");
    }
    let mut v = Validator::default();
    measure(Aggregation::Sum).validate("m", &mut v);
    let e = v.finish().unwrap_err().to_string();
    assert!(e.starts_with("m.value: "), "{e}");
}
