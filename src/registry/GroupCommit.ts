/**
 * Group commit: concurrent writes that wait for the store go to it together, in one transaction, and each caller
 * is answered only after that transaction committed. After a registry loses its data the whole network registers
 * again at once; committing each registration on its own costs a commit (and on a real disk an fsync) each, where a
 * batch shares one (issue 14, BENCHMARKS.md).
 *
 * A writer fiber takes everything queued (up to `maxBatch`) and commits it (on PostgreSQL a few writers, each with a
 * batch in flight):
 *
 * - a batch of one is committed on its own, as before: at low load nothing waits for company;
 * - a batch that fails as a whole (a row the database refuses rolls the transaction back) is committed again one
 *   item at a time, so one bad item fails alone, with its own error, and the others succeed;
 * - an item's own refusal (`E`, e.g. a `409`) is its outcome, not a failure of the batch.
 *
 * The writer gathers a batch at the end of the event loop's turn (`setImmediate`), not on a timer: the requests
 * Node parsed in the same turn are in it, and a lone request waits for nothing but the end of that turn. Without it
 * a synchronous store (better-sqlite3) would always see batches of one, because each request's fiber runs to its
 * write within the I/O callback that parsed it.
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/** What a group commit is built from. */
export interface GroupCommitOptions<I, A, E> {
  /** The most items in one transaction. */
  readonly maxBatch: number
  /**
   * Commits `items` (at least one) in one transaction and gives each item's outcome, in order. A failure (or a
   * defect) of the whole means nothing was committed: the items are then committed one by one, and an item
   * alone gets the failure of its own commit as its outcome (a `503` when the database is out of reach).
   */
  readonly commit: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, E>
  /**
   * How many batches may be committing at once (1 by default). A store that waits for a database's answer keeps
   * several in flight, so that a batch is gathered and sent while the previous one is on the wire; a synchronous
   * store gains nothing from more than one.
   */
  readonly writers?: number
  /** The metrics' name prefix, e.g. `axon_registration`. */
  readonly name: string
}

/** The end of the event loop's current turn: the I/O Node has read in this turn has been handed out by then. */
const endOfTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * The group commit's metrics, for an operator's metrics exporter and for the tests that show batches form: the
 * transactions by their number of items, and the batches that failed as a whole and were committed again one by
 * one.
 */
export const metrics = (name: string): GroupCommitMetrics => {
  let made = madeMetrics.get(name)
  if (made === undefined) {
    made = {
      sizes: Metric.histogram(
        `${name}_batch_size`,
        MetricBoundaries.exponential({ start: 1, factor: 2, count: 8 }),
        "items committed per transaction by the group commit"
      ),
      retried: Metric.counter(`${name}_batch_retried_one_by_one`, {
        description: "batches that failed as a whole and were committed again one item at a time"
      })
    }
    // One instance per name: a histogram made twice with the same key did not read back the other's updates.
    madeMetrics.set(name, made)
  }
  return made
}

/** See `metrics`. */
export interface GroupCommitMetrics {
  readonly sizes: Metric.Metric.Histogram<number>
  readonly retried: Metric.Metric.Counter<number>
}

const madeMetrics = new Map<string, GroupCommitMetrics>()

type Waiting<I, A, E> = readonly [item: I, answer: Deferred.Deferred<A, E>]

/**
 * Starts the writer in the current scope and gives the function callers submit through: it completes with the
 * item's outcome once the transaction holding it committed.
 */
export const make = <I, A, E>(
  options: GroupCommitOptions<I, A, E>
): Effect.Effect<(item: I) => Effect.Effect<A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Waiting<I, A, E>>()
    const { retried, sizes } = metrics(options.name)

    /** Commits `items` together; the exits of each, or a failure of the whole. */
    const commitTogether = (items: ReadonlyArray<I>) =>
      Effect.exit(Effect.suspend(() => options.commit(items))).pipe(
        Effect.tap((exit) => Exit.isSuccess(exit) ? Metric.update(sizes, items.length) : Effect.void)
      )

    /** One item on its own: its outcome, a failure or defect of its commit included. */
    const commitAlone = (item: I): Effect.Effect<Exit.Exit<A, E>> =>
      Effect.map(commitTogether([item]), (exit) =>
        Exit.isSuccess(exit)
          ? exit.value[0] ?? Exit.die(new Error("group commit: the store gave no outcome for the item"))
          : Exit.failCause(exit.cause))

    const settle = (batch: ReadonlyArray<Waiting<I, A, E>>) =>
      Effect.gen(function*() {
        if (batch.length === 1) {
          const [item, answer] = batch[0]!
          return yield* Deferred.done(answer, yield* commitAlone(item))
        }
        const together = yield* commitTogether(batch.map(([item]) => item))
        if (Exit.isSuccess(together) && together.value.length === batch.length) {
          for (let i = 0; i < batch.length; i++) yield* Deferred.done(batch[i]![1], together.value[i]!)
          return
        }
        yield* Metric.increment(retried)
        for (const [item, answer] of batch) yield* Deferred.done(answer, yield* commitAlone(item))
      }).pipe(
        // Stopping: whoever still waits is interrupted rather than left hanging.
        Effect.onInterrupt(() => Effect.forEach(batch, ([, answer]) => Deferred.interrupt(answer), { discard: true }))
      )

    // One writer gathers at a time (the others are committing, or wait their turn): a batch is everything that
    // queued up meanwhile, never split among idle writers.
    const gathering = yield* Effect.makeSemaphore(1)
    const gather = gathering.withPermits(1)(
      Queue.take(queue).pipe(
        Effect.zipLeft(endOfTurn),
        Effect.flatMap((first) =>
          Effect.map(Queue.takeUpTo(queue, options.maxBatch - 1), (rest) => [first, ...Chunk.toReadonlyArray(rest)])
        )
      )
    )
    const writer = gather.pipe(
      Effect.flatMap(settle),
      Effect.forever,
      Effect.onInterrupt(() =>
        Effect.flatMap(
          Queue.takeAll(queue),
          (left) => Effect.forEach(left, ([, answer]) => Deferred.interrupt(answer), { discard: true })
        )
      ),
      Effect.withTracerEnabled(false)
    )
    for (let i = 0; i < (options.writers ?? 1); i++) yield* Effect.forkScoped(writer)

    return (item: I) =>
      Effect.flatMap(Deferred.make<A, E>(), (answer) =>
        Effect.zipRight(Queue.offer(queue, [item, answer]), Deferred.await(answer)))
  })
