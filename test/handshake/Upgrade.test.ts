/**
 * The upgrade path (docs/handshake.md, "Upgrade"): `/ws/handshake` upgrades are taken from the Node server's
 * `upgrade` event, ahead of @effect/platform-node's own `upgrade` listener, so that exactly one handler serves
 * each; every other upgrade still reaches the platform. Real Node server on port 0, real `ws` clients.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { createServer, type IncomingMessage } from "node:http"
import * as Net from "node:net"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import * as HandshakeServer from "../../src/handshake/HandshakeServer.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { connect, opened, refused } from "../support/ws.js"
import { authMessage, dependencies, eventually, handshakeWith, NOW, serviceAlone, startNeuron } from "./fixture.js"

/** A Node server factory that records the paths of the upgrades its `upgrade` listeners (the platform's) see. */
const recordingServer = () => {
  const seen: Array<string> = []
  const makeServer = () => {
    const server = createServer()
    server.on("upgrade", (request: IncomingMessage) => seen.push(request.url ?? ""))
    return server
  }
  return { seen, makeServer }
}

describe("handshake upgrade path (the Node server's upgrade event)", () => {
  it.scoped(
    "exactly one handler: /ws/handshake upgrades never reach the platform's upgrade listeners; an upgrade elsewhere does and gets 404",
    () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        const { makeServer, seen } = recordingServer()
        const neuron = yield* startNeuron({}, undefined, makeServer)
        assert.strictEqual((yield* handshakeWith(neuron, yield* makePatientKey)).status, "new")
        const query = yield* connect(`${neuron.url}?client=test`)
        yield* opened(query)
        const elsewhere = yield* refused(yield* connect(`${neuron.base}/ws/elsewhere`))
        assert.strictEqual(elsewhere.status, 404)
        assert.deepStrictEqual(seen, ["/ws/elsewhere"])
        assert.strictEqual((yield* neuron.server.outcomes).get("completed"), 1)
      })
  )

  it.scoped("Origin outside the allowlist: 403 on the raw upgrade with the error body, counted as FORBIDDEN", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ allowedOrigins: ["https://app.example.org"] })
      const answer = yield* refused(yield* connect(neuron.url, { origin: "https://evil.example.org" }))
      assert.strictEqual(answer.status, 403)
      assert.strictEqual(answer.headers["content-type"], "application/json")
      assert.deepStrictEqual(JSON.parse(answer.body).error, {
        code: "FORBIDDEN",
        message: "this Origin is not allowed to open a handshake"
      })
      assert.strictEqual((yield* neuron.server.activeSessions).length, 0)
      assert.strictEqual((yield* neuron.server.outcomes).get("FORBIDDEN"), 1)
    }))

  it.scoped("queue: past the queue time-out the raw upgrade gets 503 + Retry-After, counted as SERVICE_UNAVAILABLE", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ maxConcurrentHandshakes: 1, queueTimeout: "1 second" })
      yield* Effect.tap(connect(neuron.url), opened)
      const queued = yield* connect(neuron.url)
      yield* eventually(neuron.server.activeSessions, (s) => s.length === 2, "a queued upgrade")
      yield* TestClock.adjust("1 second")
      const answer = yield* refused(queued)
      assert.strictEqual(answer.status, 503)
      assert.strictEqual(answer.headers["retry-after"], "5")
      assert.strictEqual(JSON.parse(answer.body).error.code, "SERVICE_UNAVAILABLE")
      assert.strictEqual((yield* neuron.server.outcomes).get("SERVICE_UNAVAILABLE"), 1)
    }))

  it.scoped("a client that leaves while queued gives its place up: the next one is served", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron({ maxConcurrentHandshakes: 1 })
      const holder = yield* connect(neuron.url)
      yield* opened(holder)
      const leaving = yield* connect(neuron.url)
      yield* eventually(neuron.server.activeSessions, (s) => s.length === 2, "a queued upgrade")
      leaving.ws.terminate()
      yield* eventually(neuron.server.activeSessions, (s) => s.length === 1, "the queued one gone")
      holder.ws.close(1000)
      assert.strictEqual((yield* handshakeWith(neuron, yield* makePatientKey)).status, "new")
    }))

  it.scoped("a first frame sent in the same packet as the upgrade request (the event's head) is read", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const neuron = yield* startNeuron()
      const port = Number(new URL(neuron.base).port)
      const auth = JSON.stringify(yield* authMessage(yield* makePatientKey))
      // A masked text frame (ws clients mask), written right after the request, in one write.
      const payload = Buffer.from(auth)
      const mask = Buffer.from([1, 2, 3, 4])
      const header = payload.length < 126
        ? Buffer.from([0x81, 0x80 | payload.length])
        : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff])
      const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!))
      const request = "GET /ws/handshake HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
      const received = yield* Effect.async<string>((resume) => {
        const socket = Net.connect(port, "127.0.0.1", () => {
          socket.write(Buffer.concat([Buffer.from(request), header, mask, masked]))
        })
        let text = ""
        socket.on("data", (chunk) => {
          text += chunk.toString("latin1")
          if (text.includes("handshake.challenge")) {
            socket.destroy()
            resume(Effect.succeed(text))
          }
        })
        socket.on("error", () => resume(Effect.succeed(text)))
      })
      assert.match(received, /^HTTP\/1\.1 101 /)
      assert.include(received, "handshake.challenge")
    }))

  it.scoped("closing the HandshakeServer's scope closes open sockets with 1001 and gives the upgrade event back", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const { makeServer, seen } = recordingServer()
      const { neuron, serviceScope } = yield* serviceAlone(yield* Sqlite.makeTempDir("handshake-upgrade-"), {
        makeServer
      })
      const open = yield* connect(neuron.url)
      yield* opened(open)
      // The route took the upgrades (the service had no HttpServer); the service's scope closing stops it: 1001.
      yield* Scope.close(serviceScope, Exit.void)
      assert.strictEqual((yield* open.closed).code, 1001)
      assert.deepStrictEqual(seen, [])
      // The route still holds the Node server: later upgrades are answered 503 by the stopped server.
      assert.strictEqual((yield* refused(yield* connect(neuron.url))).status, 503)
    }))

  it.scoped("embedding: an HttpServer that is not a Node server of this process fails the Layer, naming the requirement", () =>
    Effect.gen(function*() {
      const dir = yield* Sqlite.makeTempDir("handshake-upgrade-")
      const notNode = HttpServer.make({
        serve: () => Effect.void,
        address: { _tag: "TcpAddress", hostname: "127.0.0.1", port: 1 }
      })
      const exit = yield* Layer.build(
        HandshakeServer.layer({ publicUrl: "http://neuron.test" }).pipe(
          Layer.provide(dependencies(dir, "10 seconds")),
          Layer.provide(Layer.succeed(HttpServer.HttpServer, notNode))
        )
      ).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "not a listening Node http.Server of this process")
    }))
})
