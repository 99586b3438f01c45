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

/// Declares a vocabulary enum: `words! { pub enum Name { Variant = "text", ... } }`,
/// with the meaning of each word in the enum's doc (which the OpenAPI document shows).
/// It derives serde (the same text) and gives `ALL`, `as_str`, `FromStr`, and (through
/// [`worded!`]) `Display` and the OpenAPI schema.
macro_rules! words {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $( $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( #[serde(rename = $word)] $variant, )+
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

        $crate::domain::words::worded!($name, [$($doc),*]);
    };
}

/// For a type whose values are words (`ALL` and `as_str`): `Display`, and the OpenAPI
/// schema (a string, one of the words, with `doc` as its description). A type that
/// writes itself as its word but is not declared by [`words!`] (one that takes some of
/// its words from another vocabulary) gets `Serialize` too with `worded!(T, [doc], serialize)`.
macro_rules! worded {
    ($name:ty, [$($doc:expr),*]) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::domain::words::schema(&[$($doc),*], Self::ALL.iter().map(|w| w.as_str()))
            }
        }

        impl utoipa::ToSchema for $name {}
    };
    ($name:ty, [$($doc:expr),*], serialize) => {
        $crate::domain::words::worded!($name, [$($doc),*]);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// A vocabulary's OpenAPI schema: a string that is one of `words`, described by the
/// enum's doc lines.
pub fn schema<'a>(
    doc: &[&str],
    words: impl Iterator<Item = &'a str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let description = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description((!description.is_empty()).then_some(description))
        .enum_values(Some(words.collect::<Vec<_>>()))
        .into()
}

pub(crate) use {worded, words};

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use crate::domain::{LaneCondition, Outcome};

    /// The words a schema lists, as JSON.
    fn listed<T: PartialSchema>() -> serde_json::Value {
        let RefOr::T(Schema::Object(object)) = T::schema() else {
            panic!("a vocabulary's schema is an inline object")
        };
        serde_json::to_value(object.enum_values).unwrap()
    }

    #[test]
    fn the_schema_lists_the_words_as_they_are_written() {
        assert_eq!(
            listed::<Outcome>(),
            serde_json::to_value(Outcome::ALL).unwrap()
        );
        assert_eq!(
            listed::<LaneCondition>(),
            serde_json::to_value(LaneCondition::ALL).unwrap()
        );
    }
}
