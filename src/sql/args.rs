//! Named arguments of SQL procedures, read once at bind time into plain Rust values.

use duckdb::core::LogicalTypeId;
use duckdb::vtab::BindInfo;
use std::collections::HashMap;

/// A named argument's value.
#[derive(Debug, Clone, PartialEq)]
enum ArgValue {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Floats(Vec<f64>),
}

/// The arguments a procedure was called with (only those given; defaults are the procedure's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    values: HashMap<String, ArgValue>,
}

/// A procedure argument of the wrong kind.
#[derive(Debug, thiserror::Error)]
#[error("argument {name} := ... must be {expected}")]
pub struct ArgsError {
    name: String,
    expected: &'static str,
}

impl Args {
    /// Reads the declared named parameters that the call supplied.
    pub fn from_bind(
        bind: &BindInfo,
        declared: &[(&'static str, LogicalTypeId)],
    ) -> Result<Args, ArgsError> {
        let mut values = HashMap::new();
        for &(name, ty) in declared {
            let Some(value) = bind.get_named_parameter(name) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let parsed = match ty {
                LogicalTypeId::Integer | LogicalTypeId::Bigint => ArgValue::Int(value.to_int64()),
                LogicalTypeId::Double | LogicalTypeId::Float => ArgValue::Float(value.to_double()),
                LogicalTypeId::Boolean => ArgValue::Bool(value.to_bool()),
                // Declared as DOUBLE[] (see `ProcedureVTab::named_parameters`): DuckDB has cast
                // the list, so every element converts; a NULL element stays NaN and is refused
                // by the procedure's own checks.
                LogicalTypeId::List => ArgValue::Floats(
                    value
                        .to_list()
                        .unwrap_or_default()
                        .iter()
                        .map(|v| if v.is_null() { f64::NAN } else { v.to_double() })
                        .collect(),
                ),
                _ => ArgValue::Text(value.to_string()),
            };
            values.insert(name.to_string(), parsed);
        }
        Ok(Args { values })
    }

    /// Builds arguments directly (tests, and library callers that share a procedure's defaults).
    pub fn with_text(mut self, name: &str, value: &str) -> Args {
        self.values
            .insert(name.into(), ArgValue::Text(value.into()));
        self
    }

    /// An integer argument, if given.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ArgsError> {
        self.get(name, "an integer", |v| match v {
            ArgValue::Int(i) => Some(*i),
            _ => None,
        })
    }

    /// A text argument that must be given.
    pub fn required_text(&self, name: &str) -> Result<String, ArgsError> {
        self.text(name)?.ok_or(ArgsError {
            name: name.into(),
            expected: "given (it is required)",
        })
    }

    /// A non-negative integer argument, if given.
    pub fn usize(&self, name: &str) -> Result<Option<usize>, ArgsError> {
        match self.int(name)? {
            Some(v) if v < 0 => Err(ArgsError {
                name: name.into(),
                expected: "a non-negative integer",
            }),
            v => Ok(v.map(|v| v as usize)),
        }
    }

    /// A floating-point argument, if given (integers are accepted).
    pub fn float(&self, name: &str) -> Result<Option<f64>, ArgsError> {
        self.get(name, "a number", |v| match v {
            ArgValue::Float(x) => Some(*x),
            ArgValue::Int(i) => Some(*i as f64),
            _ => None,
        })
    }

    /// A text argument, if given.
    pub fn text(&self, name: &str) -> Result<Option<String>, ArgsError> {
        self.get(name, "a string", |v| match v {
            ArgValue::Text(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A list-of-numbers argument (declared `LogicalTypeId::List`, i.e. `DOUBLE[]`), if given.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f64>>, ArgsError> {
        self.get(name, "a list of numbers", |v| match v {
            ArgValue::Floats(x) => Some(x.clone()),
            _ => None,
        })
    }

    /// A boolean argument, if given.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ArgsError> {
        self.get(name, "true or false", |v| match v {
            ArgValue::Bool(b) => Some(*b),
            _ => None,
        })
    }

    fn get<T>(
        &self,
        name: &str,
        expected: &'static str,
        pick: impl Fn(&ArgValue) -> Option<T>,
    ) -> Result<Option<T>, ArgsError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => pick(v).map(Some).ok_or(ArgsError {
                name: name.into(),
                expected,
            }),
        }
    }
}
