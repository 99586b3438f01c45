//! How the vocabulary is stored: every id and every word as TEXT, written and read
//! through the type's own text (`as_str`, `parse`), so a stored value this version does
//! not know reads as a corrupt record instead of a wrong one.

use std::sync::Arc;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

use crate::button::CallKind;
use crate::domain::{
    DeliveryId, DeliveryState, IntegrationId, LaneState, LeaseToken, LogId, Outcome,
};

macro_rules! text_column {
    ($($ty:ty),+ => |$value:ident, $buf:ident| $encode:expr) => {$(
        impl Type<Sqlite> for $ty {
            fn type_info() -> SqliteTypeInfo {
                <str as Type<Sqlite>>::type_info()
            }

            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <str as Type<Sqlite>>::compatible(ty)
            }
        }

        impl Encode<'_, Sqlite> for $ty {
            fn encode_by_ref(&self, $buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
                let $value = self;
                $encode
            }
        }

        impl<'r> Decode<'r, Sqlite> for $ty {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as Decode<'r, Sqlite>>::decode(value)?.parse()?)
            }
        }
    )+};
}

// An id shares its text: binding one bumps a reference count instead of copying.
text_column!(IntegrationId, DeliveryId, LogId, LeaseToken => |id, buf| {
    <Arc<str> as Encode<'_, Sqlite>>::encode(id.shared(), buf)
});

text_column!(DeliveryState, LaneState, Outcome, CallKind => |word, buf| {
    <&str as Encode<'_, Sqlite>>::encode(word.as_str(), buf)
});
