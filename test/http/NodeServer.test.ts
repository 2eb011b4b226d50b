import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as NodeServer from "../../src/http/NodeServer.js"
import { call } from "../support/http.js"

describe("NodeServer.nodeServerOf", () => {
  it.scoped("finds the Node server behind an HttpServer that NodeServer.layer made, even unref'd (not through Node's handle list)", () =>
    Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const node = nodeOrFail(NodeServer.nodeServerOf(server))
      node.unref() // an unref'd server is no longer among process._getActiveHandles()
      try {
        assert.strictEqual(Option.getOrUndefined(NodeServer.nodeServerOf(server)), node)
      } finally {
        node.ref()
      }
    }).pipe(Effect.provide(NodeServer.layer({ host: "127.0.0.1", port: 0 }))))
})

describe("NodeServer.layer", () => {
  it.scoped(
    "a request before the application serves is 503 STARTING, and one after it stopped serving (the server still " +
      "listening while the services behind it close) is 503 STOPPING with Connection: close: never a hang",
    () =>
      Effect.gen(function*() {
        const server = yield* HttpServer.HttpServer
        const url = NodeServer.urlOf(server)
        const starting = yield* call(url, "GET", "/health")
        assert.strictEqual(starting.status, 503)
        assert.strictEqual(starting.body.error.code, "STARTING")
        assert.strictEqual(starting.headers["retry-after"], "1")

        const serving = yield* Scope.make()
        yield* server.serve(HttpServerResponse.text("ok")).pipe(Scope.extend(serving))
        const served = yield* call(url, "GET", "/health")
        assert.deepStrictEqual([served.status, served.text], [200, "ok"])

        yield* Scope.close(serving, Exit.void)
        const stopping = yield* call(url, "GET", "/health")
        assert.strictEqual(stopping.status, 503)
        assert.strictEqual(stopping.body.error.code, "STOPPING")
        assert.strictEqual(stopping.headers["connection"], "close")
        assert.strictEqual(stopping.headers["retry-after"], "1")
      }).pipe(Effect.provide(NodeServer.layer({ host: "127.0.0.1", port: 0 })))
  )
})

const nodeOrFail = <A>(found: Option.Option<A>): A => {
  assert.isTrue(Option.isSome(found), "the server is found")
  return Option.getOrThrow(found)
}
