//! YAML reading: documents become JSON values, and any node can be located by its path.
//!
//! The fast path ([`parse_documents`]) deserializes each YAML document straight into a
//! [`serde_json::Value`], rejecting what has no JSON meaning (tags, non-string keys,
//! NaN) and duplicate keys, with the position of the offending node.
//!
//! Positions of valid nodes are only needed when validation finds a problem, which is
//! rare, so they are not recorded on the fast path. [`locate`] parses the file again
//! and walks to the node named by a path, letting the YAML deserializer report the mark
//! of the event it is standing on. This keeps one YAML parser (yaml_serde) in the tree
//! and costs nothing for valid input.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A YAML problem at a position (1-based line and column; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

fn yaml_error(err: serde_yaml::Error) -> YamlError {
    let (line, col) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    // yaml_serde appends " at line L column C" to some messages; the position is
    // reported separately, so strip it.
    let mut message = err.to_string();
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    if let Some(rest) = message.strip_prefix(".: ") {
        message = rest.to_string();
    }
    YamlError { line, col, message }
}

/// One non-empty YAML document of a file.
#[derive(Debug, Clone)]
pub struct Document {
    /// Index of the document in the file's stream (counting empty ones), for [`locate`].
    pub index: usize,
    pub value: Value,
}

/// Parses every document of `src`. Empty documents (and documents holding only `null`)
/// are skipped. The first syntax error ends the file, as it does for any YAML parser.
pub fn parse_documents(src: &str) -> Result<Vec<Document>, YamlError> {
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(src).enumerate() {
        let value = JsonSeed.deserialize(de).map_err(yaml_error)?;
        if !value.is_null() {
            docs.push(Document { index, value });
        }
    }
    Ok(docs)
}

/// Parses a single-document YAML file into a JSON value (null when empty).
pub fn parse_single(src: &str) -> Result<Value, YamlError> {
    let mut docs = parse_documents(src)?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0).value),
        _ => Err(YamlError {
            line: 0,
            col: 0,
            message: "expected a single YAML document, found several".into(),
        }),
    }
}

/// Builds a JSON value from any YAML node.
struct JsonSeed;

impl<'de> DeserializeSeed<'de> for JsonSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Err(E::custom(format!(
            "the number {v} is out of range; quote it to send it as a string"
        )))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Err(E::custom(format!(
            "the number {v} is out of range; quote it to send it as a string"
        )))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            E::custom(format!(
                "{v} has no JSON form; quote it to send it as a string"
            ))
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(JsonSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &out })? {
            let value = map.next_value_seed(JsonSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (`!name`) are not supported in task manifests; remove the tag",
        ))
    }
}

/// Reads a mapping key: it must be a string and must not repeat.
struct KeySeed<'a> {
    seen: &'a Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        // Small mappings (nearly all of a task) are cheaper to scan than to hash.
        let duplicate = if self.seen.len() <= 16 {
            self.seen.keys().any(|k| k == v)
        } else {
            self.seen.contains_key(v)
        };
        if duplicate {
            return Err(E::custom(format!("duplicate key `{v}`")));
        }
        Ok(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Err(non_string_key(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Err(non_string_key(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Err(non_string_key(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(non_string_key(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("mapping keys must be strings, found null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "mapping keys must be strings, found a sequence",
        ))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "mapping keys must be strings, found a mapping",
        ))
    }
}

fn non_string_key<E: de::Error>(v: impl fmt::Display) -> E {
    E::custom(format!(
        "mapping keys must be strings; quote `{v}` to use it as a key"
    ))
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path as `schedule_config.max_time_out` or `parameter_config[0].type`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What to point at: the key of a mapping entry, or the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

const HERE: &str = "\u{1}taskform-locate";

/// Finds the 1-based (line, column) of the node at `path` in document `doc` of `src`.
/// With [`Part::Key`] and a path ending in a key, points at the key itself.
/// Returns `None` when the path does not exist.
pub fn locate(src: &str, doc: usize, path: &[Seg], part: Part) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(src).nth(doc)?;
    match (LocateSeed { path, part }).deserialize(de) {
        Err(err) if err.to_string().contains(HERE) => {
            err.location().map(|l| (l.line(), l.column()))
        }
        _ => None,
    }
}

struct LocateSeed<'p> {
    path: &'p [Seg],
    part: Part,
}

impl<'de> DeserializeSeed<'de> for LocateSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn here<E: de::Error>() -> E {
    E::custom(HERE)
}

impl<'de> Visitor<'de> for LocateSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any node")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.scalar()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(here());
        };
        let Seg::Index(idx) = first else {
            return Ok(());
        };
        for _ in 0..*idx {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(LocateSeed {
            path: rest,
            part: self.part,
        })?;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(here());
        };
        let Seg::Key(want) = first else { return Ok(()) };
        let fire_on_key = rest.is_empty() && self.part == Part::Key;
        while let Some(matched) = map.next_key_seed(KeyProbe {
            want,
            fire: fire_on_key,
        })? {
            if matched {
                map.next_value_seed(LocateSeed {
                    path: rest,
                    part: self.part,
                })?;
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

impl LocateSeed<'_> {
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(here())
        } else {
            Ok(())
        }
    }
}

/// Compares a key with the wanted one; raises the locating error on a match when asked.
struct KeyProbe<'a> {
    want: &'a str,
    fire: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if v == self.want {
            if self.fire {
                return Err(here());
            }
            return Ok(true);
        }
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    #[test]
    fn documents_become_json_and_empty_ones_are_skipped() {
        let src = "a: 1\nb: [x, 2.5, true]\n---\n---\nname: two\n";
        let docs = parse_documents(src).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            serde_json::json!({"a": 1, "b": ["x", 2.5, true]})
        );
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        let err = parse_documents("name: a\nuser_id: u\nname: b\n").unwrap_err();
        assert_eq!((err.line, err.col), (3, 1));
        assert!(
            err.message.contains("duplicate key `name`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_documents("name: a\n  bad: [\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn tags_nan_and_non_string_keys_are_rejected() {
        assert!(
            parse_documents("a: !x 1\n")
                .unwrap_err()
                .message
                .contains("tags")
        );
        assert!(
            parse_documents("a: .nan\n")
                .unwrap_err()
                .message
                .contains("JSON")
        );
        let err = parse_documents("x: 1\n1: a\n").unwrap_err();
        assert_eq!((err.line, err.col), (2, 1));
    }

    #[test]
    fn locate_finds_keys_and_values() {
        let src = "---\nname: a\n---\nname: b\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: ten\nlist:\n  - one\n  - two\n";
        let path = [key("schedule_config"), key("max_time_out")];
        assert_eq!(locate(src, 1, &path, Part::Value), Some((7, 17)));
        assert_eq!(locate(src, 1, &path, Part::Key), Some((7, 3)));
        assert_eq!(
            locate(src, 1, &[key("list"), Seg::Index(1)], Part::Value),
            Some((10, 5))
        );
        assert_eq!(locate(src, 1, &[], Part::Value), Some((4, 1)));
        assert_eq!(locate(src, 1, &[key("missing")], Part::Value), None);
        assert_eq!(locate(src, 0, &[key("name")], Part::Value), Some((2, 7)));
    }

    #[test]
    fn deep_nesting_and_alias_bombs_end_in_errors() {
        let deep = "a: ".to_string() + &"[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse_documents(&deep).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(parse_documents(&bomb).is_err());
    }
}
