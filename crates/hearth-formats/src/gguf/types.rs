//! ggml tensor types (with their on-disk block layout) and llama.cpp's file-type labels.

/// A ggml tensor element type, numbered as in ggml's `enum ggml_type` (the id stored in GGUF tensor infos).
///
/// Every type that has appeared in released ggml is listed so a file using one is *recognised* (its byte
/// size is known, so the file still validates) even where hearth cannot compute with it; see
/// [`GgmlType::is_supported`].
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    Q4_0_4_4,
    Q4_0_4_8,
    Q4_0_8_8,
    TQ1_0,
    TQ2_0,
    IQ4_NL_4_4,
    IQ4_NL_4_8,
    IQ4_NL_8_8,
    MXFP4,
}

/// Elements in a k-quant super-block.
const QK_K: u64 = 256;

/// (type, ggml id, name, elements per block, bytes per block, supported by hearth).
/// One table so the id, the name and the layout of a type cannot drift apart.
const TYPE_TABLE: &[(GgmlType, u32, &str, u64, u64, bool)] = &[
    (GgmlType::F32, 0, "F32", 1, 4, true),
    (GgmlType::F16, 1, "F16", 1, 2, true),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18, true),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20, true),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22, true),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24, true),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34, true),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36, true),
    (GgmlType::Q2_K, 10, "Q2_K", QK_K, 84, true),
    (GgmlType::Q3_K, 11, "Q3_K", QK_K, 110, true),
    (GgmlType::Q4_K, 12, "Q4_K", QK_K, 144, true),
    (GgmlType::Q5_K, 13, "Q5_K", QK_K, 176, true),
    (GgmlType::Q6_K, 14, "Q6_K", QK_K, 210, true),
    (GgmlType::Q8_K, 15, "Q8_K", QK_K, 292, true),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", QK_K, 66, false),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", QK_K, 74, false),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", QK_K, 98, false),
    (GgmlType::IQ1_S, 19, "IQ1_S", QK_K, 50, false),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18, false),
    (GgmlType::IQ3_S, 21, "IQ3_S", QK_K, 110, false),
    (GgmlType::IQ2_S, 22, "IQ2_S", QK_K, 82, false),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", QK_K, 136, false),
    (GgmlType::I8, 24, "I8", 1, 1, false),
    (GgmlType::I16, 25, "I16", 1, 2, false),
    (GgmlType::I32, 26, "I32", 1, 4, false),
    (GgmlType::I64, 27, "I64", 1, 8, false),
    (GgmlType::F64, 28, "F64", 1, 8, false),
    (GgmlType::IQ1_M, 29, "IQ1_M", QK_K, 56, false),
    (GgmlType::BF16, 30, "BF16", 1, 2, true),
    (GgmlType::Q4_0_4_4, 31, "Q4_0_4_4", 32, 18, false),
    (GgmlType::Q4_0_4_8, 32, "Q4_0_4_8", 32, 18, false),
    (GgmlType::Q4_0_8_8, 33, "Q4_0_8_8", 32, 18, false),
    (GgmlType::TQ1_0, 34, "TQ1_0", QK_K, 54, false),
    (GgmlType::TQ2_0, 35, "TQ2_0", QK_K, 66, false),
    (GgmlType::IQ4_NL_4_4, 36, "IQ4_NL_4_4", 32, 18, false),
    (GgmlType::IQ4_NL_4_8, 37, "IQ4_NL_4_8", 32, 18, false),
    (GgmlType::IQ4_NL_8_8, 38, "IQ4_NL_8_8", 32, 18, false),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17, false),
];

impl GgmlType {
    /// The type with ggml id `id`, or `None` for ids no ggml release has used (4 and 5 were removed
    /// before GGUF existed).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    /// Every recognised type, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPE_TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (GgmlType, u32, &'static str, u64, u64, bool) {
        // The table lists every variant, so the fallback is never taken; it keeps this panic-free.
        TYPE_TABLE.iter().find(|row| row.0 == self).unwrap_or(&TYPE_TABLE[0])
    }

    /// ggml's numeric id for this type.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name for this type, e.g. `Q4_K`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain float/int types).
    pub fn block_size(self) -> u64 {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().4
    }

    /// Whether hearth can load tensors of this type.
    pub fn is_supported(self) -> bool {
        self.row().5
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `general.file_type` bit llama.cpp sets when the file type was guessed rather than chosen.
const FTYPE_GUESSED: u64 = 1024;

/// The label llama.cpp and Ollama show for a `general.file_type` value (llama.cpp's `llama_ftype`), or
/// `None` for values that were removed or never assigned.
pub fn file_type_label(file_type: u64) -> Option<&'static str> {
    Some(match file_type & !FTYPE_GUESSED {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}
