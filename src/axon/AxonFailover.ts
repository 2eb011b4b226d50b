/**
 * Failover across the registry URLs of `AXON_REGISTRY_URL`. One call tries each URL at most once, starting with
 * the current one, and moves on only when a registry did not answer properly (unreachable, time-out, 5xx). The
 * URL that answered, even with a 4xx, becomes the current one and stays so while it answers (round-robin).
 */
import type * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Ref from "effect/Ref"
import { AxonError, isRetryable } from "./AxonError.js"

const allFailed = (e: AxonError, n: number) =>
  new AxonError({
    reason: e.reason,
    operation: e.operation,
    message: `${e.message} (all ${n} registry URLs failed)`,
    ...(e.status === undefined ? {} : { status: e.status }),
    ...(e.url === undefined ? {} : { url: e.url }),
    ...(e.cause === undefined ? {} : { cause: e.cause })
  })

/** A set of registry URLs with a current one. */
export interface AxonFailover {
  /** The registry the client is talking to now. */
  readonly current: Effect.Effect<string>
  /** Runs `attempt` against the current registry, then the next ones while the answer is retryable. */
  readonly run: <A>(attempt: (url: string) => Effect.Effect<A, AxonError>) => Effect.Effect<A, AxonError>
}

/** Builds the failover state for `urls` (already validated and normalized), starting at the first. */
export const make = (urls: Arr.NonEmptyReadonlyArray<string>): Effect.Effect<AxonFailover> =>
  Effect.map(Ref.make(0), (index) => {
    const n = urls.length
    const stay = (start: number, at: number) =>
      at === start ? Effect.void : Effect.zipRight(
        Ref.set(index, at),
        Effect.logWarning("Axon registry failover").pipe(
          Effect.annotateLogs({ from: urls[start], to: urls[at] })
        )
      )

    const run = <A>(attempt: (url: string) => Effect.Effect<A, AxonError>) =>
      Effect.gen(function*() {
        const start = yield* Ref.get(index)
        let last: AxonError | undefined
        for (let i = 0; i < n; i++) {
          const at = (start + i) % n
          const result = yield* Effect.either(attempt(urls[at]!))
          if (Either.isRight(result)) {
            yield* stay(start, at)
            return result.right
          }
          const error = result.left
          if (!isRetryable(error)) {
            // It answered: this registry is the one to talk to, and a 4xx is never retried elsewhere.
            yield* stay(start, at)
            return yield* Effect.fail(error)
          }
          if (i + 1 < n) {
            yield* Effect.logInfo("Axon registry did not answer; trying the next URL").pipe(
              Effect.annotateLogs({ url: urls[at], reason: error.reason, next: urls[(at + 1) % n] })
            )
          }
          last = error
        }
        // Every URL failed: keep the current one, and say how many were tried.
        return yield* Effect.fail(n === 1 ? last! : allFailed(last!, n))
      })

    return { current: Effect.map(Ref.get(index), (i) => urls[i]!), run }
  })
