//! `torch.save` checkpoints read without Python: the zip archive of PyTorch >= 1.6
//! (`<name>/data.pkl`, the pickled object, and `<name>/data/<key>`, one raw little-endian storage
//! per key) turned into a [`Value`] tree whose tensors are resolved on demand.
//!
//! The unpickler is safe by construction: it understands the opcodes of pickle protocols 2 to 5
//! that `torch.save` emits (and the binary ones around them) and never runs or imports anything.
//! A class or function reference stays a name ([`Value::Global`]); calling one (`REDUCE`,
//! `NEWOBJ`) yields an opaque [`Value::Object`] holding its arguments and, after `BUILD`, its state,
//! so an `argparse.Namespace` reads as an object whose state is its attribute dict. Three callables
//! are understood: `collections.OrderedDict` (a dict), `torch._utils._rebuild_tensor_v2` (a
//! [`Value::Tensor`] describing a view of a storage) and `torch._utils._rebuild_parameter` (the
//! tensor it wraps). Storages are `torch.save`'s persistent ids
//! `('storage', torch.FloatStorage, key, location, numel)`; [`TorchArchive::tensor`] reads one
//! from the archive into a `tch` tensor.

use super::ReadError;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A value of the unpickled object tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer (pickled integers wider than 64 bits are refused).
    Int(i64),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` / `bytearray`.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A set or frozenset, in pickle order.
    Set(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A reference to a class or function, `module.name`; never imported.
    Global(String),
    /// The result of calling something satlas does not interpret: the callable (its
    /// `module.name`, or `?` when it was computed), the arguments and the `BUILD` state.
    Object {
        /// `module.name` of the class or function called.
        class: String,
        /// The positional arguments.
        args: Vec<Value>,
        /// The state given to `BUILD` (`Value::None` if none).
        state: Box<Value>,
    },
    /// A tensor stored in the archive.
    Tensor(TensorRef),
}

impl Value {
    /// The entry `key` of a dict with string keys, or the attribute `key` of an object whose
    /// state is such a dict (`argparse.Namespace`, most plain Python objects).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            Value::Object { state, .. } => state.get(key),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A short description of the kind of value, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Set(_) => "a set".into(),
            Value::Dict(_) => "a dict".into(),
            Value::Global(name) => format!("a reference to {name}"),
            Value::Object { class, .. } => format!("a {class} object"),
            Value::Tensor(_) => "a tensor".into(),
        }
    }
}

/// A tensor of a `torch.save` archive: a strided view of one storage, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage's key: its data is the archive entry `<name>/data/<key>`.
    pub storage: String,
    /// The storage class without its module, e.g. `FloatStorage`.
    pub storage_type: String,
    /// Elements in the storage.
    pub storage_numel: i64,
    /// Offset of the first element, in elements.
    pub offset: i64,
    /// Shape.
    pub size: Vec<i64>,
    /// Strides, in elements.
    pub stride: Vec<i64>,
}

/// An open `torch.save` archive: the unpickled object and the storages it refers to.
pub struct TorchArchive {
    path: PathBuf,
    zip: zip::ZipArchive<BufReader<File>>,
    prefix: String,
    root: Value,
}

impl std::fmt::Debug for TorchArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchArchive")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TorchArchive {
    /// Opens `path` and unpickles its object (storages are read later, by [`Self::tensor`]).
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let io = |source| ReadError::Io {
            path: path.into(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 2];
        let head = file.read(&mut magic).map_err(io)?;
        if head == 2 && magic == [0x80, 0x02] {
            return Err(ReadError::malformed(
                path,
                0,
                "this is the legacy (PyTorch < 1.6) torch.save format; load it with torch.load and \
                 save it again with a current PyTorch to get the zip format satlas reads",
            ));
        }
        drop(file);
        let file = File::open(path).map_err(io)?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
            ReadError::malformed(
                path,
                0,
                format!(
                    "not a torch.save checkpoint: not a zip archive, or a truncated one ({e}); \
                     PyTorch >= 1.6 writes checkpoints as zip archives: check the file is complete \
                     (compare its size or checksum with the source)"
                ),
            )
        })?;
        let prefix = pickle_prefix(&zip).ok_or_else(|| {
            ReadError::malformed(
                path,
                0,
                "a zip archive but not a torch.save checkpoint: it has no <name>/data.pkl entry",
            )
        })?;
        let pickle = read_entry(&mut zip, path, &format!("{prefix}data.pkl"))?;
        check_byteorder(&mut zip, path, &prefix)?;
        let root = Unpickler::new(&pickle).run().map_err(|(offset, message)| {
            ReadError::malformed(
                path,
                0,
                format!("{prefix}data.pkl, byte {offset}: {message}"),
            )
        })?;
        Ok(Self {
            path: path.into(),
            zip,
            prefix,
            root,
        })
    }

    /// The unpickled object (what `torch.load` returns).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the tensor `t` (called `name` in error messages) from its storage, as a contiguous
    /// CPU tensor of the storage's element type.
    pub fn tensor(&mut self, name: &str, t: &TensorRef) -> Result<Tensor, ReadError> {
        let bad = |message: String| {
            ReadError::malformed(&self.path, 0, format!("tensor {name:?}: {message}"))
        };
        let Some((kind, width)) = storage_kind(&t.storage_type) else {
            return Err(bad(format!(
                "unsupported storage type torch.{}; satlas reads float (32/64), half, bfloat16, \
                 integer and bool tensors: convert the checkpoint's tensors with .float() and save \
                 it again",
                t.storage_type
            )));
        };
        check_view(t).map_err(bad)?;
        let entry = format!("{}data/{}", self.prefix, t.storage);
        let bytes = read_entry(&mut self.zip, &self.path, &entry)?;
        let expected = t.storage_numel as usize * width;
        if bytes.len() != expected {
            return Err(bad(format!(
                "storage {entry} holds {} bytes, its {} elements of torch.{} need {expected}; the \
                 file is damaged",
                bytes.len(),
                t.storage_numel,
                t.storage_type
            )));
        }
        let storage = Tensor::f_from_data_size(&bytes, &[t.storage_numel], kind)
            .map_err(|e| bad(e.to_string()))?;
        storage
            .f_as_strided(&t.size, &t.stride, Some(t.offset))
            .and_then(|v| v.f_contiguous())
            .map_err(|e| bad(e.to_string()))
    }
}

/// `<name>/` such that `<name>/data.pkl` is in the archive.
fn pickle_prefix(zip: &zip::ZipArchive<BufReader<File>>) -> Option<String> {
    zip.file_names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .find(|p| p.ends_with('/') && p.matches('/').count() == 1)
        .map(str::to_string)
}

fn read_entry(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    path: &Path,
    name: &str,
) -> Result<Vec<u8>, ReadError> {
    let damaged = |e: &dyn std::fmt::Display| {
        ReadError::malformed(
            path,
            0,
            format!("cannot read archive entry {name}: {e}; the file is damaged or truncated"),
        )
    };
    let mut entry = zip.by_name(name).map_err(|e| damaged(&e))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|e| damaged(&e))?;
    Ok(bytes)
}

/// Refuses big-endian storages (`<name>/byteorder` = `big`); archives without the entry are
/// little-endian (PyTorch wrote no such entry before 1.10, only on little-endian machines).
fn check_byteorder(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    path: &Path,
    prefix: &str,
) -> Result<(), ReadError> {
    let name = format!("{prefix}byteorder");
    if !zip.file_names().any(|n| n == name) {
        return Ok(());
    }
    let order = read_entry(zip, path, &name)?;
    if order.trim_ascii() != b"little" {
        return Err(ReadError::malformed(
            path,
            0,
            format!(
                "{name} says {:?}; satlas reads little-endian checkpoints only: load and save it \
                 again on a little-endian machine",
                String::from_utf8_lossy(&order)
            ),
        ));
    }
    Ok(())
}

/// The `tch` kind and element width of a storage class.
fn storage_kind(storage_type: &str) -> Option<(Kind, usize)> {
    Some(match storage_type {
        "FloatStorage" => (Kind::Float, 4),
        "DoubleStorage" => (Kind::Double, 8),
        "HalfStorage" => (Kind::Half, 2),
        "BFloat16Storage" => (Kind::BFloat16, 2),
        "LongStorage" => (Kind::Int64, 8),
        "IntStorage" => (Kind::Int, 4),
        "ShortStorage" => (Kind::Int16, 2),
        "CharStorage" => (Kind::Int8, 1),
        "ByteStorage" => (Kind::Uint8, 1),
        "BoolStorage" => (Kind::Bool, 1),
        _ => return None,
    })
}

/// The view must stay inside its storage.
fn check_view(t: &TensorRef) -> Result<(), String> {
    let negative = t.offset < 0 || t.size.iter().chain(&t.stride).any(|&x| x < 0);
    if negative || t.size.len() != t.stride.len() {
        return Err(format!(
            "malformed view (offset {}, size {:?}, stride {:?})",
            t.offset, t.size, t.stride
        ));
    }
    if t.size.contains(&0) {
        return Ok(());
    }
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
    match last {
        Some(last) if last < t.storage_numel => Ok(()),
        _ => Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches past its storage of {} elements",
            t.offset, t.size, t.stride, t.storage_numel
        )),
    }
}

/// Deepest nesting converted into a [`Value`]; deeper (or self-referencing) objects are refused.
const MAX_DEPTH: usize = 256;

type Id = usize;

/// An unpickled object under construction. Containers refer to other nodes by id, so an object
/// filled after it was memoised is seen filled wherever the memo is used.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Value),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Set(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Object {
        class: String,
        args: Id,
        state: Option<Id>,
    },
    /// A `torch.save` persistent id: (storage class, key, numel).
    Storage(String, String, i64),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Mark,
    Node(Id),
}

type PickleError = (usize, String);

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Slot>,
    memo: HashMap<u32, Id>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// Runs the opcodes to `STOP` and converts the result. Errors carry the byte offset.
    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.bytes(1).map_err(|m| (at, m))?[0];
            match self.step(op) {
                Ok(true) => break,
                Ok(false) => {}
                Err(message) => return Err((at, message)),
            }
        }
        let at = self.pos;
        let root = self.pop().map_err(|m| (at, m))?;
        self.value(root, 0).map_err(|m| (at, m))
    }

    /// Executes one opcode; `Ok(true)` at `STOP`.
    fn step(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                let proto = self.bytes(1)?[0];
                if !(2..=5).contains(&proto) {
                    return Err(format!("pickle protocol {proto}; torch.save writes 2 to 5"));
                }
            }
            0x95 => {
                self.bytes(8)?;
            }
            b'.' => return Ok(true),
            b'(' => self.stack.push(Slot::Mark),
            b'}' => self.push(Node::Dict(Vec::new())),
            b']' => self.push(Node::List(Vec::new())),
            b')' => self.push(Node::Tuple(Vec::new())),
            0x8f => self.push(Node::Set(Vec::new())),
            b'N' => self.push_value(Value::None),
            0x88 => self.push_value(Value::Bool(true)),
            0x89 => self.push_value(Value::Bool(false)),
            b'K' => {
                let v = self.bytes(1)?[0];
                self.push_value(Value::Int(v.into()));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push_value(Value::Int(v.into()));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push_value(Value::Int(v.into()));
            }
            0x8a => {
                let n = self.bytes(1)?[0] as usize;
                let v = self.long(n)?;
                self.push_value(Value::Int(v));
            }
            0x8b => {
                let n = self.len32()?;
                let v = self.long(n)?;
                self.push_value(Value::Int(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push_value(Value::Float(v));
            }
            b'X' => {
                let n = self.len32()?;
                self.push_str(n)?;
            }
            0x8c => {
                let n = self.bytes(1)?[0] as usize;
                self.push_str(n)?;
            }
            0x8d => {
                let n = self.len64()?;
                self.push_str(n)?;
            }
            b'B' => {
                let n = self.len32()?;
                self.push_bytes(n)?;
            }
            b'C' => {
                let n = self.bytes(1)?[0] as usize;
                self.push_bytes(n)?;
            }
            0x8e | 0x96 => {
                let n = self.len64()?;
                self.push_bytes(n)?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let items = self.pop_n(n)?;
                self.push(Node::Tuple(items));
            }
            b'a' => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            b's' => {
                let pair = self.pop_n(2)?;
                self.extend_dict(pair)?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.extend_dict(items)?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                match self.top_node_mut()? {
                    Node::Set(set) => set.extend(items),
                    _ => return Err("ADDITEMS on something that is not a set".into()),
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::Set(items));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push_value(Value::Global(format!("{module}.{name}")));
            }
            0x93 => {
                let pair = self.pop_n(2)?;
                let module = self.string_of(pair[0])?;
                let name = self.string_of(pair[1])?;
                self.push_value(Value::Global(format!("{module}.{name}")));
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let node = self.call(callable, args)?;
                self.push(node);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                let node = self.call(class, args)?;
                self.push(node);
            }
            b'b' => {
                let state = self.pop()?;
                match self.top_node_mut()? {
                    Node::Object { state: s, .. } => *s = Some(state),
                    // OrderedDict attributes (a state dict's `_metadata`) are not needed.
                    Node::Dict(_) => {}
                    _ => return Err("BUILD on something that is not an object".into()),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let node = self.storage(pid)?;
                self.push(node);
            }
            b'q' => {
                let key = self.bytes(1)?[0].into();
                self.memoize(key)?;
            }
            b'r' => {
                let key = u32::from_le_bytes(self.array()?);
                self.memoize(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u32;
                self.memoize(key)?;
            }
            b'h' => {
                let key = self.bytes(1)?[0].into();
                self.recall(key)?;
            }
            b'j' => {
                let key = u32::from_le_bytes(self.array()?);
                self.recall(key)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = *self.stack.last().ok_or("DUP on an empty stack")?;
                self.stack.push(top);
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x}; this is not a torch.save checkpoint \
                     (or one written with a text pickle protocol)"
                ))
            }
        }
        Ok(false)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("the pickle ends early (truncated data.pkl)")?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn len32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len64(&mut self) -> Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|e| e.to_string())
    }

    /// A little-endian two's-complement integer of `n` bytes (LONG1 / LONG4).
    fn long(&mut self, n: usize) -> Result<i64, String> {
        let bytes = self.bytes(n)?;
        if n > 8 {
            return Err(format!("a {n}-byte integer does not fit in 64 bits"));
        }
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..n].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(buf))
    }

    /// A newline-terminated ASCII line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("GLOBAL without a newline (truncated data.pkl)")?;
        let line = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(line)
    }

    fn push_str(&mut self, n: usize) -> Result<(), String> {
        let bytes = self.bytes(n)?;
        let s = std::str::from_utf8(bytes).map_err(|e| format!("a string is not UTF-8: {e}"))?;
        self.push_value(Value::Str(s.to_string()));
        Ok(())
    }

    fn push_bytes(&mut self, n: usize) -> Result<(), String> {
        let bytes = self.bytes(n)?.to_vec();
        self.push_value(Value::Bytes(bytes));
        Ok(())
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(Slot::Node(self.nodes.len() - 1));
    }

    fn push_value(&mut self, value: Value) {
        self.push(Node::Leaf(value));
    }

    fn pop(&mut self) -> Result<Id, String> {
        match self.stack.pop() {
            Some(Slot::Node(id)) => Ok(id),
            Some(Slot::Mark) => Err("a MARK where a value was expected".into()),
            None => Err("the pickle stack is empty".into()),
        }
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Id>, String> {
        let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok(items)
    }

    /// Everything above the topmost MARK, which is removed too.
    fn pop_mark(&mut self) -> Result<Vec<Id>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or("no MARK on the stack")?;
        let items = self
            .stack
            .drain(mark..)
            .filter_map(|s| match s {
                Slot::Node(id) => Some(id),
                Slot::Mark => None,
            })
            .collect();
        Ok(items)
    }

    fn top_node_mut(&mut self) -> Result<&mut Node, String> {
        match self.stack.last() {
            Some(Slot::Node(id)) => Ok(&mut self.nodes[*id]),
            _ => Err("expected a value on top of the stack".into()),
        }
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), String> {
        match self.top_node_mut()? {
            Node::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err("APPEND on something that is not a list".into()),
        }
    }

    fn extend_dict(&mut self, items: Vec<Id>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of keys and values".into());
        }
        match self.top_node_mut()? {
            Node::Dict(dict) => {
                dict.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err("SETITEM on something that is not a dict".into()),
        }
    }

    fn memoize(&mut self, key: u32) -> Result<(), String> {
        match self.stack.last() {
            Some(Slot::Node(id)) => {
                self.memo.insert(key, *id);
                Ok(())
            }
            _ => Err("memoizing a MARK or an empty stack".into()),
        }
    }

    fn recall(&mut self, key: u32) -> Result<(), String> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo entry {key} used before it was stored"))?;
        self.stack.push(Slot::Node(id));
        Ok(())
    }

    fn string_of(&self, id: Id) -> Result<String, String> {
        match &self.nodes[id] {
            Node::Leaf(Value::Str(s)) => Ok(s.clone()),
            _ => Err("STACK_GLOBAL needs two strings".into()),
        }
    }

    fn global_of(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Leaf(Value::Global(name)) => Some(name),
            _ => None,
        }
    }

    fn tuple_of(&self, id: Id) -> Option<&[Id]> {
        match &self.nodes[id] {
            Node::Tuple(items) => Some(items),
            _ => None,
        }
    }

    fn int_of(&self, id: Id) -> Option<i64> {
        match &self.nodes[id] {
            Node::Leaf(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn ints_of(&self, id: Id) -> Option<Vec<i64>> {
        self.tuple_of(id)?.iter().map(|&i| self.int_of(i)).collect()
    }

    /// REDUCE / NEWOBJ: the three callables satlas understands, anything else stays opaque.
    fn call(&mut self, callable: Id, args: Id) -> Result<Node, String> {
        let class = self.global_of(callable).unwrap_or("?").to_string();
        let arg_ids = self.tuple_of(args).unwrap_or_default().to_vec();
        match class.as_str() {
            "collections.OrderedDict" if arg_ids.is_empty() => Ok(Node::Dict(Vec::new())),
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                self.rebuild_tensor(&arg_ids)
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match arg_ids.first().map(|&t| &self.nodes[t]) {
                    Some(tensor @ Node::Leaf(Value::Tensor(_))) => Ok(tensor.clone()),
                    _ => Err(format!("{class} without a tensor argument")),
                }
            }
            _ => Ok(Node::Object {
                class,
                args,
                state: None,
            }),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`.
    fn rebuild_tensor(&self, args: &[Id]) -> Result<Node, String> {
        let malformed = || "a malformed _rebuild_tensor_v2 record".to_string();
        let [storage, offset, size, stride, ..] = args else {
            return Err(malformed());
        };
        let Node::Storage(storage_type, key, numel) = &self.nodes[*storage] else {
            return Err(malformed());
        };
        let tensor = TensorRef {
            storage: key.clone(),
            storage_type: storage_type.clone(),
            storage_numel: *numel,
            offset: self.int_of(*offset).ok_or_else(malformed)?,
            size: self.ints_of(*size).ok_or_else(malformed)?,
            stride: self.ints_of(*stride).ok_or_else(malformed)?,
        };
        Ok(Node::Leaf(Value::Tensor(tensor)))
    }

    /// BINPERSID: `('storage', torch.<Type>Storage, key, location, numel)`.
    fn storage(&self, pid: Id) -> Result<Node, String> {
        let malformed = || {
            "a persistent id that is not a torch.save storage ('storage', type, key, location, \
             numel)"
                .to_string()
        };
        let items = self.tuple_of(pid).ok_or_else(malformed)?;
        let [tag, class, key, _location, numel] = items else {
            return Err(malformed());
        };
        if !matches!(&self.nodes[*tag], Node::Leaf(Value::Str(s)) if s == "storage") {
            return Err(malformed());
        }
        let class = self.global_of(*class).ok_or_else(malformed)?;
        let storage_type = class.strip_prefix("torch.").unwrap_or(class).to_string();
        let key = self.string_of(*key).map_err(|_| malformed())?;
        let numel = self
            .int_of(*numel)
            .filter(|&n| n >= 0)
            .ok_or_else(malformed)?;
        Ok(Node::Storage(storage_type, key, numel))
    }

    /// Converts node `id` into a [`Value`] (shared nodes are copied).
    fn value(&self, id: Id, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "objects nested deeper than {MAX_DEPTH} levels (or referring to themselves)"
            ));
        }
        let all = |ids: &[Id]| -> Result<Vec<Value>, String> {
            ids.iter().map(|&i| self.value(i, depth + 1)).collect()
        };
        Ok(match &self.nodes[id] {
            Node::Leaf(v) => v.clone(),
            Node::Tuple(items) => Value::Tuple(all(items)?),
            Node::List(items) => Value::List(all(items)?),
            Node::Set(items) => Value::Set(all(items)?),
            Node::Dict(items) => Value::Dict(
                items
                    .iter()
                    .map(|&(k, v)| Ok((self.value(k, depth + 1)?, self.value(v, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Node::Object { class, args, state } => Value::Object {
                class: class.clone(),
                args: match self.value(*args, depth + 1)? {
                    Value::Tuple(args) => args,
                    other => vec![other],
                },
                state: Box::new(match state {
                    Some(s) => self.value(*s, depth + 1)?,
                    None => Value::None,
                }),
            },
            Node::Storage(storage_type, ..) => {
                return Err(format!(
                    "a bare torch.{storage_type} outside a tensor; satlas reads tensors only"
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpickle(bytes: &[u8]) -> Result<Value, PickleError> {
        Unpickler::new(bytes).run()
    }

    #[test]
    fn memoised_dict_filled_later_is_seen_filled() {
        // pickle.dumps(d, protocol=2) of d = {"a": [1, -2, 300, 70000]}; x = {"x": d, "y": d}.
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01}q\x02X\x01\x00\x00\x00aq\x03]q\x04\
(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00esX\x01\x00\x00\x00yq\x05h\x02u.";
        let v = unpickle(bytes).unwrap();
        let inner = Value::Dict(vec![(
            Value::Str("a".into()),
            Value::List(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(70000),
            ]),
        )]);
        assert_eq!(v.get("x"), Some(&inner));
        assert_eq!(v.get("y"), Some(&inner));
    }

    #[test]
    fn namespace_attributes_and_long_ints() {
        // pickle.dumps(argparse.Namespace(n=2**40, f=0.5, b=True), protocol=2)
        let bytes = b"\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02(X\x01\x00\x00\x00nq\x03\
\x8a\x06\x00\x00\x00\x00\x00\x01X\x01\x00\x00\x00fq\x04G?\xe0\x00\x00\x00\x00\x00\x00X\x01\x00\
\x00\x00bq\x05\x88ub.";
        let v = unpickle(bytes).unwrap();
        assert!(matches!(&v, Value::Object { class, .. } if class == "argparse.Namespace"));
        assert_eq!(v.get("n").and_then(Value::as_int), Some(1 << 40));
        assert_eq!(v.get("f"), Some(&Value::Float(0.5)));
        assert_eq!(v.get("b").and_then(Value::as_bool), Some(true));
    }

    #[test]
    fn refuses_truncation_unknown_opcodes_and_cycles() {
        let (at, message) = unpickle(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").unwrap_err();
        assert_eq!(at, 6);
        assert!(message.contains("truncated"), "{message}");
        let (_, message) = unpickle(b"\x80\x02I1\n.").unwrap_err();
        assert!(message.contains("opcode 0x49"), "{message}");
        // l = []; l.append(l)
        let (_, message) = unpickle(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert!(message.contains("referring to themselves"), "{message}");
    }

    #[test]
    fn views_must_stay_inside_their_storage() {
        let view = |offset, size: Vec<i64>, stride: Vec<i64>| TensorRef {
            storage: "0".into(),
            storage_type: "FloatStorage".into(),
            storage_numel: 6,
            offset,
            size,
            stride,
        };
        assert!(check_view(&view(0, vec![2, 3], vec![3, 1])).is_ok());
        assert!(check_view(&view(0, vec![3, 2], vec![1, 3])).is_ok());
        assert!(check_view(&view(1, vec![2, 3], vec![3, 1])).is_err());
        assert!(check_view(&view(0, vec![2, 3], vec![3])).is_err());
        assert!(check_view(&view(9, vec![0], vec![1])).is_ok());
    }
}
