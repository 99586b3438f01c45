//! Button's calls: each knows its method, where it goes and which credentials it takes,
//! so nothing else has to guess them from a name.

use reqwest::Method;
use serde::Serialize;

use super::model::{Activity, ActivityName, Order};
use crate::domain::words::words;

words! {
    /// A Button API call, by the name blueprints, Live Logs and metrics use:
    /// `order.create` (`POST /v1/order` on the Orders API), or an activity
    /// (`add-to-cart`, `product-viewed`, `cart-viewed`) on the application's
    /// activity host.
    pub enum CallKind {
        OrderCreate = "order.create",
        ActivityAddToCart = "activity.add-to-cart",
        ActivityProductViewed = "activity.product-viewed",
        ActivityCartViewed = "activity.cart-viewed",
    }
}

/// Which of Button's APIs a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `api.usebutton.com`: server to server, HTTP Basic auth with the api_key,
    /// versioned by `X-Button-API-Version`.
    Orders,
    /// `{application_id}.mobileapi.usebutton.com`: no credentials.
    Activity,
}

/// Which credentials a request carries. Only the Orders API takes the API key; the
/// activity host must never see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    None,
    ApiKey,
}

impl CallKind {
    pub fn api(self) -> Api {
        match self {
            Self::OrderCreate => Api::Orders,
            Self::ActivityAddToCart | Self::ActivityProductViewed | Self::ActivityCartViewed => {
                Api::Activity
            }
        }
    }

    pub fn method(self) -> Method {
        Method::POST
    }

    pub fn auth(self) -> Auth {
        match self.api() {
            Api::Orders => Auth::ApiKey,
            Api::Activity => Auth::None,
        }
    }

    /// The activity a call reports, for activity calls.
    pub fn activity(self) -> Option<ActivityName> {
        match self {
            Self::OrderCreate => None,
            Self::ActivityAddToCart => Some(ActivityName::AddToCart),
            Self::ActivityProductViewed => Some(ActivityName::ProductViewed),
            Self::ActivityCartViewed => Some(ActivityName::CartViewed),
        }
    }
}

/// A call to Button with its object.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    CreateOrder(Order),
    Activity(Activity),
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Self::CreateOrder(_) => CallKind::OrderCreate,
            Self::Activity(a) => match a.activity_data.name {
                ActivityName::AddToCart => CallKind::ActivityAddToCart,
                ActivityName::ProductViewed => CallKind::ActivityProductViewed,
                ActivityName::CartViewed => CallKind::ActivityCartViewed,
            },
        }
    }

    /// Where the call goes: the Orders API's base URL, or the activity URL template
    /// (`{application_id}` replaced by the activity's application).
    pub fn url(&self, orders_base_url: &str, activity_url_template: &str) -> String {
        match self {
            Self::CreateOrder(_) => format!("{}/v1/order", orders_base_url.trim_end_matches('/')),
            Self::Activity(a) => {
                activity_url_template.replace("{application_id}", &a.application_id)
            }
        }
    }

    /// The exact body bytes every attempt sends.
    pub fn body(&self) -> Vec<u8> {
        match self {
            Self::CreateOrder(order) => serde_json::to_vec(order),
            Self::Activity(activity) => serde_json::to_vec(activity),
        }
        .expect("Button objects always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_orders_api_takes_the_key() {
        for kind in CallKind::ALL {
            let expected = if *kind == CallKind::OrderCreate {
                Auth::ApiKey
            } else {
                Auth::None
            };
            assert_eq!(kind.auth(), expected, "{kind}");
            assert_eq!(kind.activity().is_none(), kind.api() == Api::Orders);
        }
    }

    #[test]
    fn an_activity_call_is_named_after_its_activity() {
        for kind in CallKind::ALL {
            if let Some(name) = kind.activity() {
                assert_eq!(kind.as_str(), format!("activity.{}", name.as_str()));
            }
        }
    }
}
