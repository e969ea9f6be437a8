// `npm run demo`: the example ML API on the in-memory store (REDIS_URL=redis://… for Redis).
import { buildApp, shadowSetting, API_KEYS, MAX_BATCH } from './app.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const redisUrl = process.env.REDIS_URL

const shadow = shadowSetting(process.env.SHADOW)
const app = await buildApp({ redisUrl, logger: { level: process.env.LOG_LEVEL ?? 'warn' }, warmupMs: Number(process.env.WARMUP_MS ?? 10_000), shadow })
await app.listen({ port, host })

const base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${app.server.address().port}`
console.log(`Example ML API listening on ${base} (store: ${redisUrl ? 'redis' : 'memory'})`)
console.log('API keys (header x-api-key):')
for (const [key, { tier }] of Object.entries(API_KEYS)) console.log(`  ${key}  (${tier})`)
console.log(`No key: limited by client IP. Batches: up to ${MAX_BATCH} inputs, charged per input, repeated inputs refunded.`)
console.log('Inference admits half its rate while the model warms up (WARMUP_MS, 10 s), and a quarter under pressure.')
console.log('Explain calls are paced to one a second per caller: one that comes early is held until its slot (up to 1 s), not refused.')
if (shadow !== false) console.log(`Shadow mode (SHADOW): ${shadow === true ? 'every route' : shadow.join(', ')} decided and reported as if enforced, and always served.`)
console.log('Try:')
console.log(`  curl -i ${base}/model`)
console.log(`  curl -i -X POST ${base}/predict -H 'content-type: application/json' -H 'x-api-key: demo-free-key' -d '{"input":[5.1,3.5,1.4,0.2]}'`)
console.log(`  curl -i -X POST ${base}/predict/batch -H 'content-type: application/json' -d '{"inputs":[[6.7,3.0,5.2,2.3],[5.9,3.0,4.2,1.5]]}'`)
console.log(`  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} after %{time_total}s\\n' -X POST ${base}/predict/explain -H 'content-type: application/json' -H 'x-api-key: demo-free-key' -d '{"input":[6.1,2.8,4.7,1.2]}'; done`)
console.log(`  curl ${base}/metrics                # Prometheus metrics`)
console.log(`  curl ${base}/documentation/json     # OpenAPI, with each route's 429/413/503 and rate-limit headers`)
console.log('Ctrl-C stops it.')

let closing = false
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    if (closing) return
    closing = true
    const force = setTimeout(() => process.exit(1), 5000)
    force.unref()
    app.close().then(() => { console.log(`\n${signal}: closed cleanly`); process.exit(0) }, (err) => { console.error(err); process.exit(1) })
  })
}
