//! Writing `.safetensors` files atomically, for `hearth convert`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ::safetensors::tensor::View;
use ::safetensors::Dtype;

use super::{SafetensorsError, StDtype};

/// One tensor to write: its name, dtype, shape (outermost first) and little-endian bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorToWrite<'a> {
    pub name: &'a str,
    pub dtype: StDtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl View for &TensorToWrite<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype.to_crate()
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` and the string `metadata` (the header's `__metadata__`, e.g. `format: pt`) to
/// `path`. The file appears complete or not at all: it is written to a temporary file in the same
/// directory and renamed over `path`, so a reader never maps a half-written file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorToWrite<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), SafetensorsError> {
    check_tensors(path, tensors)?;
    let temp = temp_path_beside(path);
    let header_metadata: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let result = ::safetensors::serialize_to_file(tensors.iter().map(|t| (t.name, t)), header_metadata, &temp)
        .map_err(|source| SafetensorsError::Header { path: path.into(), source })
        .and_then(|()| {
            std::fs::rename(&temp, path).map_err(|source| SafetensorsError::Io { path: path.into(), source })
        });
    if result.is_err() {
        // Best effort: a leftover temp file is harmless, the error below is what matters.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Rejects duplicate names and byte lengths that do not match shape x dtype, before touching the disk.
fn check_tensors(path: &Path, tensors: &[TensorToWrite<'_>]) -> Result<(), SafetensorsError> {
    let mut seen = HashSet::with_capacity(tensors.len());
    for tensor in tensors {
        let bad =
            |problem: String| SafetensorsError::BadTensor { path: path.into(), name: tensor.name.into(), problem };
        if !seen.insert(tensor.name) {
            return Err(bad("appears more than once".into()));
        }
        let expected = tensor
            .shape
            .iter()
            .try_fold(tensor.dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {:?} overflows", tensor.shape)))?;
        if expected != tensor.data.len() {
            return Err(bad(format!(
                "shape {:?} of {} needs {expected} bytes, got {}",
                tensor.shape,
                tensor.dtype.name(),
                tensor.data.len()
            )));
        }
    }
    Ok(())
}

/// A hidden sibling of `path`, unique within this process, so the final rename stays on one filesystem.
fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}
