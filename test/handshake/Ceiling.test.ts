import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { connect, opened, type RawClient, refused } from "../support/ws.js"
import {
  authMessage,
  eventually,
  fromContext,
  handshakeWith,
  neuronLayer,
  NOW,
  serviceAlone,
  startNeuron,
  type TestNeuron
} from "./fixture.js"

/** Waits in real time (the tests' Clock is a TestClock): for what happens in other processes' or sockets' time. */
const realWait = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

const states = (neuron: TestNeuron) =>
  Effect.map(neuron.server.activeSessions, (sessions) => sessions.map((s) => s.state).sort())

const waitStates = (neuron: TestNeuron, expected: Array<string>) =>
  eventually(states(neuron), (s) => JSON.stringify(s) === JSON.stringify([...expected].sort()), expected.join(","))

/** A raw client that is upgraded and sits in the auth step, holding a slot. */
const holdSlot = (neuron: TestNeuron) => Effect.tap(connect(neuron.url), opened)

/** Checks a 503 answer: Retry-After, the JSON error body. */
const assertUnavailable = (answer: Effect.Effect.Success<ReturnType<typeof refused>>) => {
  assert.strictEqual(answer.status, 503)
  assert.strictEqual(answer.headers["retry-after"], "5")
  assert.strictEqual(JSON.parse(answer.body).error.code, "SERVICE_UNAVAILABLE")
}

describe("concurrency ceiling (FIFO queue)", () => {
  it.scoped("with the limit at 2, a third connection waits (not rejected) and completes when a slot frees", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ maxConcurrentHandshakes: 2 })
      const first = yield* holdSlot(neuron)
      yield* holdSlot(neuron)
      const third = yield* Effect.fork(handshakeWith(neuron, yield* makePatientKey))
      yield* waitStates(neuron, ["awaiting_auth", "awaiting_auth", "queued"])
      first.ws.close(1000)
      const result = yield* Fiber.join(third)
      assert.strictEqual(result.status, "new")
      yield* waitStates(neuron, ["awaiting_auth"])
    }))

  it.scoped("one that waits past the queue timeout gets 503 with Retry-After and the error body", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ maxConcurrentHandshakes: 2, queueTimeout: "5 seconds" })
      yield* holdSlot(neuron)
      yield* holdSlot(neuron)
      const queued = yield* connect(neuron.url)
      yield* waitStates(neuron, ["awaiting_auth", "awaiting_auth", "queued"])
      yield* TestClock.adjust("4999 millis")
      assert.deepStrictEqual(yield* states(neuron), ["awaiting_auth", "awaiting_auth", "queued"])
      yield* TestClock.adjust("1 millis")
      assertUnavailable(yield* refused(queued))
      yield* waitStates(neuron, ["awaiting_auth", "awaiting_auth"])
      const viaClient = yield* Effect.fork(Effect.flip(handshakeWith(neuron, yield* makePatientKey)))
      yield* waitStates(neuron, ["awaiting_auth", "awaiting_auth", "queued"])
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(viaClient)
      assert.strictEqual(error.reason, "HttpStatus")
      assert.strictEqual(error.status, 503)
      assert.strictEqual(error.code, "SERVICE_UNAVAILABLE")
    }))

  it.scoped("queued upgrades are served first in, first out", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ maxConcurrentHandshakes: 1 })
      const holder = yield* holdSlot(neuron)
      const queue: Array<RawClient> = []
      for (let i = 1; i <= 3; i++) {
        queue.push(yield* connect(neuron.url))
        yield* waitStates(neuron, ["awaiting_auth", ...Array(i).fill("queued")])
      }
      let current = holder
      for (const next of queue) {
        current.ws.close(1000)
        yield* opened(next)
        current = next
      }
    }))

  it.scoped("activeSessions shows each handshake's state and, once known, its provider", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron()
      const client = yield* holdSlot(neuron)
      yield* waitStates(neuron, ["awaiting_auth"])
      yield* client.sendJson(yield* authMessage(yield* makePatientKey))
      yield* client.message
      const [session] = yield* neuron.server.activeSessions
      assert.strictEqual(session!.state, "awaiting_challenge_response")
      assert.strictEqual(session!.provider_npi, "1558598797")
      assert.strictEqual(session!.started_at, "2026-11-22T10:30:00.000Z")
      assert.match(session!.connection_id, /^[0-9a-f-]{36}$/)
    }))
})

describe("shutdown", () => {
  it.scoped("the Layer embedded in a host program and closed by it: open sockets get 1001, queued upgrades 503", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const dir = yield* Sqlite.makeTempDir("handshake-host-")
      const hostScope = yield* Scope.make()
      const neuron = fromContext(
        yield* Layer.buildWithScope(neuronLayer(dir, { maxConcurrentHandshakes: 2 }), hostScope).pipe(Effect.orDie)
      )
      const inAuth = yield* holdSlot(neuron)
      const inChallenge = yield* holdSlot(neuron)
      yield* inChallenge.sendJson(yield* authMessage(yield* makePatientKey))
      assert.strictEqual((yield* inChallenge.message).type, "handshake.challenge")
      const queued = yield* connect(neuron.url)
      yield* waitStates(neuron, ["awaiting_auth", "awaiting_challenge_response", "queued"])

      yield* Scope.close(hostScope, Exit.void)

      assert.strictEqual((yield* inAuth.closed).code, 1001)
      assert.strictEqual((yield* inChallenge.closed).code, 1001)
      assertUnavailable(yield* refused(queued))
      // The handshakes' outcomes were written before the services they write to closed: the file has them.
      const failed = yield* Effect.flatMap(AuditLog, (audit) => audit.list({ action: "handshake.failed" })).pipe(
        Effect.provide(
          AuditLog.Default.pipe(
            Layer.provide(Sqlite.layer({ filename: `${dir}/neuron.db`, migrations: NeuronMigrations }))
          )
        )
      )
      assert.deepStrictEqual(failed.map((e) => [e.details.code, e.details.close_code]), [
        ["SHUTDOWN", 1001],
        ["SHUTDOWN", 1001]
      ])
    }))

  it.scoped("interrupting the server (as SIGTERM does) closes open sockets with 1001 and queued upgrades with 503", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const dir = yield* Sqlite.makeTempDir("handshake-launch-")
      const started = yield* Deferred.make<TestNeuron>()
      const program = Layer.build(neuronLayer(dir, { maxConcurrentHandshakes: 1 })).pipe(
        Effect.flatMap((context) => Deferred.succeed(started, fromContext(context))),
        Effect.zipRight(Effect.never),
        Effect.scoped,
        Effect.orDie
      )
      const fiber = yield* Effect.fork(program)
      const neuron = yield* Deferred.await(started)
      const open = yield* holdSlot(neuron)
      const queued = [yield* connect(neuron.url), yield* connect(neuron.url)]
      yield* waitStates(neuron, ["awaiting_auth", "queued", "queued"])

      yield* Fiber.interrupt(fiber)

      assert.strictEqual((yield* open.closed).code, 1001)
      for (const client of queued) assertUnavailable(yield* refused(client))
      // The port is closed: a new connection is refused at the TCP level.
      const late = yield* connect(neuron.url)
      const event = yield* late.next
      assert.strictEqual(event._tag, "Error")
    }))

  it.scoped("closing the HandshakeServer waits for the outcome of a handshake whose client already left: its handshake.failed entry is written first", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const { deps, neuron, serviceScope } = yield* serviceAlone(yield* Sqlite.makeTempDir("handshake-outcome-"))
      // The database is busy (another transaction holds the one connection): the outcome's write waits.
      const sql = Context.get(deps, SqlClient.SqlClient)
      const release = yield* Deferred.make<void>()
      const holding = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        sql.withTransaction(Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release)))
      )
      yield* Deferred.await(holding)
      const client = yield* holdSlot(neuron)
      client.ws.terminate()
      // The socket goes on the server's side (its slot given back) and its outcome waits for the database.
      yield* realWait(200)

      const closing = yield* Effect.fork(Scope.close(serviceScope, Exit.void))
      yield* realWait(100)
      assert.isNull(closing.unsafePoll(), "the server closed before its handshake's outcome was written")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(closing)
      const failed = yield* neuron.audit.list({ action: "handshake.failed" })
      assert.strictEqual(failed.length, 1)
    }))

  it.scoped("closing the HandshakeServer alone (the HTTP server stays up): 1001, 503, and 503 for later upgrades", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const { neuron, serviceScope } = yield* serviceAlone(yield* Sqlite.makeTempDir("handshake-service-"), {
        maxConcurrentHandshakes: 1
      })
      const open = yield* holdSlot(neuron)
      const queued = yield* connect(neuron.url)
      yield* waitStates(neuron, ["awaiting_auth", "queued"])

      yield* Scope.close(serviceScope, Exit.void)

      assert.strictEqual((yield* open.closed).code, 1001)
      assertUnavailable(yield* refused(queued))
      assertUnavailable(yield* refused(yield* connect(neuron.url)))
      const failed = yield* neuron.audit.list({ action: "handshake.failed" })
      assert.deepStrictEqual(failed.map((e) => [e.details.code, e.details.close_code]), [["SHUTDOWN", 1001]])
    }))
})
