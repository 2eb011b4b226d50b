import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as Admission from "../../src/handshake/Admission.js"

/** Takes a slot and holds it until `release` completes; records the order of admission. */
const holder = (
  gate: Admission.Admission,
  name: string,
  order: Array<string>,
  timeout: Duration.DurationInput = "30 seconds"
) =>
  Effect.gen(function*() {
    const release = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(Effect.gen(function*() {
      const result = yield* gate.admit(timeout)
      order.push(`${name}:${result}`)
      if (result === "admitted") {
        yield* Deferred.await(release)
        gate.release()
      }
      return result
    }))
    yield* Effect.yieldNow()
    return { release: Deferred.succeed(release, undefined), fiber }
  })

describe("Admission (FIFO ceiling)", () => {
  it.effect("waiters are admitted in arrival order, and a newcomer never overtakes them", () =>
    Effect.gen(function*() {
      const gate = yield* Admission.make(1)
      const order: Array<string> = []
      const a = yield* holder(gate, "a", order)
      const b = yield* holder(gate, "b", order)
      const c = yield* holder(gate, "c", order)
      assert.strictEqual(yield* gate.waiting, 2)
      yield* a.release
      // A newcomer arriving with the slot just freed queues behind c.
      const d = yield* holder(gate, "d", order)
      yield* b.release
      yield* c.release
      yield* d.release
      yield* Fiber.join(d.fiber)
      assert.deepStrictEqual(order, ["a:admitted", "b:admitted", "c:admitted", "d:admitted"])
      assert.strictEqual(yield* gate.inUse, 0)
    }))

  it.effect("a waiter is never refused before the timeout; after it, it leaves the line", () =>
    Effect.gen(function*() {
      const gate = yield* Admission.make(1)
      const order: Array<string> = []
      const a = yield* holder(gate, "a", order)
      const b = yield* holder(gate, "b", order, "10 seconds")
      yield* TestClock.adjust("9999 millis")
      assert.deepStrictEqual(order, ["a:admitted"])
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(b.fiber), "timeout")
      assert.strictEqual(yield* gate.waiting, 0)
      yield* a.release
      yield* Fiber.join(a.fiber)
      assert.strictEqual(yield* gate.inUse, 0)
    }))

  it.effect("an interrupted waiter leaves the line; the slot goes to the next one", () =>
    Effect.gen(function*() {
      const gate = yield* Admission.make(1)
      const order: Array<string> = []
      const a = yield* holder(gate, "a", order)
      const b = yield* holder(gate, "b", order)
      const c = yield* holder(gate, "c", order)
      yield* Fiber.interrupt(b.fiber)
      yield* a.release
      yield* c.release
      assert.strictEqual(yield* Fiber.join(c.fiber), "admitted")
      assert.deepStrictEqual(order, ["a:admitted", "c:admitted"])
      assert.strictEqual(yield* gate.inUse, 0)
    }))

  it.effect("close refuses every waiter and every later request; held slots stay held until released", () =>
    Effect.gen(function*() {
      const gate = yield* Admission.make(2)
      const order: Array<string> = []
      const a = yield* holder(gate, "a", order)
      yield* holder(gate, "b", order)
      const c = yield* holder(gate, "c", order)
      yield* gate.close
      assert.strictEqual(yield* Fiber.join(c.fiber), "closed")
      assert.strictEqual(yield* gate.admit("1 second"), "closed")
      assert.isFalse(gate.tryTake())
      assert.strictEqual(yield* gate.inUse, 2)
      yield* a.release
      yield* Fiber.join(a.fiber)
      assert.strictEqual(yield* gate.inUse, 1)
    }))

  it.effect("tryTake takes a free slot at once, never a held one nor ahead of a waiter; release hands it on", () =>
    Effect.gen(function*() {
      const gate = yield* Admission.make(1)
      assert.isTrue(gate.tryTake())
      assert.isFalse(gate.tryTake())
      const order: Array<string> = []
      const b = yield* holder(gate, "b", order)
      assert.strictEqual(yield* gate.waiting, 1)
      // The slot goes to the waiter, not to whoever asks first after the release.
      gate.release()
      assert.isFalse(gate.tryTake())
      while (order.length === 0) yield* Effect.yieldNow()
      assert.deepStrictEqual(order, ["b:admitted"])
      yield* b.release
      yield* Fiber.join(b.fiber)
      assert.strictEqual(yield* gate.inUse, 0)
      assert.isTrue(gate.tryTake())
    }))
})
