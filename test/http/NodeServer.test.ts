import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as NodeServer from "../../src/http/NodeServer.js"

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

const nodeOrFail = <A>(found: Option.Option<A>): A => {
  assert.isTrue(Option.isSome(found), "the server is found")
  return Option.getOrThrow(found)
}
