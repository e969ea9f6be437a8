/** Symbols shared between modules (one place, as in Fastify's own `lib/symbols.js`). */

/** Where a request's `RequestState` is kept between its hooks (null on routes that are not limited). */
export const kState = Symbol('fastify-gcra.state')
