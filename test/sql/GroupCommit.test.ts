import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as GroupCommit from "../../src/sql/GroupCommit.js"

// The writer's own logic, with a recording writer: the transaction is not what these tests are about (the
// RelationshipStore's tests run it on a real SQLite file).
const recording = (gate: Deferred.Deferred<void>, started: Deferred.Deferred<void>) => {
  const calls: Array<ReadonlyArray<number>> = []
  const outcome = (item: number) => item < 0 ? Exit.fail(`bad ${item}` as const) : Exit.succeed(item * 10)
  const options: GroupCommit.GroupCommitOptions<number, number, string, never> = {
    maxBatch: 4,
    // The first item waits at the gate: what is submitted meanwhile queues up behind it.
    single: (item) =>
      Effect.suspend(() => {
        calls.push([item])
        return item === 0 ? Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(gate)) : Effect.void
      }).pipe(Effect.zipRight(outcome(item))),
    // All or nothing, as a transaction is: one bad item fails the batch.
    batch: (items) =>
      Effect.suspend(() => {
        calls.push(items)
        return items.some((i) => i < 0) ? Effect.fail("batch rolled back") : Effect.succeed(items.map(outcome))
      })
  }
  return { calls, options }
}

// Lets the forked submitters run up to their wait (they offer synchronously, then wait for their answer).
const settle = Effect.sleep("20 millis")

/** A recording writer whose first item (0) is being written and held at the gate: what comes next queues up. */
const heldAtFirst = (extra?: { readonly writers?: number }) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    const started = yield* Deferred.make<void>()
    const { calls, options } = recording(gate, started)
    const writer = yield* GroupCommit.make({ ...options, ...extra })
    const first = yield* Effect.fork(writer.submit(0))
    yield* Deferred.await(started)
    return { calls, writer, first, open: Deferred.succeed(gate, undefined) }
  })

describe("GroupCommit", () => {
  it.live("group commit: what is submitted while a transaction is written goes in the next one, up to maxBatch, each with its own outcome", () =>
    Effect.scoped(Effect.gen(function*() {
      const { calls, first, open, writer } = yield* heldAtFirst()
      const rest = yield* Effect.fork(
        Effect.all([1, 2, 3, 4, 5, 6].map((i) => writer.submit(i)), { concurrency: "unbounded" })
      )
      yield* settle
      yield* open
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.deepStrictEqual(yield* Fiber.join(rest), [10, 20, 30, 40, 50, 60])
      assert.deepStrictEqual(calls, [[0], [1, 2, 3, 4], [5, 6]])
    })))

  it.live("group commit with writers: while one transaction is being written, another writer writes the next batch", () =>
    Effect.scoped(Effect.gen(function*() {
      const { calls, first, open, writer } = yield* heldAtFirst({ writers: 2 })
      // The first transaction is held at the gate: the second writer gathers and writes these meanwhile.
      const rest = yield* Effect.all([1, 2, 3].map((i) => writer.submit(i)), { concurrency: "unbounded" })
      assert.deepStrictEqual(rest, [10, 20, 30])
      assert.isNull(first.unsafePoll())
      yield* open
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.deepStrictEqual(calls, [[0], [1, 2, 3]])
    })))

  it.live("group commit: a batch that fails is written again one by one, and only its bad item fails", () =>
    Effect.scoped(Effect.gen(function*() {
      const { calls, first, open, writer } = yield* heldAtFirst()
      const rest = yield* Effect.fork(
        Effect.all([1, -2, 3].map((i) => Effect.either(writer.submit(i))), { concurrency: "unbounded" })
      )
      yield* settle
      yield* open
      yield* Fiber.join(first)
      const outcomes = yield* Fiber.join(rest)
      assert.deepStrictEqual(outcomes.map((o) => o._tag === "Right" ? o.right : o.left), [10, "bad -2", 30])
      assert.deepStrictEqual(calls, [[0], [1, -2, 3], [1], [-2], [3]])
    })))

  it.live("group commit: an item whose caller is interrupted while it waits is not written", () =>
    Effect.scoped(Effect.gen(function*() {
      const { calls, first, open, writer } = yield* heldAtFirst()
      const gone = yield* Effect.fork(writer.submit(7))
      const kept = yield* Effect.fork(writer.submit(8))
      yield* settle
      yield* Fiber.interrupt(gone)
      yield* open
      yield* Fiber.join(first)
      assert.strictEqual(yield* Fiber.join(kept), 80)
      assert.deepStrictEqual(calls, [[0], [8]])
    })))

  it.live("group commit: closing its scope finishes the transaction being written and interrupts what waits", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { calls, first, open, writer } = yield* Scope.extend(heldAtFirst(), scope)
      const waiting = yield* Effect.fork(writer.submit(9))
      yield* settle
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle
      // The batch being written is not cut short by the closing scope: it waits for it.
      assert.isNull(closing.unsafePoll())
      yield* open
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(waiting)))
      // Once closed, a submit is refused (interrupted), never left waiting.
      assert.isTrue(Exit.isInterrupted(yield* Effect.exit(writer.submit(10))))
      assert.deepStrictEqual(calls, [[0]])
    }))

  it.live("group commit offer (no fiber): offered items join the same batches as submitted ones and each callback gets its own outcome, once; after the scope closed the callback gets an interruption", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { calls, first, open, writer } = yield* Scope.extend(heldAtFirst(), scope)
      const outcomes = new Map<number, Array<Exit.Exit<number, string>>>()
      const offer = (item: number) =>
        writer.offer(item, (outcome) => outcomes.set(item, [...(outcomes.get(item) ?? []), outcome]))
      offer(1)
      const submitted = yield* Effect.fork(writer.submit(2))
      offer(-3)
      yield* settle
      yield* open
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.strictEqual(yield* Fiber.join(submitted), 20)
      yield* settle
      // One batch for all three (the forked submit joins after the offers, which queue at once; it failed on -3),
      // then each alone: only the bad one fails.
      assert.deepStrictEqual(calls, [[0], [1, -3, 2], [1], [-3], [2]])
      assert.deepStrictEqual(outcomes.get(1), [Exit.succeed(10)])
      assert.deepStrictEqual(outcomes.get(-3), [Exit.fail("bad -3")])
      yield* Scope.close(scope, Exit.void)
      offer(4)
      assert.strictEqual(outcomes.get(4)!.length, 1)
      assert.isTrue(Exit.isInterrupted(outcomes.get(4)![0]!))
    }))
})
