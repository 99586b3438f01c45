//! The one way a word of the vocabulary is declared: an enum whose every value has its
//! text written once, in the declaration. Storing, showing, parsing and the OpenAPI
//! schema all go through that text, so no state, outcome or call name is spelled
//! anywhere else and a typo cannot compile.

/// Text that is none of a vocabulary's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not one of {}", .expected.join(", "))]
pub struct UnknownWord {
    pub text: String,
    pub expected: Vec<&'static str>,
}

/// Declares a vocabulary enum: `words! { pub enum Name { Variant = "text", ... } }`.
/// It derives serde (the same text) and the OpenAPI schema, and gives `ALL`,
/// `as_str`, `FromStr` and `Display`.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::words::UnknownWord;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $word => Ok(Self::$variant), )+
                    _ => Err($crate::domain::words::UnknownWord {
                        text: text.chars().take(64).collect(),
                        expected: Self::ALL.iter().map(|w| w.as_str()).collect(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use words;
