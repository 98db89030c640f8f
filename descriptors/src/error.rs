//! Errors of the descriptors crate: every error names the model field, file or
//! package member it is about.

use std::path::PathBuf;

/// Errors from building, packaging or validating VNF packages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VNF name is neither a built-in model nor a model file.
    #[error("unknown VNF `{name}`: expected one of {known} or a path to a model .yaml/.json file")]
    UnknownVnf {
        /// What was asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// `--flavour` names a flavour the model does not have.
    #[error("flavours: no deployment flavour `{flavour}` in VNF `{vnf}` (has: {known})")]
    UnknownFlavour {
        /// VNF name.
        vnf: String,
        /// Requested flavour.
        flavour: String,
        /// Flavours the model has.
        known: String,
    },
    /// The model breaks a rule of IFA 011 / SOL001 / SOL006.
    #[error("model field `{field}`: {reason}")]
    Model {
        /// Dotted path of the field, e.g. `flavours[small].vdu_profiles[router].ram_mib`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The software image file is missing or unusable.
    #[error("image {}: {reason}", path.display())]
    Image {
        /// Image path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No image given and none at the default location.
    #[error("image: no --image given and {} does not exist (`testbed image build` builds it for router and vbng; descriptors runs it when a `testbed` binary is next to it); SOL001 SwImageData (checksum, size) and SOL006 sw-image-desc (checksum, size, min-disk) need the image file, so the package cannot be built without it", default.display())]
    NoImage {
        /// Where the default image was looked for.
        default: PathBuf,
    },
    /// A model file could not be parsed.
    #[error("model file {}: {reason}", path.display())]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// Parser message (names the field).
        reason: String,
    },
    /// The shared reference folder (ETSI type files, YANG modules) is missing.
    #[error("reference files: {reason} (set VNF_SHARED_REFERENCE to the shared/reference folder)")]
    Reference {
        /// What is missing.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the zip archive failed.
    #[error("zip {}: {source}", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The zip error.
        source: zip::result::ZipError,
    },
    /// Rendering YAML failed.
    #[error("yaml: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// A package failed validation.
    #[error("validation of {} failed:\n{report}", path.display())]
    Invalid {
        /// The package.
        path: PathBuf,
        /// The validators' output.
        report: String,
    },
    /// A validator tool is missing.
    #[error("validator missing: {0}")]
    ToolMissing(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wrap an io error with the path it concerns.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Shorthand for a model error.
pub(crate) fn model(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Model {
        field: field.into(),
        reason: reason.into(),
    }
}
