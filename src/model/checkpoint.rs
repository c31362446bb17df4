//! A network's weights as bytes (libtorch's named-tensor format, what `model_runs.weights` stores
//! zstd-compressed) and back, and parameters set by name (weights exported from PyTorch).

use super::error::{torch, ModelError, Result};
use super::{Saturn, SaturnConfig};
use tch::{Kind, Tensor};

impl Saturn {
    /// Serialises every parameter (libtorch's named-tensor format) for storage as a blob.
    pub fn save_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.vs
            .save_to_stream(&mut buf)
            .map_err(torch("saving the state dict"))?;
        Ok(buf)
    }

    /// Rebuilds a network from its configuration and [`Saturn::save_bytes`] output.
    pub fn load_bytes(config: SaturnConfig, bytes: &[u8]) -> Result<Self> {
        let mut model = Self::build(config)?;
        model
            .vs
            .load_from_stream(std::io::Cursor::new(bytes))
            .map_err(|e| ModelError::Checkpoint {
                reason: format!(
                    "{e}; was it saved with the same species, gene counts and dimensions?"
                ),
            })?;
        Ok(model)
    }

    /// Overwrites parameters by name (e.g. weights exported from PyTorch); every name must exist
    /// with the same shape. Parameters not named keep their values.
    pub fn set_parameters(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let vars = self.vs.variables();
        for (name, t) in named {
            let Some(v) = vars.get(name) else {
                return Err(ModelError::Checkpoint {
                    reason: format!("no parameter named {name:?}"),
                });
            };
            if v.size() != t.size() {
                return Err(ModelError::Checkpoint {
                    reason: format!(
                        "{name}: checkpoint has shape {:?}, the model {:?}",
                        t.size(),
                        v.size()
                    ),
                });
            }
            tch::no_grad(|| v.shallow_clone().copy_(&t.to_kind(Kind::Float)));
        }
        Ok(())
    }
}
