//! Compiled modules by the hash of their bytes, so a job sent again starts without compiling.

use std::sync::Mutex;

use wasmtime::{Engine, Module};

use crate::{ComputeError, MAX_MODULE_BYTES};

/// Most compiled modules kept.
const CAPACITY: usize = 64;

/// A small most-recently-used cache of compiled modules.
#[derive(Default)]
pub struct ModuleCache {
    /// Most recently used last.
    entries: Mutex<Vec<([u8; 32], Module)>>,
}

impl ModuleCache {
    /// The compiled module for `bytes` (WebAssembly binary or text), and whether it was cached.
    pub fn get(&self, engine: &Engine, bytes: &[u8]) -> Result<(Module, bool), ComputeError> {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(ComputeError::ModuleTooLarge(bytes.len()));
        }
        let key = *blake3::hash(bytes).as_bytes();
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                let entry = entries.remove(i);
                let module = entry.1.clone();
                entries.push(entry);
                return Ok((module, true));
            }
        }
        let module = Module::new(engine, bytes).map_err(|e| ComputeError::Module(format!("{e:#}")))?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.remove(0);
        }
        entries.push((key, module.clone()));
        Ok((module, false))
    }
}
