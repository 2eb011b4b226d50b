/**
 * The per-API-key rate limit (PROTOCOL.md section 7): a token bucket of `perMinute` tokens, refilled evenly over a
 * minute, whose burst is the same number. The time comes from Effect's `Clock`, so tests drive it with `TestClock`.
 * Buckets live in memory: a restart gives every key a full bucket, which errs on the side of the operator.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

/** A bucket: how many tokens it held at `at` (epoch milliseconds). */
export interface Bucket {
  readonly tokens: number
  readonly at: number
}

/** The outcome of one request against a bucket. */
export type Decision =
  | { readonly _tag: "Allowed"; readonly bucket: Bucket }
  | { readonly _tag: "Limited"; readonly bucket: Bucket; readonly retryAfterSeconds: number }

/**
 * Takes one token from `bucket` (a full one when undefined) at `now`. When none is left, says after how many whole
 * seconds (at least 1) the next token is there: the value of `Retry-After`.
 */
export const take = (bucket: Bucket | undefined, now: number, perMinute: number): Decision => {
  const perMs = perMinute / 60_000
  const elapsed = bucket === undefined ? 0 : Math.max(0, now - bucket.at)
  const tokens = bucket === undefined ? perMinute : Math.min(perMinute, bucket.tokens + elapsed * perMs)
  if (tokens >= 1) return { _tag: "Allowed", bucket: { tokens: tokens - 1, at: now } }
  const waitMs = (1 - tokens) / perMs
  return {
    _tag: "Limited",
    bucket: { tokens, at: now },
    retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000))
  }
}

/** A set of buckets by key id. */
export interface RateLimiter {
  /** One request by `id`: allowed, or limited with its `Retry-After`. */
  readonly take: (id: string) => Effect.Effect<Decision>
}

/** Buckets of `perMinute` requests per minute each. */
export const make = (perMinute: number): RateLimiter => {
  const buckets = new Map<string, Bucket>()
  return {
    take: (id) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const decision = take(buckets.get(id), now, perMinute)
        buckets.set(id, decision.bucket)
        return decision
      })
  }
}
