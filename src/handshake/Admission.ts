/**
 * Admission: the handshake concurrency ceiling with a first-in-first-out queue.
 *
 * Effect's Semaphore is not FIFO under contention (effect 3.22, internal/effect/circular.ts): a release wakes
 * every waiter and the permit goes to whichever fiber runs first, and a newcomer arriving between the release
 * and the wake-up takes the permit ahead of all waiters. The contract promises a queue, so a freed slot is
 * handed directly to the oldest waiter here, and newcomers never overtake anyone who is waiting.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** How a request for a slot ended. `admitted`: the caller holds a slot until it calls `release`. */
export type AdmissionResult = "admitted" | "timeout" | "closed"

/**
 * A concurrency ceiling with a FIFO queue. A slot is held until `release` is called, once, by its holder: the
 * HandshakeServer releases it from the socket's `close` event, so that a connection needs no fiber or scope
 * of its own while it waits for its first frame (BENCHMARKS.md, issue 11).
 */
export interface Admission {
  /** Takes a slot at once if one is free and nobody is waiting (and the gate is open): true when taken. */
  readonly tryTake: () => boolean
  /**
   * Takes a slot, waiting in line for at most `timeout`. Interrupted while waiting, it leaves the line (a slot
   * handed over in the same instant goes back); `admitted` is returned only with the slot held.
   */
  readonly admit: (timeout: Duration.DurationInput) => Effect.Effect<AdmissionResult>
  /** Gives a held slot back: to the oldest waiter if there is one. */
  readonly release: () => void
  /** Refuses every waiter and every later request with `closed` (on shutdown). Held slots stay held. */
  readonly close: Effect.Effect<void>
  /** Slots in use. */
  readonly inUse: Effect.Effect<number>
  /** Requests waiting in line. */
  readonly waiting: Effect.Effect<number>
}

interface Waiter {
  /** Set when a slot was handed over (true) or the gate closed (false), before `wake` is called. */
  outcome: boolean | undefined
  wake: ((granted: boolean) => void) | undefined
}

/** A gate with `permits` slots. */
export const make = (permits: number): Effect.Effect<Admission> =>
  Effect.sync(() => {
    if (!Number.isInteger(permits) || permits < 1) throw new RangeError("Admission: permits must be a positive integer")
    let free = permits
    let closed = false
    // A Set iterates in insertion order: the first entry is the oldest waiter.
    const waiters = new Set<Waiter>()

    const settleWaiter = (waiter: Waiter, granted: boolean) => {
      waiters.delete(waiter)
      waiter.outcome = granted
      waiter.wake?.(granted)
    }

    const release = () => {
      const next = waiters.values().next()
      if (next.done === true) free++
      else settleWaiter(next.value, true)
    }

    const waitFor = (waiter: Waiter) =>
      Effect.async<boolean>((resume) => {
        if (waiter.outcome !== undefined) return resume(Effect.succeed(waiter.outcome))
        waiter.wake = (granted) => resume(Effect.succeed(granted))
      })

    // Runs uninterruptibly once the wait is over, however it ended: leaves the line, or keeps (or gives back)
    // a slot that was handed over in the same instant.
    const afterWait = (waiter: Waiter, timedOut: boolean): AdmissionResult => {
      if (waiters.delete(waiter)) return timedOut ? "timeout" : "closed"
      return waiter.outcome === true ? "admitted" : "closed"
    }

    const tryTake = () => {
      if (closed || free === 0 || waiters.size > 0) return false
      free--
      return true
    }

    const admit = (timeout: Duration.DurationInput) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend((): Effect.Effect<AdmissionResult> => {
          if (closed) return Effect.succeed("closed")
          if (tryTake()) return Effect.succeed("admitted")
          const waiter: Waiter = { outcome: undefined, wake: undefined }
          waiters.add(waiter)
          return restore(Effect.timeoutOption(waitFor(waiter), timeout)).pipe(
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                if (!waiters.delete(waiter) && waiter.outcome === true) release()
              })
            ),
            Effect.map((result) => afterWait(waiter, Option.isNone(result)))
          )
        })
      )

    const close = Effect.sync(() => {
      closed = true
      for (const waiter of waiters) settleWaiter(waiter, false)
    })

    return {
      tryTake,
      admit,
      release,
      close,
      inUse: Effect.sync(() => permits - free),
      waiting: Effect.sync(() => waiters.size)
    }
  })
