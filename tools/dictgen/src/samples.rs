//! Made-up values of each kind the store packs, for the dictionaries' entropy tables
//! and for measuring them: events in the shapes Signal's sources send (key order as a
//! Segment library writes them), the requests the default blueprint maps them to, and
//! Button's answers as a live-log entry keeps them. Nobody's events: names, prices and
//! ids are drawn from a fixed seed, so the same seed always gives the same values.

use button_delivery::button::CallKind;
use button_delivery::catalog;
use button_delivery::live_logs::ResponseView;
use serde_json::{Map, Value, json};

/// A small, fixed pseudo-random sequence (splitmix64): the samples must not change
/// between runs, or the dictionaries would.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit(self.below(16) as u32, 16).expect("below 16"))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(4),
            self.hex(12)
        )
    }

    /// A message id as different libraries make them.
    fn message_id(&mut self) -> String {
        match self.below(3) {
            0 => self.uuid(),
            1 => format!("ajs-next-{}{}", self.below(1 << 40), self.hex(24)),
            _ => format!("{}-{}", self.hex(8), self.below(1_000_000)),
        }
    }

    fn timestamp(&mut self) -> String {
        format!(
            "20{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            24 + self.below(3),
            1 + self.below(12),
            1 + self.below(28),
            self.below(24),
            self.below(60),
            self.below(60),
            self.below(1000)
        )
    }

    /// A price as shops send them: mostly with cents, some whole.
    fn price(&mut self) -> f64 {
        let most = self.chance(80);
        let cents = 50 + self.below(if most { 20_000 } else { 200_000 });
        if self.chance(20) {
            (cents / 100) as f64
        } else {
            cents as f64 / 100.0
        }
    }

    fn name(&mut self) -> String {
        format!("{} {}", self.pick(ADJECTIVES), self.pick(NOUNS))
    }

    fn sku(&mut self) -> String {
        match self.below(3) {
            0 => format!("SKU-{}", self.below(100_000)),
            1 => self.hex(10).to_uppercase(),
            _ => format!(
                "{}-{}-{}",
                self.pick(NOUNS).to_uppercase(),
                self.below(1000),
                self.pick(SIZES)
            ),
        }
    }

    fn url(&mut self, host: &str) -> String {
        format!(
            "https://{host}/{}/{}-{}",
            self.pick(&["products", "p", "shop", "collections/all/products"]),
            self.pick(NOUNS).to_lowercase(),
            self.below(100_000)
        )
    }

    fn ip(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            1 + self.below(223),
            self.below(256),
            self.below(256),
            1 + self.below(254)
        )
    }

    fn btn_ref(&mut self) -> String {
        format!("srctok-{}", self.hex(16))
    }
}

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Organic",
    "Wireless",
    "Merino",
    "Leather",
    "Vintage",
    "Compact",
    "Slim",
    "Ceramic",
    "Waterproof",
    "Linen",
    "Bamboo",
    "Heavy-duty",
    "Mini",
    "Deluxe",
    "Recycled",
    "Rose",
    "Midnight",
    "Everyday",
    "Pro",
];
const NOUNS: &[&str] = &[
    "Sneakers",
    "Backpack",
    "Headphones",
    "Sweater",
    "Mug",
    "Lamp",
    "Jacket",
    "Wallet",
    "Blender",
    "Yoga Mat",
    "Sunglasses",
    "Candle",
    "Notebook",
    "Kettle",
    "Dress",
    "Watch",
    "Charger",
    "Tote",
    "Planter",
    "Blanket",
];
const CATEGORIES: &[&str] = &[
    "Apparel",
    "Shoes",
    "Electronics",
    "Home & Kitchen",
    "Beauty",
    "Accessories",
    "Outdoor",
    "Toys",
    "Books",
    "Jewelry",
    "Sports",
    "Garden",
];
const SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "42", "9.5", "OS"];
const BRANDS: &[&str] = &[
    "Northwind",
    "Acme",
    "Fabrikam",
    "Contoso",
    "Tailspin",
    "Litware",
];
const HOSTS: &[&str] = &[
    "www.shop.example",
    "store.example.com",
    "example.co.uk",
    "boutique.example.fr",
    "m.example.net",
    "checkout.example.org",
];
const CURRENCIES: &[&str] = &["USD", "USD", "USD", "EUR", "GBP", "CAD", "AUD"];
const LOCALES: &[&str] = &[
    "en-US", "en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "en-CA",
];
const MAIL: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "example.com",
];
const SOURCES: &[&str] = &["button", "partner", "newsletter", "google", "instagram"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

/// An object whose keys keep the order they were added in (as a Segment library
/// writes them; `serde_json`'s map would sort them): each value kept as JSON text.
struct Obj(Vec<(&'static str, String)>);

impl Obj {
    fn new() -> Self {
        Self(Vec::new())
    }
    fn with(self, key: &'static str, value: impl Into<Value>) -> Self {
        self.with_text(key, value.into().to_string())
    }
    fn with_if(self, keep: bool, key: &'static str, value: impl Into<Value>) -> Self {
        if keep { self.with(key, value) } else { self }
    }
    fn with_obj(self, key: &'static str, value: Obj) -> Self {
        self.with_text(key, value.text())
    }
    fn with_list(self, key: &'static str, items: Vec<Obj>) -> Self {
        let items: Vec<String> = items.iter().map(Obj::text).collect();
        self.with_text(key, format!("[{}]", items.join(",")))
    }
    fn with_text(mut self, key: &'static str, json: String) -> Self {
        self.0.push((key, json));
        self
    }
    fn text(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// One event as a source sends it.
pub fn event(rng: &mut Rng) -> String {
    let host = rng.pick(HOSTS);
    let currency = rng.pick(CURRENCIES);
    let btn_ref = rng.btn_ref();
    let kind = rng.below(100);
    let (name, properties) = match kind {
        0..=49 => ("product_view", product(rng, host, currency, false)),
        50..=74 => {
            let p = product(rng, host, currency, true);
            (
                "add_to_cart",
                Obj::new()
                    .with("currency", currency)
                    .with_list("products", vec![p]),
            )
        }
        75..=89 => ("purchase", purchase(rng, host, currency, &btn_ref)),
        90..=94 => ("Order Completed", purchase(rng, host, currency, &btn_ref)),
        _ => ("Product Viewed", product(rng, host, currency, false)),
    };
    let signed_in = rng.chance(40);
    let mut context = Obj::new()
        .with_obj(
            "page",
            Obj::new()
                .with("path", format!("/p/{}", rng.below(100_000)))
                .with_if(rng.chance(50), "referrer", "https://www.google.com/")
                .with("title", rng.name())
                .with(
                    "url",
                    format!(
                        "{}?utm_source={}&utm_medium=affiliate&btn_ref={btn_ref}",
                        rng.url(host),
                        rng.pick(SOURCES)
                    ),
                ),
        )
        .with("userAgent", rng.pick(AGENTS))
        .with("ip", rng.ip())
        .with("locale", rng.pick(LOCALES));
    if rng.chance(30) {
        context = context.with_obj(
            "library",
            Obj::new().with("name", "analytics.js").with(
                "version",
                format!("next-1.{}.{}", 40 + rng.below(40), rng.below(10)),
            ),
        );
    }
    if name == "purchase" && rng.chance(70) {
        let marketing = rng.chance(85);
        context = context.with_obj(
            "consent",
            Obj::new().with_obj("canonical", Obj::new().with("marketing", marketing)),
        );
    }
    let mut e = Obj::new()
        .with("type", "track")
        .with("event", name)
        .with("messageId", rng.message_id())
        .with("timestamp", rng.timestamp());
    e = if signed_in {
        let user = format!("user-{}", rng.below(10_000_000));
        let e = e.with("userId", user);
        let traits = rng.chance(50);
        let email = format!(
            "{}.{}@{}",
            rng.pick(NOUNS).to_lowercase(),
            rng.below(10_000),
            rng.pick(MAIL)
        );
        if traits {
            e.with_obj("traits", Obj::new().with("email", email))
        } else {
            e
        }
    } else {
        e.with("anonymousId", rng.uuid())
    };
    e.with_obj("properties", properties)
        .with_obj("context", context)
        .text()
}

fn product(rng: &mut Rng, host: &str, currency: &str, in_cart: bool) -> Obj {
    let name = rng.name();
    Obj::new()
        .with("product_id", rng.below(10_000_000).to_string())
        .with_if(rng.chance(70), "sku", rng.sku())
        .with("name", name)
        .with_if(rng.chance(40), "brand", rng.pick(BRANDS))
        .with_if(rng.chance(30), "variant", rng.pick(SIZES))
        .with("price", rng.price())
        .with_if(in_cart, "quantity", 1 + rng.below(4))
        .with_if(!in_cart, "currency", currency)
        .with("category", rng.pick(CATEGORIES))
        .with("url", rng.url(host))
        .with_if(
            rng.chance(40),
            "image_url",
            format!("https://cdn.{host}/img/{}.jpg", rng.hex(12)),
        )
}

fn purchase(rng: &mut Rng, host: &str, currency: &str, btn_ref: &str) -> Obj {
    let few = rng.chance(70);
    let lines = 1 + rng.below(if few { 2 } else { 6 });
    let products: Vec<Obj> = (0..lines)
        .map(|_| product(rng, host, currency, true))
        .collect();
    let revenue = rng.price() * lines as f64;
    Obj::new()
        .with(
            "order_id",
            format!(
                "{}{}",
                rng.pick(&["", "ORD-", "#", "SO"]),
                rng.below(100_000_000)
            ),
        )
        .with_if(rng.chance(30), "checkout_id", rng.hex(20))
        .with("revenue", (revenue * 100.0).round() / 100.0)
        .with_if(rng.chance(60), "tax", (revenue * 8.0).round() / 100.0)
        .with_if(rng.chance(50), "shipping", rng.price() / 10.0)
        .with_if(
            rng.chance(15),
            "coupon",
            format!("SAVE{}", 5 * (1 + rng.below(6))),
        )
        .with("currency", currency)
        .with_if(rng.chance(90), "btn_ref", btn_ref)
        .with_list("products", products)
}

/// What the default blueprint makes of `event` for Button, if it maps it.
pub fn request(event: &str, application_id: &str) -> Option<Vec<u8>> {
    static BLUEPRINT: std::sync::LazyLock<button_delivery::blueprint::Blueprint<CallKind>> =
        std::sync::LazyLock::new(|| {
            let entry = catalog::entry("button").expect("the Button entry");
            let doc: Value = serde_json::from_str(entry.default_blueprint.get()).expect("JSON");
            entry.compile(&doc).expect("the default blueprint compiles")
        });
    let event: Value = serde_json::from_str(event).expect("samples are JSON");
    let config = json!({ "application_id": application_id });
    match BLUEPRINT.map(&event, &config) {
        button_delivery::blueprint::Mapped::Request { call, body, .. } => {
            catalog::button::to_call(call, body).ok().map(|c| c.body())
        }
        _ => None,
    }
}

/// One answer of Button's to `request`, as a live-log entry keeps it.
pub fn response(rng: &mut Rng, request: &[u8]) -> Vec<u8> {
    // Written as text, and headers added in their sorted order: the same bytes whether
    // or not a build has `serde_json`'s `preserve_order` (a dev-dependency turns it on).
    let request = std::str::from_utf8(request).expect("requests are JSON text");
    let mut retry_after = None;
    let body = match rng.below(100) {
        0..=79 if request.starts_with(r#"{"order_id""#) => format!(
            r#"{{"meta":{{"status":"ok"}},"object":{{"button_order_id":"btnorder-{}",{}}}"#,
            rng.hex(16),
            &request[1..]
        ),
        0..=84 => r#"{"meta":{"status":"ok"}}"#.to_owned(),
        85..=89 => {
            retry_after = Some((1 + rng.below(60)).to_string());
            r#"{"meta":{"status":"error"},"error":{"message":"Too many requests"}}"#.to_owned()
        }
        90..=94 => format!(
            r#"{{"meta":{{"status":"error"}},"error":{{"message":"{}"}}}}"#,
            rng.pick(&[
                "Order already exists",
                "Invalid btn_ref",
                "Unauthorized",
                "Order not found"
            ])
        ),
        _ => "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
    };
    let mut headers = Map::new();
    headers.insert("content-type".into(), "application/json".into());
    if let Some(seconds) = retry_after {
        headers.insert("retry-after".into(), seconds.into());
    }
    if rng.chance(50) {
        headers.insert("x-request-id".into(), rng.uuid().into());
    }
    let view = ResponseView {
        headers,
        body,
        truncated: false,
    };
    serde_json::to_vec(&view).expect("a response view serialises")
}
