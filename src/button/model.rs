//! Button's request objects, as its Orders and activity APIs define them, with the
//! rules Button enforces. Nothing here knows where the values came from.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// `POST /v1/order`: a conversion. Money is in integer minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub order_id: String,
    pub total: i64,
    pub currency: String,
    pub purchase_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btn_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalization_date: Option<String>,
}

/// An order named by its id alone (`DELETE /v1/order/{order_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRef {
    pub order_id: String,
}

impl OrderRef {
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.order_id.is_empty() || self.order_id.len() > 255 || !self.order_id.is_ascii() {
            out.push(violation("order_id", "must be 1 to 255 ASCII characters"));
        }
        out
    }
}

/// What came back of an order (`order.refund`): by line, how many units. No lines is
/// the whole order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<RefundLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundLine {
    pub identifier: String,
    /// Units refunded; none given is the whole line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

impl Refund {
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = OrderRef {
            order_id: self.order_id.clone(),
        }
        .violations();
        for (i, line) in self.line_items.iter().enumerate() {
            if line.identifier.is_empty() {
                out.push(violation(
                    format!("line_items[{i}].identifier"),
                    "must not be empty",
                ));
            }
            if line.quantity.is_some_and(|q| q <= 0) {
                out.push(violation(
                    format!("line_items[{i}].quantity"),
                    "must be a positive number of units",
                ));
            }
        }
        out
    }
}

impl Order {
    /// The order less what `refund` gives back: each refunded line's quantity and total,
    /// and the order's total, recomputed exactly in minor units (a line's new total is
    /// its unit `amount` times what is left, or its total scaled when that is exact;
    /// the order's total drops by what the lines lost, never below zero). Lines left
    /// with nothing go. Refusals say what does not fit the order as sent.
    pub fn less(&self, refund: &Refund) -> Result<Order, String> {
        let mut order = self.clone();
        for back in &refund.line_items {
            let Some(line) = order
                .line_items
                .iter_mut()
                .find(|l| l.identifier == back.identifier)
            else {
                return Err(format!(
                    "line {:?} is not in order {} as it was last sent to Button",
                    back.identifier, self.order_id
                ));
            };
            let had = line.quantity.unwrap_or(1);
            let returned = back.quantity.unwrap_or(had);
            if returned > had {
                return Err(format!(
                    "line {:?}: {returned} units refunded, but the order as last sent has {had}",
                    back.identifier
                ));
            }
            let left = had - returned;
            let new_total = match line.amount {
                Some(unit) => unit * left,
                None if line.total % had == 0 => line.total / had * left,
                None => {
                    return Err(format!(
                        "line {:?}: its total {} does not split exactly into {had} units and it has no unit amount",
                        back.identifier, line.total
                    ));
                }
            };
            order.total = (order.total - (line.total - new_total)).max(0);
            line.total = new_total;
            line.quantity = Some(left);
        }
        order.line_items.retain(|l| l.quantity != Some(0));
        Ok(order)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_new: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub identifier: String,
    /// Minor units for all units of the line.
    pub total: i64,
    /// Minor units per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upc: Option<String>,
    /// Most general first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// `POST https://{application_id}.mobileapi.usebutton.com/v1/app/activity`: user
/// activity (product views, add-to-cart). Absent values are sent as `null`, as Button's
/// own libraries do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    pub application_id: String,
    #[serde(default)]
    pub btn_ref: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub ifa: Option<String>,
    pub activity_data: ActivityData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityData {
    pub name: ActivityName,
    #[serde(default)]
    pub products: Vec<ActivityProduct>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityName {
    #[serde(rename = "product-viewed")]
    ProductViewed,
    #[serde(rename = "add-to-cart")]
    AddToCart,
    #[serde(rename = "cart-viewed")]
    CartViewed,
}

impl ActivityName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductViewed => "product-viewed",
            Self::AddToCart => "add-to-cart",
            Self::CartViewed => "cart-viewed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityProduct {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub upc: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// Minor units per unit.
    #[serde(default)]
    pub value: Option<i64>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A rule of Button's the request breaks: which field, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

fn violation(field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

/// `^app-[0-9a-zA-Z]+$`, the shape of a Button application id.
pub fn is_application_id(s: &str) -> bool {
    s.strip_prefix("app-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_iso8601_with_zone(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn check_btn_ref(btn_ref: Option<&str>, out: &mut Vec<Violation>) {
    if let Some(r) = btn_ref
        && (r.len() >= 256
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)))
    {
        out.push(violation(
            "btn_ref",
            "must be URL-safe ASCII shorter than 256 bytes",
        ));
    }
}

impl Order {
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.order_id.is_empty() || self.order_id.len() > 255 || !self.order_id.is_ascii() {
            out.push(violation("order_id", "must be 1 to 255 ASCII characters"));
        }
        if self.total < 0 {
            out.push(violation(
                "total",
                format!("must not be negative (is {})", self.total),
            ));
        }
        if !is_currency_code(&self.currency) {
            out.push(violation(
                "currency",
                format!("{:?} is not a three-letter ISO 4217 code", self.currency),
            ));
        }
        if !is_iso8601_with_zone(&self.purchase_date) {
            out.push(violation(
                "purchase_date",
                format!("{:?} is not an ISO-8601 time with zone", self.purchase_date),
            ));
        }
        check_btn_ref(self.btn_ref.as_deref(), &mut out);
        if self
            .customer_order_id
            .as_ref()
            .is_some_and(|c| c.len() > 255)
        {
            out.push(violation(
                "customer_order_id",
                "must be at most 255 characters",
            ));
        }
        if let Some(hash) = self
            .customer
            .as_ref()
            .and_then(|c| c.email_sha256.as_deref())
            && !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            out.push(violation("customer.email_sha256", "must be 64 hex digits"));
        }
        let mut identifiers = HashSet::new();
        for (i, item) in self.line_items.iter().enumerate() {
            if item.identifier.is_empty() {
                out.push(violation(
                    format!("line_items[{i}].identifier"),
                    "must not be empty",
                ));
            } else if !identifiers.insert(item.identifier.as_str()) {
                out.push(violation(
                    format!("line_items[{i}].identifier"),
                    format!(
                        "{:?} appears twice; identifiers are unique within an order",
                        item.identifier
                    ),
                ));
            }
            if item.quantity.is_some_and(|q| q < 1) {
                out.push(violation(
                    format!("line_items[{i}].quantity"),
                    "must be at least 1",
                ));
            }
        }
        out
    }
}

impl Activity {
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if !is_application_id(&self.application_id) {
            out.push(violation(
                "application_id",
                "does not look like app-xxxxxxxx",
            ));
        }
        check_btn_ref(self.btn_ref.as_deref(), &mut out);
        if self.activity_data.products.is_empty() {
            out.push(violation(
                "activity_data.products",
                "must hold at least one product",
            ));
        }
        for (i, p) in self.activity_data.products.iter().enumerate() {
            if p.id.as_deref().is_none_or(str::is_empty) {
                out.push(violation(
                    format!("activity_data.products[{i}].id"),
                    "is required",
                ));
            }
            if p.currency.as_deref().is_some_and(|c| !is_currency_code(c)) {
                out.push(violation(
                    format!("activity_data.products[{i}].currency"),
                    "is not a three-letter ISO 4217 code",
                ));
            }
            if p.quantity.is_some_and(|q| q < 1) {
                out.push(violation(
                    format!("activity_data.products[{i}].quantity"),
                    "must be at least 1",
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_lines(amount_a: Option<i64>, total_a: i64) -> Order {
        serde_json::from_value(serde_json::json!({
            "order_id": "o-1", "total": 4100, "currency": "JPY",
            "purchase_date": "2024-05-01T10:00:00Z",
            "line_items": [
                {"identifier": "a", "total": total_a, "amount": amount_a, "quantity": 3},
                {"identifier": "b", "total": 500, "amount": 500, "quantity": 1}
            ]
        }))
        .unwrap()
    }

    fn refund(lines: serde_json::Value) -> Refund {
        serde_json::from_value(serde_json::json!({"order_id": "o-1", "line_items": lines})).unwrap()
    }

    #[test]
    fn a_refund_recomputes_lines_and_total_exactly() {
        let order = two_lines(Some(1200), 3600);
        let less = order
            .less(&refund(
                serde_json::json!([{"identifier": "a", "quantity": 1}]),
            ))
            .unwrap();
        assert_eq!(less.total, 2900);
        assert_eq!(less.line_items[0].total, 2400);
        assert_eq!(less.line_items[0].quantity, Some(2));
        assert_eq!(less.line_items[1], order.line_items[1]);
        // A whole line (no quantity given) goes; every line gone leaves nothing.
        let less = order
            .less(&refund(serde_json::json!([{"identifier": "b"}])))
            .unwrap();
        assert_eq!((less.total, less.line_items.len()), (3600, 1));
        let none = order
            .less(&refund(
                serde_json::json!([{"identifier": "a"}, {"identifier": "b"}]),
            ))
            .unwrap();
        assert!(none.line_items.is_empty());
        assert_eq!(none.total, 0);
        // Without a unit amount, the line total is scaled only when that is exact.
        let scaled = two_lines(None, 3600)
            .less(&refund(
                serde_json::json!([{"identifier": "a", "quantity": 2}]),
            ))
            .unwrap();
        assert_eq!(scaled.line_items[0].total, 1200);
        assert!(
            two_lines(None, 3601)
                .less(&refund(
                    serde_json::json!([{"identifier": "a", "quantity": 1}])
                ))
                .unwrap_err()
                .contains("does not split exactly")
        );
    }

    #[test]
    fn a_refund_that_does_not_fit_the_order_is_refused() {
        let order = two_lines(Some(1200), 3600);
        let unknown = order
            .less(&refund(
                serde_json::json!([{"identifier": "z", "quantity": 1}]),
            ))
            .unwrap_err();
        assert!(unknown.contains("\"z\" is not in order o-1"), "{unknown}");
        let too_many = order
            .less(&refund(
                serde_json::json!([{"identifier": "a", "quantity": 4}]),
            ))
            .unwrap_err();
        assert!(too_many.contains("4 units refunded"), "{too_many}");
    }

    fn order() -> Order {
        Order {
            order_id: "o-1".into(),
            total: 1999,
            currency: "USD".into(),
            purchase_date: "2017-07-25T08:23:52Z".into(),
            btn_ref: Some("srctok-abc123".into()),
            customer: None,
            customer_order_id: None,
            line_items: vec![],
            finalization_date: None,
        }
    }

    #[test]
    fn a_well_formed_order_breaks_no_rule() {
        assert!(order().violations().is_empty());
    }

    #[test]
    fn order_rules_name_the_field() {
        let mut o = order();
        o.total = -1;
        o.currency = "usd".into();
        o.purchase_date = "yesterday".into();
        o.btn_ref = Some("has space".into());
        let item = |id: &str| LineItem {
            identifier: id.into(),
            total: 1,
            amount: None,
            quantity: Some(0),
            description: None,
            sku: None,
            upc: None,
            category: None,
            attributes: None,
        };
        o.line_items = vec![item("a"), item("a")];
        let fields: Vec<String> = o.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "total",
                "currency",
                "purchase_date",
                "btn_ref",
                "line_items[0].quantity",
                "line_items[1].identifier",
                "line_items[1].quantity"
            ]
        );
    }

    #[test]
    fn application_ids_follow_buttons_shape() {
        assert!(is_application_id("app-abc123def456"));
        assert!(!is_application_id("app-"));
        assert!(!is_application_id("app-abc.def"));
        assert!(!is_application_id("abc123"));
    }

    #[test]
    fn activity_serialises_absent_values_as_null_like_buttons_libraries() {
        let a = Activity {
            application_id: "app-1".into(),
            btn_ref: None,
            session_id: None,
            ifa: None,
            activity_data: ActivityData {
                name: ActivityName::AddToCart,
                products: vec![],
            },
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"application_id":"app-1","btn_ref":null,"session_id":null,"ifa":null,"activity_data":{"name":"add-to-cart","products":[]}}"#
        );
    }
}
