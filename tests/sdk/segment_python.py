"""Sends Order Completed, Product Added and Product Viewed through Segment's Python SDK
(segment-analytics-python), gzipped, to the service at $HOST with the write key
$WRITE_KEY. Message ids start with $TAG. Fails (exit 1) if the SDK reports an error."""

import os
import sys
from datetime import datetime, timezone

from segment.analytics.client import Client

errors = []
client = Client(
    write_key=os.environ["WRITE_KEY"],
    host=os.environ["HOST"],
    gzip=True,
    sync_mode=True,
    max_retries=0,
    on_error=lambda error, batch: errors.append(error),
)
tag = os.environ["TAG"]
when = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
page = {"page": {"url": f"https://shop.example/p/1?btn_ref=srctok-{tag}"}}
product = {"product_id": "sku-1", "sku": "SKU-1", "name": "Blue shirt", "price": 29.99,
           "quantity": 2, "category": "Apparel", "currency": "USD"}

client.track(user_id="user-1", event="Order Completed", message_id=f"{tag}-order",
             timestamp=when, context=page,
             properties={"order_id": f"{tag}-o1", "revenue": 59.98, "currency": "USD",
                         "products": [product]})
client.track(user_id="user-1", event="Product Added", message_id=f"{tag}-added",
             timestamp=when, context=page, properties=product)
client.track(user_id="user-1", event="Product Viewed", message_id=f"{tag}-viewed",
             timestamp=when, context=page, properties=product)
client.identify(user_id="user-1", traits={"plan": "gold"}, message_id=f"{tag}-identify")
client.flush()
if errors:
    print("the SDK reported:", errors, file=sys.stderr)
    sys.exit(1)
