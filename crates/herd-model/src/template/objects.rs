//! Two Python values minijinja has no equivalent of, so that templates fail where Jinja2 fails:
//!
//! * [`PyNone`]: the `None` transformers passes as `tools` / `documents` when there are none.
//!   minijinja iterates `none` as an empty list; Python raises `TypeError: 'NoneType' object is
//!   not iterable`, and tool-use templates (Hermes 2/3, Command R+) rely on that to refuse a
//!   chat without tools. `PyNone` is falsy, `is none`, prints `None`, serialises to `null` —
//!   and cannot be iterated.
//! * [`Generator`]: Jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return
//!   generators, which `json.dumps` refuses. The wrapper behaves as the list minijinja makes in
//!   every other way.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Rest, ValueOrKwargs};
use minijinja::{Error, State, Value};

#[derive(Debug)]
pub struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

pub fn py_none() -> Value {
    Value::from_object(PyNone)
}

pub fn is_py_none(v: &Value) -> bool {
    v.downcast_object_ref::<PyNone>().is_some()
}

/// Jinja's `is none`, true for both kinds of none.
pub fn test_none(v: &Value) -> bool {
    v.is_none() || is_py_none(v)
}

/// Jinja2's `is iterable` (`iter(value)` works): false for `None`, true for undefined, whose
/// Jinja2 class iterates as empty.
pub fn test_iterable(v: &Value) -> bool {
    !test_none(v) && v.try_iter().is_ok()
}

#[derive(Debug)]
pub struct Generator(Vec<Value>);

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_usize()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }
}

pub fn is_generator(v: &Value) -> bool {
    v.downcast_object_ref::<Generator>().is_some()
}

fn generator(items: Vec<Value>) -> Value {
    Value::from_object(Generator(items))
}

/// Jinja2's `map` and `select` family start with `if value:`, so `None | map(...)` is an
/// empty generator rather than an error.
fn falsy(value: &Value) -> bool {
    !value.is_true()
}

pub fn map(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    if falsy(&value) {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::map(state, value, args).map(generator)
}

pub fn select(
    state: &mut State,
    value: Value,
    test: Option<String>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if falsy(&value) {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::select(state, value, test.map(Into::into), args).map(generator)
}

pub fn reject(
    state: &mut State,
    value: Value,
    test: Option<String>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if falsy(&value) {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::reject(state, value, test.map(Into::into), args).map(generator)
}

pub fn selectattr(
    state: &mut State,
    value: Value,
    attr: String,
    test: Option<String>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if falsy(&value) {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::selectattr(state, value, attr.into(), test.map(Into::into), args)
        .map(generator)
}

pub fn rejectattr(
    state: &mut State,
    value: Value,
    attr: String,
    test: Option<String>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if falsy(&value) {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::rejectattr(state, value, attr.into(), test.map(Into::into), args)
        .map(generator)
}
