/**
 * Wiring of what watches the limiter: the metrics (with their route and the store
 * observer) and the refusal log. Nothing is set up, and no route gets a hook, when
 * both are off.
 */
import type { FastifyInstance } from 'fastify'
import type { Engine } from '../engine.js'
import { loadPromClient, Metrics } from './metrics.js'
import type { ObservationSink } from './outcome.js'
import { RefusalLog } from './refusal-log.js'

/** Sets up the observers the options ask for; returns the sinks of the routes' onResponse hooks. */
export async function setUpObservers (fastify: FastifyInstance, engine: Engine): Promise<ObservationSink[]> {
  const { options } = engine
  const sinks: ObservationSink[] = []
  if (options.metrics !== undefined) {
    const settings = options.metrics
    const metrics = new Metrics(await loadPromClient(), settings, engine, () => fastify.rateLimiter.stats())
    engine.decider.guard.observer = metrics.observer
    sinks.push(metrics.sink)
    fastify.addHook('onClose', async () => { metrics.close() })
    if (settings.route !== false) {
      fastify.get(settings.route, {
        config: { rateLimit: false },
        // an operations endpoint, not part of the API
        schema: { hide: true } as Record<string, unknown>,
        exposeHeadRoute: false,
      }, (request, reply) => metrics.serve(request, reply))
    }
  }
  if (options.logRefusals !== undefined) sinks.push(new RefusalLog(options.logRefusals).sink)
  return sinks
}
