/**
 * Group commit: writes that callers submit while a transaction is being written go together in the next one.
 * One writer fiber (or `writers` of them, one gathering at a time), owned by the caller's scope, takes everything
 * queued (up to `maxBatch`), writes it in one transaction and answers each caller after the commit. At a light
 * load a batch holds one item and costs what a transaction of its own costs; under load the transaction's fixed
 * cost (taking the connection, BEGIN, COMMIT, the WAL's frames and its fsync) is shared by all the items of a batch
 * (BENCHMARKS.md, issue 11).
 *
 * A batch that fails as a whole (a storage error, a defect, or an item that must not be kept: see `batch`) is
 * rolled back and its items are written again one by one (`single`), so that one bad item fails alone with its
 * own error, and the others are written as if they had come one at a time.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

/** Submits writes to the group commit. */
export interface GroupCommit<in I, out A, out E> {
  /**
   * Writes `item` together with whatever else is waiting, and succeeds or fails with its own outcome once its
   * transaction has committed (or rolled back). Interrupted before its batch starts, the item is not written.
   */
  readonly submit: (item: I) => Effect.Effect<A, E>
  /**
   * `submit` without a fiber: `item` joins the next batch the same way, and `onOutcome` is called with its
   * outcome once its transaction has committed (or rolled back), or with an interruption when the writer has
   * stopped. Called from the writer: it must not throw.
   */
  readonly offer: (item: I, onOutcome: (outcome: Exit.Exit<A, E>) => void) => void
}

/** How the items are written. */
export interface GroupCommitOptions<I, A, E, R> {
  /**
   * Writes two or more items in one transaction and returns each item's outcome, in their order. Failing (with
   * any error, or a defect) means that nothing of the batch was kept: each item is then written by `single`.
   */
  readonly batch: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, unknown, R>
  /** Writes one item in a transaction of its own. */
  readonly single: (item: I) => Effect.Effect<A, E, R>
  /** The most items in one transaction. */
  readonly maxBatch: number
  /**
   * How many batches may be written at once (1 by default). A writer that waits for a database server's answer
   * (PostgreSQL) keeps a few in flight: one writer gathers the next batch while the others wait for theirs. A
   * synchronous writer (SQLite) gains nothing from more than one.
   */
  readonly writers?: number
}

/** The most event-loop turns a batch waits for, each bringing more writes. */
const MAX_TURNS = 4

/** One turn of Node's event loop: resumes after the I/O callbacks that are ready now. */
const nextTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

interface Entry<I, A, E> {
  readonly item: I
  /** Answers the caller (its `Effect.async` callback, or the callback of `offer`). */
  readonly resume: (outcome: Exit.Exit<A, E>) => void
  /** Its caller was interrupted while it waited: not written, unless its batch had already started. */
  abandoned: boolean
}

/** Starts the writer in the current scope; closing the scope finishes the batch being written and stops. */
export const make = <I, A, E, R>(
  options: GroupCommitOptions<I, A, E, R>
): Effect.Effect<GroupCommit<I, A, E>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    // Plain state, touched only from synchronous code: what waits to be written, and how to wake the writer
    // while it waits for a first item. (A Queue and a Deferred per caller cost the handshake about 40 Effect
    // operations more for the same thing: BENCHMARKS.md, issue 11.)
    let pending: Array<Entry<I, A, E>> = []
    let wake: (() => void) | undefined
    let closed = false
    // Runs after the writer has stopped (finalizers run in reverse): items still waiting are interrupted, as
    // their callers would have been had they written themselves, and later submits are refused.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        const left = pending
        pending = []
        for (const entry of left) entry.resume(Exit.interrupt(FiberId.none))
      })
    )

    const alone = (entry: Entry<I, A, E>) =>
      Effect.map(Effect.exit(options.single(entry.item)), (exit) => entry.resume(exit))
    const write = (entries: ReadonlyArray<Entry<I, A, E>>) =>
      entries.length === 1 ? alone(entries[0]!) : Effect.flatMap(
        Effect.exit(options.batch(entries.map((e) => e.item))),
        (exit) =>
          Exit.isSuccess(exit) && exit.value.length === entries.length
            ? Effect.sync(() => entries.forEach((e, i) => e.resume(exit.value[i]!)))
            : Effect.forEach(entries, alone, { discard: true })
      )

    const first = Effect.async<void>((resume) => {
      if (pending.length > 0) return resume(Effect.void)
      wake = () => {
        wake = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => {
        wake = undefined
      })
    })
    // Turns of Node's event loop while each brings more (at most MAX_TURNS), then what has come, up to maxBatch.
    // Without a turn a batch would never form: a fiber resumed by a socket's frame runs to its submit, and the
    // writer would then run before the event loop looks at the next socket. `setImmediate` runs after the I/O
    // callbacks that were ready, so the writes they carry join this batch. At a light load the first turn brings
    // nothing and costs microseconds; under load a batch grows while writes keep coming.
    const more = (turn: number, size: number): Effect.Effect<void> =>
      Effect.flatMap(nextTurn, () =>
        pending.length > size && pending.length < options.maxBatch && turn < MAX_TURNS
          ? more(turn + 1, pending.length)
          : Effect.void)

    // One writer gathers at a time (`wake` is one slot); the others are writing, or wait their turn to gather.
    // A single writer (SQLite) needs no permit: it is the only one that ever gathers.
    const writers = options.writers ?? 1
    const gather = first.pipe(Effect.zipRight(Effect.suspend(() => more(1, pending.length))))
    const writer = (writers === 1 ? gather : (yield* Effect.makeSemaphore(1)).withPermits(1)(gather)).pipe(
      Effect.flatMap(() => {
        // Taken and written in one step: nothing is taken that is not then written. (Another writer that gathered
        // meanwhile may have taken them: this one then finds fewer, or none.)
        const live = pending.splice(0, options.maxBatch).filter((e) => !e.abandoned)
        // A batch, once started, is written and answered whole, even when the scope is closing.
        return live.length === 0 ? Effect.void : Effect.uninterruptible(write(live))
      }),
      Effect.forever
    )
    for (let i = 0; i < writers; i++) yield* Effect.forkScoped(writer)

    const submit = (item: I): Effect.Effect<A, E> =>
      Effect.async<A, E>((resume) => {
        if (closed) return resume(Effect.interrupt)
        const entry: Entry<I, A, E> = { item, resume, abandoned: false }
        pending.push(entry)
        wake?.()
        return Effect.sync(() => {
          entry.abandoned = true
        })
      })
    const offer = (item: I, onOutcome: (outcome: Exit.Exit<A, E>) => void): void => {
      if (closed) return onOutcome(Exit.interrupt(FiberId.none))
      pending.push({ item, resume: onOutcome, abandoned: false })
      wake?.()
    }
    return { submit, offer }
  })
