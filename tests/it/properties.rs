//! Property tests over the reply parsers and the output plan (flattener): arbitrary JSON never
//! panics, every written record is valid JSON that validates against its plan's schema,
//! writing is deterministic, flattened column names never collide silently, and the typed
//! getmeas reader production uses first writes what the lenient one writes. The checks
//! are the cargo-fuzz targets' (`fuzz/src/lib.rs`), also run here over the fuzz corpus.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tap_withings::conform::Flattening;
use tap_withings::streams::STREAMS;

#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// Property names of every stream schema (nested too), plus the reply containers: generated
/// objects use them so the builders meet their fields.
fn field_names() -> Vec<String> {
    fn walk(schema: &Value, out: &mut BTreeSet<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, s) in props {
                out.insert(name.clone());
                walk(s, out);
            }
        }
        walk_items(schema, out);
    }
    fn walk_items(schema: &Value, out: &mut BTreeSet<String>) {
        if schema["items"].is_object() {
            walk(&schema["items"], out);
        }
    }
    let mut names = BTreeSet::new();
    for def in STREAMS {
        walk(&def.schema(), &mut names);
    }
    for extra in [
        "measuregrps",
        "activities",
        "series",
        "devices",
        "goals",
        "measures",
        "body",
        "status",
        "more",
        "offset",
        "data",
        "ecg",
        "signal",
        "hr",
        "rr",
        "snoring",
        "1700000000",
        "1700000060",
        "0",
        "",
    ] {
        names.insert(extra.to_string());
    }
    names.into_iter().collect()
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-2_000_000_000i64..2_000_000_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-10i64..10).prop_map(Value::from),
        "[a-z0-9 :.T+-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("1700000000"),
            Just("-5"),
            Just("1e400"),
            Just("99999999999999999999999"),
            Just("2024-02-30T00:00:00Z"),
            Just("2024-01-01"),
            Just("[1,2,3]"),
            Just("1,2,x"),
            Just("NaN"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

/// Recursive JSON whose object keys mostly come from the tap's own field names.
fn json() -> BoxedStrategy<Value> {
    let names = field_names();
    leaf()
        .prop_recursive(5, 96, 8, move |inner| {
            let names = names.clone();
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            4 => prop::sample::select(names.clone()),
                            1 => "[a-z_]{0,6}",
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A reply shaped like the real ones: a container key holding a list (or a quirk: an object,
/// a scalar) of objects with known fields and arbitrary values, in an envelope or not.
fn reply() -> impl Strategy<Value = Value> {
    let containers = vec![
        "measuregrps",
        "activities",
        "series",
        "devices",
        "goals",
        "signal",
    ];
    let names = field_names();
    let item = prop::collection::vec((prop::sample::select(names), json()), 0..12)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
        .boxed();
    (
        prop::sample::select(containers),
        prop_oneof![
            4 => prop::collection::vec(item.clone(), 0..5).prop_map(Value::Array),
            1 => item,
            1 => json(),
        ],
        json(),
        any::<bool>(),
    )
        .prop_map(|(key, list, extra, wrapped)| {
            let mut body = Map::new();
            body.insert(key.to_string(), list);
            if let Value::Object(o) = extra {
                for (k, v) in o {
                    body.entry(k).or_insert(v);
                }
            }
            let body = Value::Object(body);
            if wrapped {
                serde_json::json!({"status": 0, "body": body})
            } else {
                body
            }
        })
}

/// An object schema with colliding-prone names (`a`, `a__b`, ...) nested up to 3 levels.
/// Every property is nullable, as in the tap's own schemas (see the ignored test below).
fn schema_props() -> impl Strategy<Value = Map<String, Value>> {
    let names = prop::sample::select(vec!["a", "b", "c", "a__b", "b__c", "a__b__c", "x"]);
    let leaf_schema = prop_oneof![
        Just(serde_json::json!({"type": ["integer", "null"]})),
        Just(serde_json::json!({"type": ["number", "null"]})),
        Just(serde_json::json!({"type": ["string", "null"]})),
        Just(serde_json::json!({"type": ["string", "null"], "format": "date-time"})),
        Just(serde_json::json!({"type": ["boolean", "null"]})),
        Just(
            serde_json::json!({"type": ["array", "null"], "items": {"type": ["integer", "null"]}})
        ),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"type": ["object", "null"]})),
    ];
    let schema = leaf_schema.prop_recursive(3, 24, 4, move |inner| {
        prop::collection::vec(
            (prop::sample::select(vec!["a", "b", "c", "b__c"]), inner),
            1..4,
        )
        .prop_map(|kv| {
            let props: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::json!({"type": ["object", "null"], "properties": props})
        })
    });
    prop::collection::vec((names, schema), 1..6).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>()
    })
}

/// A getmeas body: mostly of the usual shape (what the typed reader takes), with odd values
/// now and then (numeric strings, `false`, floats, huge numbers, out-of-range units and dates,
/// wrong types), so both readers and their hand-over are exercised.
fn getmeas_body() -> impl Strategy<Value = Value> {
    fn int_or_odd(usual: BoxedStrategy<i64>) -> BoxedStrategy<Value> {
        prop_oneof![
            40 => usual.prop_map(Value::from),
            1 => Just(Value::Null),
            1 => leaf(),
        ]
        .boxed()
    }
    let epoch = || (1_600_000_000i64..1_800_000_000).boxed();
    let measure = (
        int_or_odd(any::<i64>().boxed()),
        int_or_odd(prop_oneof![Just(1i64), Just(4), Just(173), 0i64..300].boxed()),
        int_or_odd((-32i64..32).boxed()),
        prop::option::of(int_or_odd((0i64..6).boxed())),
        prop::option::of(int_or_odd((0i64..200).boxed())),
        prop::option::weighted(0.1, json()),
    )
        .prop_map(|(value, kind, unit, position, algo, extra)| {
            let mut m = serde_json::json!({"value": value, "type": kind, "unit": unit});
            if let Some(p) = position {
                m["position"] = p;
            }
            if let Some(a) = algo {
                m["algo"] = a;
            }
            if let Some(x) = extra {
                m["algo_params"] = x;
            }
            m
        });
    let text = || {
        prop_oneof![
            4 => "[a-zA-Z0-9 \\\"é/]{0,10}".prop_map(Value::String),
            1 => leaf(),
        ]
    };
    let group = (
        int_or_odd((1i64..1_000_000).boxed()),
        int_or_odd(epoch()),
        prop::option::of(int_or_odd(epoch())),
        int_or_odd((1i64..3).boxed()),
        text(),
        prop::option::of(int_or_odd((0i64..100).boxed())),
        prop::collection::vec(measure, 0..4),
    )
        .prop_map(|(grpid, date, modified, category, deviceid, modelid, measures)| {
            let mut g = serde_json::json!({"grpid": grpid, "attrib": 0, "date": date, "created": date,
                "category": category, "deviceid": deviceid, "hash_deviceid": deviceid,
                "model": "Body+", "comment": null, "measures": measures});
            if let Some(m) = modified {
                g["modified"] = m;
            }
            if let Some(m) = modelid {
                g["modelid"] = m;
            }
            g
        });
    (
        prop::collection::vec(group, 0..4),
        prop_oneof![Just(Value::from("Europe/Paris")), leaf()],
    )
        .prop_map(|(groups, timezone)| {
            serde_json::json!({"updatetime": 1_700_000_000, "timezone": timezone, "measuregrps": groups, "more": 0, "offset": 0})
        })
}

/// Cases per property: 128, or FUZZ_PROPTEST_CASES (scripts/fuzz-smoke without nightly).
fn cases() -> u32 {
    std::env::var("FUZZ_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reply_builders_never_panic_and_write_valid_records_from_arbitrary_json(body in json()) {
        targets::check_reply(&body);
    }

    #[test]
    fn reply_builders_write_valid_records_from_reply_shaped_json(body in reply()) {
        targets::check_reply(&body);
    }

    #[test]
    fn the_typed_getmeas_reader_agrees_with_the_lenient_one(body in getmeas_body()) {
        targets::check_measures_readers(body.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_are_classified_without_panicking(data in prop::collection::vec(any::<u8>(), 0..256)) {
        targets::check_reply_bytes(&data);
    }

    #[test]
    fn flattening_never_merges_columns_and_is_deterministic(
        props in schema_props(),
        record in json(),
        enabled in any::<bool>(),
        max_depth in 0usize..5,
    ) {
        targets::check_flatten(&props, &record, Flattening { enabled, max_depth });
    }
}

#[test]
fn reply_shaped_inputs_do_produce_records() {
    // The shaped generator must reach the record writers, or the properties above are hollow.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = reply();
    let written: usize = (0..64)
        .map(|_| targets::check_reply(&strategy.new_tree(&mut runner).unwrap().current()))
        .sum();
    assert!(
        written > 50,
        "only {written} records written from 64 shaped replies"
    );
}

#[test]
fn getmeas_shaped_inputs_reach_both_readers() {
    // The typed reader must accept most generated bodies and write records, and odd values
    // must reach the lenient reader's refusals, or the property above is hollow.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = getmeas_body();
    let plan = &targets::plans()
        .iter()
        .find(|c| c.stream == "measures")
        .unwrap()
        .plan;
    let (mut typed_lines, mut refused, mut lenient_only) = (0, 0, 0);
    for _ in 0..128 {
        let body = strategy
            .new_tree(&mut runner)
            .unwrap()
            .current()
            .to_string();
        match targets::measures_both_ways(body.as_bytes(), plan) {
            (Some(Ok(lines)), _) => typed_lines += lines.len(),
            (Some(Err(_)), _) => refused += 1,
            (None, Err(_)) => refused += 1,
            (None, Ok(_)) => lenient_only += 1,
        }
    }
    println!("{typed_lines} typed records, {refused} refusals, {lenient_only} read leniently");
    assert!(typed_lines > 50, "only {typed_lines} typed records");
    assert!(refused > 5, "only {refused} refusals");
    assert!(
        lenient_only > 5,
        "only {lenient_only} bodies read leniently"
    );
}

#[test]
fn every_stream_plan_compiles_under_every_flattening() {
    assert_eq!(targets::plans().len(), STREAMS.len() * 3);
}

#[test]
fn a_flattening_that_collides_is_refused() {
    let props: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
        "a__b": {"type": "integer"},
    }))
    .unwrap();
    let schema = serde_json::json!({"type": "object", "properties": props});
    let on = Flattening {
        enabled: true,
        max_depth: 10,
    };
    assert!(tap_withings::conform::OutputPlan::new(&schema, &[], None, on).is_err());
    targets::check_flatten(&props, &serde_json::json!({"a": {"b": 1}, "a__b": 2}), on);
    let off = Flattening {
        enabled: false,
        max_depth: 10,
    };
    targets::check_flatten(&props, &serde_json::json!({"a": {"b": 1}, "a__b": 2}), off);
}

#[test]
fn a_non_nullable_property_without_a_value_still_validates() {
    let props: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "count": {"type": "integer"},
        "meta": {"type": "object"},
    }))
    .unwrap();
    let f = Flattening {
        enabled: true,
        max_depth: 10,
    };
    targets::check_flatten(&props, &serde_json::json!({"count": "many"}), f);
}

#[test]
fn a_free_form_property_of_the_wrong_type_still_validates() {
    targets::STRICT_FREE_FORM.with(|s| s.set(true));
    let f = Flattening {
        enabled: true,
        max_depth: 1,
    };
    // measures.algo_params is `{"type": ["object", "null"]}`.
    let reply = serde_json::json!({"measuregrps": [{"grpid": 1, "date": 1700000000, "algo_params": "x",
        "measures": [{"type": 130, "value": 1, "unit": 0, "algo_params": "x"}]}]});
    let written = std::panic::catch_unwind(|| targets::check_reply(&reply));
    let props: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "a": {"type": ["object", "null"]},
        "t": {"type": ["object", "null"], "properties": {
            "b": {"properties": {"c": {"type": ["boolean", "null"]}}}
        }},
    }))
    .unwrap();
    targets::check_flatten(
        &props,
        &serde_json::json!({"a": "0.5", "t": {"b": {"c": "true"}}}),
        f,
    );
    assert!(
        written.is_ok(),
        "measures with a text algo_params fails its schema"
    );
}

/// The fuzz corpus through the same checks (what `scripts/fuzz-smoke` runs without nightly).
/// Regression inputs of fixed bugs are named `regression-*` there.
#[test]
fn fuzz_corpus_passes_the_fuzz_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut count = 0;
    for (target, check) in [
        ("reply_parsers", targets::check_reply_bytes as fn(&[u8])),
        ("flatten", targets::check_flatten_bytes),
        ("measures_readers", targets::check_measures_readers),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            check(&data);
            count += 1;
        }
    }
    assert!(count > 0, "the corpus under {} is empty", root.display());
    println!("{count} corpus inputs passed");
}
