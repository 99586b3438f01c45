// Sends Order Completed, Product Added and Product Viewed through Segment's Node SDK
// (@segment/analytics-node) to the service at $HOST with the write key $WRITE_KEY.
// Message ids start with $TAG. Exits 1 if the SDK reports an error.
const { Analytics } = require('@segment/analytics-node')

const analytics = new Analytics({
  writeKey: process.env.WRITE_KEY,
  host: process.env.HOST,
  path: '/v1/batch',
  maxRetries: 0,
  flushAt: 4,
  flushInterval: 200,
})
analytics.on('error', (error) => {
  console.error('the SDK reported:', error)
  process.exitCode = 1
})
analytics.on('http_request', (request) => {
  console.log('POST', request.url)
})
const tag = process.env.TAG
const timestamp = new Date('2024-05-01T10:00:00Z')
const context = { page: { url: `https://shop.example/p/1?btn_ref=srctok-${tag}` } }
const product = {
  product_id: 'sku-1', sku: 'SKU-1', name: 'Blue shirt', price: 29.99,
  quantity: 2, category: 'Apparel', currency: 'USD',
}
analytics.track({
  userId: 'user-1', event: 'Order Completed', messageId: `${tag}-order`, timestamp, context,
  properties: { order_id: `${tag}-o1`, revenue: 59.98, currency: 'USD', products: [product] },
})
analytics.track({ userId: 'user-1', event: 'Product Added', messageId: `${tag}-added`, timestamp, context, properties: product })
analytics.track({ userId: 'user-1', event: 'Product Viewed', messageId: `${tag}-viewed`, timestamp, context, properties: product })
analytics.identify({ userId: 'user-1', traits: { plan: 'gold' }, messageId: `${tag}-identify` })
analytics.closeAndFlush({ timeout: 10000 }).then(() => {
  console.log('flushed')
})
