//! The one order of JSON values shared by queries (filters, sort) and secondary
//! indexes (SPEC §11), so that an index scan and a sort of the same documents agree.
//!
//! Across types: missing < null < numbers < strings < objects < arrays < booleans
//! (MongoDB's order of the types JSON has). Within a type: numbers numerically
//! (integers exactly, `1 == 1.0`), strings by their UTF-8 bytes, booleans
//! `false < true`, arrays element by element then by length, objects entry by entry
//! (key bytes, then value) in key order, then by length.
//!
//! Filters compare only values of the same type ([`same_type`]); sort and index keys
//! use [`cmp`], which orders every pair.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// The rank of a value's type in the order across types; a missing field is below
/// every value (see [`cmp_opt`]).
pub fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Object(_) => 4,
        Value::Array(_) => 5,
        Value::Bool(_) => 6,
    }
}

/// Whether two values are of the same JSON type (so a range comparison applies).
pub fn same_type(a: &Value, b: &Value) -> bool {
    type_rank(a) == type_rank(b)
}

/// The total order of two values.
pub fn cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.as_bytes().cmp(q.0.as_bytes()));
            ys.sort_by(|p, q| p.0.as_bytes().cmp(q.0.as_bytes()));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let o = kx.as_bytes().cmp(ky.as_bytes()).then_with(|| cmp(vx, vy));
                if o != Ordering::Equal {
                    return o;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// The order of two possibly missing values: missing first.
pub fn cmp_opt(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp(x, y),
    }
}

/// Whether two values are equal under the order (`1 == 1.0`, objects regardless of
/// key order).
pub fn equal(a: &Value, b: &Value) -> bool {
    cmp(a, b) == Ordering::Equal
}

/// Numbers numerically: two integers exactly; otherwise as `f64`, with an integer
/// too large for `f64` ordered exactly against a float by its sign and magnitude.
fn cmp_numbers(x: &Number, y: &Number) -> Ordering {
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(a), None) => cmp_int_float(a, y.as_f64().unwrap_or(0.0)),
        (None, Some(b)) => cmp_int_float(b, x.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => {
            let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            a.total_cmp(&b)
        }
    }
}

fn int(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// An integer against a finite float (JSON has no NaN or infinity).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // Every i64/u64 lies within ±2^64, where f64 has an exact integer grid of
    // doubles; compare the float's integer part exactly, then its fraction.
    if f >= 1.9e19 {
        return Ordering::Less;
    }
    if f <= -1.9e19 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    let w = whole as i128;
    match i.cmp(&w) {
        Ordering::Equal => {
            let frac = f - whole;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_order_missing_null_number_string_object_array_bool() {
        let vals = [
            json!(null),
            json!(-5),
            json!(2.5),
            json!("a"),
            json!({"a": 1}),
            json!([1]),
            json!(false),
            json!(true),
        ];
        assert_eq!(cmp_opt(None, Some(&vals[0])), Ordering::Less);
        for w in vals.windows(2) {
            assert_eq!(cmp(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(cmp(&w[1], &w[0]), Ordering::Greater);
        }
    }

    #[test]
    fn numbers_compare_numerically_and_exactly() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert_eq!(cmp(&json!(1), &json!(1.5)), Ordering::Less);
        assert_eq!(cmp(&json!(-1), &json!(-1.5)), Ordering::Greater);
        assert_eq!(cmp(&json!(u64::MAX), &json!(i64::MIN)), Ordering::Greater);
        // 2^53 + 1 is not a double; integers still compare exactly.
        let big = 9_007_199_254_740_993_u64;
        assert_eq!(cmp(&json!(big), &json!(big - 1)), Ordering::Greater);
        assert_eq!(
            cmp(&json!(big), &json!(9.007_199_254_740_992e15)),
            Ordering::Greater
        );
        assert_eq!(cmp(&json!(u64::MAX), &json!(1e30)), Ordering::Less);
    }

    #[test]
    fn strings_by_bytes_arrays_and_objects_by_elements() {
        assert_eq!(cmp(&json!("B"), &json!("a")), Ordering::Less);
        assert_eq!(cmp(&json!([1, 2]), &json!([1, 3])), Ordering::Less);
        assert_eq!(cmp(&json!([1]), &json!([1, 0])), Ordering::Less);
        assert!(equal(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})));
        assert_eq!(
            cmp(&json!({"a": 1}), &json!({"a": 1, "b": 0})),
            Ordering::Less
        );
        assert!(same_type(&json!(1), &json!(2.5)));
        assert!(!same_type(&json!(1), &json!("1")));
    }
}
