//! `Scalar`: the only value type allowed in `props` and `traits` (string, number or bool).
//!
//! A hand-written deserializer gives a precise "expected a string, number or boolean" error instead
//! of serde's opaque untagged-enum message, and refuses nested objects/arrays outright.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Renders the value as text (used for traits such as company size given as a number).
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Str(s) => serializer.serialize_str(s),
            Scalar::Int(i) => serializer.serialize_i64(*i),
            Scalar::Float(f) => serializer.serialize_f64(*f),
            Scalar::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v).map(Scalar::Int).or(Ok(Scalar::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        if v.is_finite() {
            Ok(Scalar::Float(v))
        } else {
            Err(E::custom("non-finite number"))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_scalars_and_refuses_nesting() {
        let ok: Vec<Scalar> = serde_json::from_str(r#"["a", 1, -2, 1.5, true]"#).unwrap();
        assert_eq!(
            ok,
            vec![
                Scalar::Str("a".into()),
                Scalar::Int(1),
                Scalar::Int(-2),
                Scalar::Float(1.5),
                Scalar::Bool(true)
            ]
        );
        let err = serde_json::from_str::<Scalar>(r#"{"a":1}"#).unwrap_err();
        assert!(err.to_string().contains("a string, number or boolean"), "{err}");
        assert!(serde_json::from_str::<Scalar>("[1]").is_err());
        assert!(serde_json::from_str::<Scalar>("null").is_err());
    }
}
