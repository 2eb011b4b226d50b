import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import { createServer, type IncomingMessage } from "node:http"
import type { WebSocketServer } from "ws"
import type { Inbound } from "../../src/handshake/HandshakeProtocol.js"
import * as WebSocketConnection from "../../src/handshake/WebSocketConnection.js"
import { listenScoped } from "../support/http.js"
import { connect, opened } from "../support/ws.js"

/** A Node server whose upgrade requests are queued for the test, and the `ws` server that upgrades them. */
const upgrades = Effect.gen(function*() {
  const requests = yield* Queue.unbounded<IncomingMessage>()
  const server = createServer()
  server.on("upgrade", (request: IncomingMessage) => Queue.unsafeOffer(requests, request))
  const url = (yield* listenScoped(server)).replace(/^http/, "ws")
  const wss = yield* WebSocketConnection.makeServer({ maxPayloadBytes: 1024, closeTimeout: Duration.seconds(1) })
  return { requests, url, wss }
})

const upgradeNow = (wss: WebSocketServer, request: IncomingMessage, onClosed: () => void = () => {}) =>
  Effect.map(Effect.runtime<never>(), (runtime) =>
    WebSocketConnection.upgrade(
      wss,
      request,
      Buffer.alloc(0),
      Infinity,
      Effect.runSync(Effect.clock),
      (effect): Fiber.RuntimeFiber<void> => Runtime.runFork(runtime)(effect),
      onClosed
    ))

/** The next event, as the handshake reads it: `whenReady`, then `poll`. */
const next = (connection: WebSocketConnection.Upgraded) =>
  Effect.async<Inbound>((resume) => connection.whenReady(() => resume(Effect.succeed(connection.poll()!))))

describe("WebSocketConnection", () => {
  it.scopedLive("upgrade: the frames and the end reach the reader, then onClosed is called once the socket is gone", () =>
    Effect.gen(function*() {
      const { requests, url, wss } = yield* upgrades
      const client = yield* connect(url)
      const closed = yield* Queue.unbounded<string>()
      const connection = yield* upgradeNow(wss, yield* Queue.take(requests), () => Queue.unsafeOffer(closed, "closed"))
      assert.isDefined(connection)
      yield* opened(client)
      yield* client.send("hello")
      assert.deepStrictEqual(yield* next(connection!), { _tag: "Frame", data: "hello" })
      assert.strictEqual(yield* Queue.size(closed), 0)
      client.ws.close(1000)
      const end = yield* next(connection!)
      assert.strictEqual(end._tag, "Ended")
      assert.strictEqual(end._tag === "Ended" && end.closeCode, 1000)
      assert.strictEqual(yield* Queue.take(closed), "closed")
      yield* Effect.sleep("50 millis")
      assert.strictEqual(yield* Queue.size(closed), 0, "onClosed is called once")
    }))

  it.scopedLive("upgrade: a socket the client already closed is not upgraded (undefined), and onClosed is not called", () =>
    Effect.gen(function*() {
      const { requests, url, wss } = yield* upgrades
      yield* connect(url)
      const request = yield* Queue.take(requests)
      request.socket.destroy()
      let closed = 0
      const connection = yield* upgradeNow(wss, request, () => closed++)
      assert.isUndefined(connection)
      assert.strictEqual(closed, 0)
    }))

  it.scopedLive("goingAway: an open connection is closed with 1001", () =>
    Effect.gen(function*() {
      const { requests, url, wss } = yield* upgrades
      const client = yield* connect(url)
      const connection = yield* upgradeNow(wss, yield* Queue.take(requests))
      yield* opened(client)
      connection!.goingAway()
      const end = yield* next(connection!)
      assert.strictEqual(end._tag === "Ended" && end.closeCode, 1001)
    }))

  it.scopedLive("whenReady: called once the first event arrives (not before), at once when one is already there", () =>
    Effect.gen(function*() {
      const { requests, url, wss } = yield* upgrades
      const client = yield* connect(url)
      const connection = (yield* upgradeNow(wss, yield* Queue.take(requests)))!
      yield* opened(client)
      const calls = yield* Queue.unbounded<string>()
      connection.whenReady(() => Queue.unsafeOffer(calls, "first"))
      yield* Effect.sleep("50 millis")
      assert.strictEqual(yield* Queue.size(calls), 0)
      yield* client.send("auth")
      assert.strictEqual(yield* Queue.take(calls), "first")
      // The frame is still there for the reader, and a later registration is called at once.
      connection.whenReady(() => Queue.unsafeOffer(calls, "again"))
      assert.strictEqual(yield* Queue.take(calls), "again")
      assert.deepStrictEqual(yield* next(connection), { _tag: "Frame", data: "auth" })
      yield* client.send("more")
      yield* Effect.sleep("50 millis")
      assert.strictEqual(yield* Queue.size(calls), 0)
    }))
})
