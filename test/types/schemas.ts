/**
 * The TypeBox schemas and the public option types describe the same shapes: each
 * assertion below fails to compile when a schema's Static<> and its type disagree.
 */
import type { Static } from '@sinclair/typebox'
import type { FastifyGcraOptions, LimitSpec, RouteRateLimitConfig } from '../../lib/index.js'
import type { LimitSchema, LimitsSchema, OptionsSchema, RouteConfigSchema } from '../../lib/options/schemas.js'

/** Exactly equal, optional and readonly modifiers included. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
type Assert<T extends true> = T

export type Checks = [
  Assert<Equal<Static<typeof OptionsSchema>, FastifyGcraOptions>>,
  Assert<Equal<Static<typeof RouteConfigSchema>, RouteRateLimitConfig>>,
  Assert<Equal<Static<typeof LimitSchema>, LimitSpec>>,
  Assert<Equal<Static<typeof LimitsSchema>, LimitSpec[]>>,
]

// the check itself: a shape that differs in one optional field is told apart
// @ts-expect-error a missing option
export type Differs = Assert<Equal<Static<typeof OptionsSchema>, Omit<FastifyGcraOptions, 'prefix'>>>
