//! Button's calls: each knows its method, where it goes and which credentials it takes,
//! so nothing else has to guess them from a name.

use reqwest::Method;
use serde::Serialize;

use super::model::{Activity, ActivityName, Order, OrderRef, Refund};
use crate::domain::words::words;

words! {
    /// A Button API call, by the name blueprints, Live Logs and metrics use:
    /// `order.create` (`POST /v1/order` on the Orders API), `order.update`
    /// (`POST /v1/order/{order_id}`: the order as it now stands), `order.cancel`
    /// (`DELETE /v1/order/{order_id}`), `order.refund` (an update of the order as last
    /// sent, less what came back, computed when it is sent), or an activity (`add-to-cart`,
    /// `product-viewed`, `cart-viewed`) on the application's activity host.
    pub enum CallKind {
        OrderCreate = "order.create",
        OrderUpdate = "order.update",
        OrderCancel = "order.cancel",
        OrderRefund = "order.refund",
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
            Self::OrderCreate | Self::OrderUpdate | Self::OrderCancel | Self::OrderRefund => {
                Api::Orders
            }
            Self::ActivityAddToCart | Self::ActivityProductViewed | Self::ActivityCartViewed => {
                Api::Activity
            }
        }
    }

    pub fn method(self) -> Method {
        match self {
            Self::OrderCancel => Method::DELETE,
            _ => Method::POST,
        }
    }

    /// Whether the call changes an order Button already has (so an answer that
    /// Button does not know the order means it never received it).
    pub fn changes_an_order(self) -> bool {
        matches!(
            self,
            Self::OrderUpdate | Self::OrderCancel | Self::OrderRefund
        )
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
            Self::OrderCreate | Self::OrderUpdate | Self::OrderCancel | Self::OrderRefund => None,
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
    /// The order as it now stands (`POST /v1/order/{order_id}`).
    UpdateOrder(Order),
    /// `DELETE /v1/order/{order_id}`.
    CancelOrder(OrderRef),
    /// Some lines came back: sent as an update of the order as last sent to Button,
    /// less those (see [`Order::less`]).
    RefundOrder(Refund),
    Activity(Activity),
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Self::CreateOrder(_) => CallKind::OrderCreate,
            Self::UpdateOrder(_) => CallKind::OrderUpdate,
            Self::CancelOrder(_) => CallKind::OrderCancel,
            Self::RefundOrder(_) => CallKind::OrderRefund,
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
            Self::UpdateOrder(Order { order_id, .. })
            | Self::CancelOrder(OrderRef { order_id })
            | Self::RefundOrder(Refund { order_id, .. }) => {
                format!(
                    "{}/v1/order/{}",
                    orders_base_url.trim_end_matches('/'),
                    percent_encoding::utf8_percent_encode(order_id, PATH_SEGMENT)
                )
            }
            Self::Activity(a) => {
                activity_url_template.replace("{application_id}", &a.application_id)
            }
        }
    }

    /// The order the call creates or changes.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Self::CreateOrder(order) | Self::UpdateOrder(order) => Some(&order.order_id),
            Self::CancelOrder(order) => Some(&order.order_id),
            Self::RefundOrder(refund) => Some(&refund.order_id),
            Self::Activity(_) => None,
        }
    }

    /// The exact body bytes every attempt sends.
    pub fn body(&self) -> Vec<u8> {
        match self {
            Self::CreateOrder(order) | Self::UpdateOrder(order) => serde_json::to_vec(order),
            Self::CancelOrder(_) => Ok(Vec::new()),
            Self::RefundOrder(refund) => serde_json::to_vec(refund),
            Self::Activity(activity) => serde_json::to_vec(activity),
        }
        .expect("Button objects always serialise")
    }
}

/// What an order id may not hold as it is in a URL path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_change_goes_to_the_orders_own_url() {
        let cancel = Call::CancelOrder(OrderRef {
            order_id: "ORD 1/2".into(),
        });
        assert_eq!(
            cancel.url("https://api.usebutton.com/", ""),
            "https://api.usebutton.com/v1/order/ORD%201%2F2"
        );
        assert_eq!(cancel.kind().method(), Method::DELETE);
        assert!(cancel.body().is_empty());
    }

    #[test]
    fn only_the_orders_api_takes_the_key() {
        for kind in CallKind::ALL {
            let expected = if kind.activity().is_none() {
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
