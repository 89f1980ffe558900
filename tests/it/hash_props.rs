//! Property tests: the content hash depends on values only, never on key order,
//! formatting (block or flow style), comments or file location.

use proptest::prelude::*;
use serde_json::{Map, Value};
use taskform::hash::content_hash;
use taskform::load::yaml::parse_documents;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| Value::from(n as i64)),
        "[a-zA-Z0-9 _.:/-]{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,10}", value(), 1..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// The same value with every mapping's keys in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m.iter().rev() {
                out.insert(k.clone(), reversed(x));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        x => x.clone(),
    }
}

fn parse_one(src: &str) -> Value {
    let mut docs = parse_documents(src).unwrap_or_else(|e| panic!("{e:?} in\n{src}"));
    assert_eq!(docs.len(), 1, "{src}");
    docs.remove(0).value
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn hash_ignores_key_order_style_and_comments(v in body()) {
        let block = serde_yaml::to_string(&v).unwrap();
        let flow = format!("# a comment\n{}\n# trailing\n", serde_json::to_string(&reversed(&v)).unwrap());
        let a = parse_one(&block);
        let b = parse_one(&flow);
        prop_assert_eq!(&a, &v);
        prop_assert_eq!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn hash_changes_with_any_value(v in body(), extra in "[a-z]{1,6}") {
        let mut changed = v.clone();
        if let Value::Object(m) = &mut changed {
            let key = m.keys().next().cloned().unwrap();
            let old = m[&key].clone();
            m.insert(key, Value::Array(vec![old, Value::String(extra)]));
        }
        prop_assert_ne!(content_hash(&v), content_hash(&changed));
    }
}
