//! The error type of the SATURN model and its training: what was wrong, where, what to do.

/// Why the network could not be built, trained, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A parameter is outside its valid range; nothing was computed.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name, as in the params struct.
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range and what to do.
        reason: String,
    },
    /// Inputs whose shapes must agree do not.
    #[error("shape mismatch for species {species:?}: {what}")]
    Shape {
        /// The species concerned (empty when not species-specific).
        species: String,
        /// Which inputs, with their shapes.
        what: String,
    },
    /// A species that the model was not built for.
    #[error("unknown species {species:?}; the model knows {known}; a species added later is embedded with `Saturn::embed_with_weights`")]
    UnknownSpecies {
        /// The species asked for.
        species: String,
        /// The model's species, comma-separated.
        known: String,
    },
    /// A cell has no counts in the selected genes (ln of a zero library size).
    #[error("species {species:?}: cell {cell} has no counts in the selected genes; drop such cells before training (SATURN.md section 2)")]
    EmptyCell {
        /// The species.
        species: String,
        /// Row of the cell in that species' count matrix.
        cell: usize,
    },
    /// A checkpoint does not fit the model configuration.
    #[error("checkpoint does not match the model: {reason}")]
    Checkpoint {
        /// What differs and what to do.
        reason: String,
    },
    /// A dataset name the atlas does not know.
    #[error("unknown dataset {name:?} (known: {known}); add it with `satlas add-dataset` first")]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// Known dataset names, comma-separated.
        known: String,
    },
    /// A dataset of a species the trained model has never seen.
    #[error("dataset {dataset:?} is {species} cells, but model run {run} was trained on {known} only: add the species to the model first with `satlas add-species --species {species}` (CALL saturn_add_species(species := '{species}')), or retrain with it")]
    NewSpecies {
        /// The dataset.
        dataset: String,
        /// Its species.
        species: String,
        /// The model run.
        run: i32,
        /// The species the model knows, comma-separated.
        known: String,
    },
    /// A dataset whose cells the run has embedded already.
    #[error(
        "dataset {dataset:?} is already embedded by model run {run} ({cells} cells); nothing to do"
    )]
    AlreadyEmbedded {
        /// The dataset.
        dataset: String,
        /// The model run.
        run: i32,
        /// Its cells with an embedding in the run.
        cells: usize,
    },
    /// A dataset was added, then could not be embedded (the addition stays committed).
    #[error(
        "dataset {dataset:?} was added but not embedded: {source}; finish with \
         `satlas embed-dataset --dataset {dataset}`"
    )]
    AddedNotEmbedded {
        /// The dataset, now in the atlas.
        dataset: String,
        /// Why embedding failed.
        #[source]
        source: Box<crate::Error>,
    },
    /// `saturn_add_species` for a species the model already has.
    #[error("species {species:?} is already in model run {run} (trained on {known}): nothing to add; embed a new dataset of it with `satlas embed-dataset`")]
    SpeciesAlreadyTrained {
        /// The species.
        species: String,
        /// The model run it was to be added to.
        run: i32,
        /// The run's species, comma-separated.
        known: String,
    },
    /// `saturn_add_species` for a species the atlas lacks something of.
    #[error("species {species:?} cannot be added to model run {run}: {missing}; {todo}")]
    SpeciesNotReady {
        /// The species.
        species: String,
        /// The model run.
        run: i32,
        /// What is missing.
        missing: String,
        /// The command that provides it.
        todo: String,
    },
    /// A libtorch operation failed.
    #[error("libtorch error in {context}: {source}")]
    Torch {
        /// The step that failed.
        context: &'static str,
        /// The libtorch error.
        #[source]
        source: tch::TchError,
    },
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Shorthand for [`ModelError::InvalidParameter`].
pub(crate) fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> ModelError {
    ModelError::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Maps a libtorch error to [`ModelError::Torch`] with the step that failed.
pub(crate) fn torch(context: &'static str) -> impl Fn(tch::TchError) -> ModelError {
    move |source| ModelError::Torch { context, source }
}
