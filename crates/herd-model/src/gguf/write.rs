//! Writing GGUF v3 files, atomically: the file appears under its name only when complete.

use std::io::{BufWriter, Write};
use std::path::Path;

use herd_kernels::GgmlType;

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{Error, Result};

struct PendingTensor {
    name: String,
    dtype: GgmlType,
    /// PyTorch order, outermost first.
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes them in one go.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    pub fn set_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.set(key, Value::String(v.to_string()))
    }

    pub fn set_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.set(key, Value::U32(v))
    }

    pub fn set_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.set(key, Value::F32(v))
    }

    /// Adds a tensor whose `data` holds `shape` (outermost first) in `dtype`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: GgmlType,
        shape: Vec<usize>,
        data: Vec<u8>,
    ) -> Result<()> {
        let inner = *shape.last().unwrap_or(&1);
        let rows: usize = shape.iter().rev().skip(1).product();
        let expected = dtype.row_bytes(inner).map(|rb| rb * rows);
        if expected != Some(data.len()) {
            return Err(Error::Usage(format!(
                "tensor '{name}': {} bytes do not hold shape {shape:?} in {dtype}",
                data.len()
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dtype,
            shape,
            data,
        });
        Ok(())
    }

    /// Writes the file to `path` through a temporary file in the same directory.
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model.gguf".into());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let f = std::fs::File::create(&tmp)?;
            let mut w = BufWriter::new(f);
            self.write_to(&mut w)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let alignment = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT);
        // The header (metadata and tensor table) is built in memory; tensor data streams after.
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            head.extend_from_slice(&encode_str(k));
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            head.extend_from_slice(&encode_value(v));
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            head.extend_from_slice(&encode_str(&t.name));
            head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                head.extend_from_slice(&(d as u64).to_le_bytes());
            }
            head.extend_from_slice(&t.dtype.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        let len = head.len() as u64;
        head.resize((len.div_ceil(alignment) * alignment) as usize, 0);
        w.write_all(&head)?;
        let mut written = 0u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            w.write_all(&vec![0u8; (off - written) as usize])?;
            w.write_all(&t.data)?;
            written = off + t.data.len() as u64;
        }
        Ok(())
    }
}

fn encode_str(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::U8(x) => vec![*x],
        Value::I8(x) => vec![*x as u8],
        Value::Bool(x) => vec![*x as u8],
        Value::U16(x) => x.to_le_bytes().to_vec(),
        Value::I16(x) => x.to_le_bytes().to_vec(),
        Value::U32(x) => x.to_le_bytes().to_vec(),
        Value::I32(x) => x.to_le_bytes().to_vec(),
        Value::F32(x) => x.to_le_bytes().to_vec(),
        Value::U64(x) => x.to_le_bytes().to_vec(),
        Value::I64(x) => x.to_le_bytes().to_vec(),
        Value::F64(x) => x.to_le_bytes().to_vec(),
        Value::String(s) => encode_str(s),
        Value::Array(t, items) => {
            let mut b = (*t as u32).to_le_bytes().to_vec();
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                b.extend_from_slice(&encode_value(it));
            }
            b
        }
    }
}

impl ValueType {
    /// An array of strings, the common case for vocabularies.
    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }
}
